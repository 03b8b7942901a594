"""Cart: one customer's cart (id `cart-{user_id}`), kept by a workflow that outlives restarts.

The API reaches it with update-with-start: the first change starts it, later ones join the
running cart. Updates run one at a time in the workflow, so two devices changing the cart
at once lose nothing. A change the validators refuse (an unknown or inactive product, a
quantity out of range) never enters the history.

An untouched, non-empty cart sends one CART_REMINDER after `reminder_seconds` (each change
resets the timer); a cart unchanged for `idle_close_seconds` closes itself, emptied. The
cart continues as new before its history grows long.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.notification import NotificationActivities
    from core.messages import (
        CART_LINES_MAX,
        CART_QUANTITY_MAX,
        CartCheckedOut,
        CartInput,
        CartLine,
        CartRefusal,
        CartState,
        ClearCart,
        NotificationKind,
        NotifyInput,
        SetCartItem,
        cart_reminder_key,
    )
    from workflows import steps


@workflow.defn(name="Cart")
class Cart:
    """A customer's cart: `set_item`, `clear` and `checked_out` updates, the `cart` query,
    one reminder per untouched period, closed after a long time without change."""

    @workflow.init
    def __init__(self, inp: CartInput) -> None:
        self._state = inp.resume or CartState(user_id=inp.user_id)

    @workflow.query(name="cart")
    def cart(self) -> CartState:
        """The cart as it stands: its lines, version and when it last changed."""
        return self._state

    # --- updates, each refused by its validator before it enters the history ------------

    @workflow.update(name="set_item")
    async def set_item(self, req: SetCartItem) -> CartState:
        """Sets a product's quantity (0 removes it) and answers with the cart."""
        items = self._state.items
        line = next((li for li in items if li.product_id == req.product_id), None)
        if req.quantity == 0:
            if line is not None:
                items.remove(line)
                self._changed()
            return self._state
        if line is None:
            line = CartLine(product_id=req.product_id, quantity=req.quantity)
            items.append(line)
        line.quantity = req.quantity
        self._changed()
        line.version = self._state.version
        return self._state

    @set_item.validator
    def _check_set_item(self, req: SetCartItem) -> None:
        if not 0 <= req.quantity <= CART_QUANTITY_MAX:
            raise ApplicationError(
                f"quantity must be between 0 and {CART_QUANTITY_MAX}",
                type=CartRefusal.INVALID_QUANTITY,
            )
        in_cart = any(li.product_id == req.product_id for li in self._state.items)
        # A product no longer sold can still be taken out of the cart.
        if req.quantity == 0 and in_cart:
            return
        product = req.product
        if product is None or product.id != req.product_id or not product.active:
            raise ApplicationError(
                f"product {req.product_id} not found", type=CartRefusal.PRODUCT_NOT_FOUND
            )
        if not in_cart and req.quantity > 0 and len(self._state.items) >= CART_LINES_MAX:
            raise ApplicationError(
                f"a cart holds at most {CART_LINES_MAX} products", type=CartRefusal.CART_FULL
            )

    @workflow.update(name="clear")
    async def clear(self, req: ClearCart) -> CartState:
        """Empties the cart (only what the client saw, with `up_to_version`)."""
        self._remove_up_to(self._state.version if req.up_to_version is None else req.up_to_version)
        return self._state

    @clear.validator
    def _check_clear(self, req: ClearCart) -> None:
        if req.up_to_version is not None:
            self._check_version(req.up_to_version)

    @workflow.update(name="checked_out")
    async def checked_out(self, req: CartCheckedOut) -> CartState:
        """An order was started with the cart as read at `req.version`: those lines leave
        the cart; a line changed since stays. A repeat changes nothing more."""
        self._remove_up_to(req.version)
        self._state.last_order_id = req.order_id
        return self._state

    @checked_out.validator
    def _check_checked_out(self, req: CartCheckedOut) -> None:
        self._check_version(req.version)

    def _check_version(self, version: int) -> None:
        """A version the cart never had was not read from this cart."""
        if not 0 <= version <= self._state.version:
            raise ApplicationError(
                f"the cart is at version {self._state.version}, not {version}",
                type=CartRefusal.STALE_VERSION,
            )

    def _remove_up_to(self, version: int) -> None:
        kept = [li for li in self._state.items if li.version > version]
        if len(kept) != len(self._state.items):
            self._state.items = kept
            self._changed()

    def _changed(self) -> None:
        self._state.version += 1
        self._state.changed_at = workflow.now()

    # --- the run: the reminder, the closing, continue-as-new -----------------------------

    @workflow.run
    async def run(self, inp: CartInput) -> CartState:
        state = self._state
        if state.changed_at is None:
            state.changed_at = workflow.now()
        remind_after = timedelta(seconds=inp.reminder_seconds)
        close_after = timedelta(seconds=inp.idle_close_seconds)

        def long_history() -> bool:
            info = workflow.info()
            return (
                info.is_continue_as_new_suggested()
                or info.get_current_history_length() > inp.max_history_events
            )

        while True:
            if long_history():
                # The handlers finish at once (none awaits): the new run knows every change.
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(inp.model_copy(update={"resume": self._state}))
            seen = self._state.version
            changed_at = self._state.changed_at or workflow.now()
            remind = bool(self._state.items) and self._state.reminded_version != seen
            due = changed_at + (min(remind_after, close_after) if remind else close_after)

            def moved(seen: int = seen) -> bool:
                return self._state.version != seen or long_history()

            try:
                await workflow.wait_condition(moved, timeout=_until(due))
            except TimeoutError:
                if self._state.version != seen:
                    continue  # changed in the same task as the timer fired
                if remind and changed_at + remind_after <= due:
                    await self._remind(seen)
                    continue
                break
        # Closed unchanged for idle_close_seconds: the cart is dropped; a later change starts
        # a new one. Updates that came with the timer have run (they come first in a task).
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._state.items = []
        return self._state

    async def _remind(self, version: int) -> None:
        """Sends the one reminder of `version`; a change meanwhile gets its own later."""
        info = workflow.info()
        count = sum(li.quantity for li in self._state.items)
        try:
            await workflow.execute_activity_method(
                NotificationActivities.send_notification,
                NotifyInput(
                    user_id=self._state.user_id,
                    order_id="",
                    kind=NotificationKind.CART_REMINDER,
                    message=f"Your cart still holds {count} item(s).",
                    idempotency_key=cart_reminder_key(info.first_execution_run_id, version),
                ),
                **steps.UNDO,
            )
        except ActivityError as err:
            # Refused by the service (transient errors are retried): a lost reminder must
            # not end the cart with everything in it.
            workflow.logger.warning("cart reminder refused: %s", err.cause)
        self._state.reminded_version = version


def _until(due: datetime) -> timedelta:
    # At least a second: a timer of zero (or less) is refused.
    return max(due - workflow.now(), timedelta(seconds=1))
