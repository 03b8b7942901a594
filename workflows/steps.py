"""The activity calls PlaceOrder and CancelOrder share, each written once with its
timeouts and retries, and the helpers both workflows await with."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.inventory import InventoryActivities
    from activities.notification import NotificationActivities
    from activities.orders import OrderActivities
    from activities.payment import PaymentActivities
    from core.messages import (
        NotificationKind,
        NotifyInput,
        OrderSnapshot,
        PaymentInfo,
        RefundInput,
        ReleaseStockInput,
    )

T = TypeVar("T")

STEP_TIMEOUT = timedelta(seconds=10)
# Forward steps give up after a while (the order then fails and compensates); transient
# errors are retried with backoff until then.
FORWARD = workflow.ActivityConfig(
    start_to_close_timeout=STEP_TIMEOUT,
    schedule_to_close_timeout=timedelta(minutes=5),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(milliseconds=500), maximum_interval=timedelta(seconds=10)
    ),
)
# Undo steps and bookkeeping must eventually happen: no overall deadline.
UNDO = workflow.ActivityConfig(
    start_to_close_timeout=STEP_TIMEOUT,
    retry_policy=RetryPolicy(
        initial_interval=timedelta(milliseconds=500), maximum_interval=timedelta(seconds=30)
    ),
)


async def save(snap: OrderSnapshot) -> None:
    await workflow.execute_activity_method(OrderActivities.save_order, snap, **UNDO)


async def release_stock(order_id: str) -> None:
    await workflow.execute_activity_method(
        InventoryActivities.release_stock, ReleaseStockInput(order_id=order_id), **UNDO
    )


async def refund(order_id: str) -> PaymentInfo:
    """Refunds the order's capture, or voids a charge that never completed."""
    return await workflow.execute_activity_method(
        PaymentActivities.refund,
        RefundInput(order_id=order_id, idempotency_key=f"{order_id}:refund"),
        **UNDO,
    )


async def notify(user_id: str, order_id: str, kind: NotificationKind, why: str | None) -> None:
    """Tells the customer, once per order and kind; `why`: whoever cancelled's words, else
    the failure reason's code (for a shipment: where it goes)."""
    message = f"Order {order_id} {kind.value.removeprefix('ORDER_').lower()}"
    await workflow.execute_activity_method(
        NotificationActivities.send_notification,
        NotifyInput(
            user_id=user_id,
            order_id=order_id,
            kind=kind,
            message=f"{message}: {why}" if why else message,
            idempotency_key=f"{order_id}:{kind.value}",
        ),
        **UNDO,
    )


async def run_to_end(step: Awaitable[T], *, then_cancelled: bool = False) -> T:
    """Awaits `step` to its end even if the caller is cancelled meanwhile: a rollback or a
    refund must not be cut short by a further cancellation request. With `then_cancelled`,
    a cancellation that came meanwhile is raised once the step has ended (a step that must
    finish, inside a run that must still stop)."""
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    result = task.result()
    if cancelled and then_cancelled:
        raise asyncio.CancelledError
    return result
