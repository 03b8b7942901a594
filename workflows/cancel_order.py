"""CancelOrder: undoes a paid order: refund, restock, notify. Every step is idempotent."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.messages import (
        CancelOrderInput,
        CancelOrderResult,
        NotificationKind,
        PaymentStatus,
    )
    from workflows import steps


@workflow.defn(name="CancelOrder")
class CancelOrder:
    """Refunds the order's capture, releases its stock, marks it CANCELLED and tells the
    customer. Run twice, or raced with another cancel, it refunds and restocks once: the
    payment and inventory services key each step by the order."""

    @workflow.run
    async def run(self, inp: CancelOrderInput) -> CancelOrderResult:
        refund = await steps.refund(inp.order_id)
        await steps.release_stock(inp.order_id)
        if inp.snapshot is not None:
            await steps.save(inp.snapshot)
        await steps.notify(inp.user_id, inp.order_id, NotificationKind.ORDER_CANCELLED, inp.reason)
        refunded = refund.status == PaymentStatus.REFUNDED
        return CancelOrderResult(
            order_id=inp.order_id,
            refunded_cents=refund.amount_cents if refunded else 0,
            payment_status=PaymentStatus.REFUNDED if refunded else PaymentStatus.NONE,
        )
