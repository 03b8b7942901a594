"""One change to PlaceOrder at each stage of a patch's life, for tests/test_replay.py.

The change: tell the customer the order was received before the saga's first step, a new
activity call. Each class registers as "PlaceOrder", so it replays PlaceOrder histories
exactly as a redeployed worker would:

- `PatchedPlaceOrder`: the call behind `workflow.patched`: runs recorded before the change
  take the old path, new runs the new one (and their history gets the patch's marker);
- `DeprecatedPlaceOrder`: `workflow.deprecate_patch` once no run from before the change is
  left: only the new path, and histories with or without the marker replay;
- `ChangedPlaceOrder`: the call with no patch at all, which is both the change made
  unsafely (before the patch) and the end of the patch's life (the call removed once no run
  from before the deprecation is left).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.notification import NotificationActivities
    from core.messages import NotificationKind, NotifyInput, OrderSnapshot, PlaceOrderInput
    from workflows import steps
    from workflows.place_order import PlaceOrder

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
        **steps.UNDO,
    )


@workflow.defn(name="PlaceOrder")
class PatchedPlaceOrder(PlaceOrder):
    @workflow.run
    async def run(self, inp: PlaceOrderInput) -> OrderSnapshot:
        return await super().run(inp)

    async def _saga(self, inp: PlaceOrderInput) -> bool:
        if workflow.patched(PATCH_ID):
            await _notify_received(inp)
        return await super()._saga(inp)


@workflow.defn(name="PlaceOrder")
class DeprecatedPlaceOrder(PlaceOrder):
    @workflow.run
    async def run(self, inp: PlaceOrderInput) -> OrderSnapshot:
        return await super().run(inp)

    async def _saga(self, inp: PlaceOrderInput) -> bool:
        workflow.deprecate_patch(PATCH_ID)
        await _notify_received(inp)
        return await super()._saga(inp)


@workflow.defn(name="PlaceOrder")
class ChangedPlaceOrder(PlaceOrder):
    @workflow.run
    async def run(self, inp: PlaceOrderInput) -> OrderSnapshot:
        return await super().run(inp)

    async def _saga(self, inp: PlaceOrderInput) -> bool:
        await _notify_received(inp)
        return await super()._saga(inp)
