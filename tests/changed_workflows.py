"""Changed copies of PlaceOrder, for the replay tests: the same change made unsafely and
made safely with `workflow.patched`.

Each registers under the name "PlaceOrder", so it replays the recorded PlaceOrder
histories exactly as a redeployed worker would. The change: tell the customer the order
was received before the checkout's first step, a new activity call at the start of the saga.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.notification import NotificationActivities
    from core.messages import NotificationKind, NotifyInput, OrderSnapshot, PlaceOrderInput
    from workflows.place_order import PlaceOrder, _undo

PATCH_ID = "notify-order-received"


async def _notify_received(inp: PlaceOrderInput) -> None:
    await workflow.execute_activity_method(
        NotificationActivities.send_notification,
        NotifyInput(
            user_id=inp.user_id,
            order_id=inp.order_id,
            kind=NotificationKind.ORDER_CONFIRMED,
            message=f"Order {inp.order_id} received",
            idempotency_key=f"{inp.order_id}:received",
        ),
        **_undo(),
    )


@workflow.defn(name="PlaceOrder")
class UnpatchedPlaceOrder(PlaceOrder):
    """The new call added as is: histories of orders placed before it no longer replay."""

    @workflow.run
    async def run(self, inp: PlaceOrderInput) -> OrderSnapshot:
        return await super().run(inp)

    async def _checkout(self, inp: PlaceOrderInput) -> bool:
        await _notify_received(inp)
        return await super()._checkout(inp)


@workflow.defn(name="PlaceOrder")
class PatchedPlaceOrder(PlaceOrder):
    """The same call behind `workflow.patched`: old histories take the old path."""

    @workflow.run
    async def run(self, inp: PlaceOrderInput) -> OrderSnapshot:
        return await super().run(inp)

    async def _checkout(self, inp: PlaceOrderInput) -> bool:
        if workflow.patched(PATCH_ID):
            await _notify_received(inp)
        return await super()._checkout(inp)
