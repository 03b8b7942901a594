"""CancelOrder: undoes a paid order: refund, restock, notify. Every step is idempotent."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.inventory import InventoryActivities
    from activities.notification import NotificationActivities
    from activities.orders import OrderActivities
    from activities.payment import PaymentActivities
    from core.messages import (
        CancelOrderInput,
        CancelOrderResult,
        NotificationKind,
        NotifyInput,
        PaymentStatus,
        RefundInput,
        ReleaseStockInput,
    )

RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
OPTS: dict[str, object] = {"start_to_close_timeout": timedelta(seconds=10), "retry_policy": RETRY}


@workflow.defn(name="CancelOrder")
class CancelOrder:
    """Refunds the order's capture, releases its stock, marks it CANCELLED and tells the
    customer. Run twice, or raced with another cancel, it refunds and restocks once: the
    payment and inventory services key each step by the order."""

    @workflow.run
    async def run(self, inp: CancelOrderInput) -> CancelOrderResult:
        refund = await workflow.execute_activity_method(
            PaymentActivities.refund,
            RefundInput(order_id=inp.order_id, idempotency_key=f"{inp.order_id}:refund"),
            **OPTS,  # type: ignore[arg-type]
        )
        await workflow.execute_activity_method(
            InventoryActivities.release_stock,
            ReleaseStockInput(order_id=inp.order_id),
            **OPTS,  # type: ignore[arg-type]
        )
        if inp.snapshot is not None:
            await workflow.execute_activity_method(
                OrderActivities.save_order,
                inp.snapshot,
                **OPTS,  # type: ignore[arg-type]
            )
        await workflow.execute_activity_method(
            NotificationActivities.send_notification,
            NotifyInput(
                user_id=inp.user_id,
                order_id=inp.order_id,
                kind=NotificationKind.ORDER_CANCELLED,
                message=f"Order {inp.order_id} cancelled: {inp.reason}",
                idempotency_key=f"{inp.order_id}:{NotificationKind.ORDER_CANCELLED.value}",
            ),
            **OPTS,  # type: ignore[arg-type]
        )
        refunded = refund.status == PaymentStatus.REFUNDED.value
        return CancelOrderResult(
            order_id=inp.order_id,
            refunded_cents=refund.amount_cents if refunded else 0,
            payment_status=PaymentStatus.REFUNDED if refunded else PaymentStatus.NONE,
        )
