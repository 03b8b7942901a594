"""The shop's business metrics: their names, defined once, and how the workflow and the
activities record them.

They go through the Temporal SDK's metric meters (`workflow.metric_meter()`,
`activity.metric_meter()`), which the worker's runtime exports on its Prometheus endpoint
(core.telemetry.worker_runtime) next to the SDK's own `temporal_*` metrics. A workflow's
meter records nothing while the workflow replays, and recording adds no command to its
history: a replayed or re-run workflow task never counts twice.

The runtime appends `_total` to counters (OpenMetrics), so the counter named
`shop_orders_placed` is scraped as `shop_orders_placed_total`. Stdlib and temporalio only:
workflow modules import this through the sandbox's pass-through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from temporalio.common import MetricMeter

from core.messages import FailureReason, OrderSnapshot, OrderStatus

# Instrument names (counters as created: Prometheus shows them with `_total`).
ORDERS_PLACED = "shop_orders_placed"
ORDERS_FINISHED = "shop_orders_finished"  # labels: status, reason
ORDER_VALUE = "shop_order_value_cents"  # histogram of PAID orders' totals
CHECKOUT_SECONDS = "shop_checkout_seconds"  # histogram: checkout to PAID or FAILED
PAYMENTS = "shop_payments"  # label: outcome
COMPENSATIONS = "shop_compensations"  # label: step

# Outcomes of a payment activity (label `outcome` of shop_payments_total).
CAPTURED, DECLINED, REFUNDED, ERROR = "captured", "declined", "refunded", "error"
# `reason` of an order that ended without one (DELIVERED).
NO_REASON = "none"

# Bucket boundaries: the runtime's defaults are latencies in milliseconds.
HISTOGRAM_BUCKETS: Mapping[str, Sequence[float]] = {
    ORDER_VALUE: (500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000),
    CHECKOUT_SECONDS: (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
}


def status_reached(
    meter: MetricMeter, snap: OrderSnapshot, checkout: datetime, now: datetime
) -> None:
    """What PlaceOrder records when the order reaches `snap.status`: the checkout's duration
    (PAID or FAILED), the order's value (PAID), its end by status and reason (final)."""
    if snap.status in (OrderStatus.PAID, OrderStatus.FAILED):
        checkout_done(meter, (now - checkout).total_seconds(), snap.status.value)
    if snap.status == OrderStatus.PAID:
        order_paid(meter, snap.total_cents)
    if snap.status.is_final:
        reason = FailureReason(snap.failure_reason).value if snap.failure_reason else None
        order_finished(meter, snap.status.value, reason)


def order_placed(meter: MetricMeter) -> None:
    meter.create_counter(ORDERS_PLACED, "Orders checked out (PlaceOrder started).").add(1)


def order_finished(meter: MetricMeter, status: str, reason: str | None) -> None:
    meter.create_counter(
        ORDERS_FINISHED, "Orders that reached a final status, by status and reason."
    ).add(1, {"status": status, "reason": reason or NO_REASON})


def order_paid(meter: MetricMeter, total_cents: int) -> None:
    meter.create_histogram(ORDER_VALUE, "Totals of paid orders.", "cents").record(total_cents)


def checkout_done(meter: MetricMeter, seconds: float, status: str) -> None:
    meter.create_histogram_float(
        CHECKOUT_SECONDS, "Checkout to PAID or FAILED, in seconds.", "s"
    ).record(max(seconds, 0.0), {"status": status})


def payment(meter: MetricMeter, outcome: str) -> None:
    meter.create_counter(PAYMENTS, "Payment attempts by outcome.").add(1, {"outcome": outcome})


def compensation(meter: MetricMeter, step: str) -> None:
    meter.create_counter(COMPENSATIONS, "Saga compensations run, by step.").add(1, {"step": step})
