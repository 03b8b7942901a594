"""PlaceOrder: the saga that takes an order from checkout to PAID, then lives on until the
order is delivered, failed or cancelled.

Over 400 lines because one workflow's state, its handlers and the run that acts on them
read best in one place: the activity calls it shares with CancelOrder are in steps.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import (
    ApplicationError,
    WorkflowAlreadyStartedError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from activities.inventory import InventoryActivities
    from activities.payment import PaymentActivities
    from activities.product import ProductActivities
    from activities.user import UserActivities
    from core import shop_metrics
    from core.messages import (
        CUSTOMER_ID,
        INVALID_STATE,
        ORDER_STATUS,
        CancelOrderInput,
        CancelRequest,
        ChargeInput,
        FailureReason,
        GetProductInput,
        GetUserInput,
        NotificationKind,
        OrderLine,
        OrderSnapshot,
        OrderStatus,
        PaymentStatus,
        PlaceOrderInput,
        ProductInfo,
        ReserveStockInput,
        StatusChange,
        cancel_workflow_id_for,
    )
    from workflows import steps
    from workflows.cancel_order import CancelOrder
    from workflows.saga import Saga

DEFAULT_FULFILMENT_DEADLINE = timedelta(days=7)
PRE_PAYMENT = (OrderStatus.PENDING, OrderStatus.RESERVED)
CANCELLABLE = (*PRE_PAYMENT, OrderStatus.PAID)
FAILURE_REASONS = frozenset(FailureReason)


@workflow.defn(name="PlaceOrder")
class PlaceOrder:
    """Checkout saga: save the order, look up the customer and products, reserve stock,
    charge; then a PAID order waits for `ship` and `deliver`, a `cancel` or its fulfilment
    deadline.

    Each step registers its compensation before it runs; a failure, a customer's cancel
    before payment, or the workflow's cancellation runs them in reverse. A PAID order is
    cancelled by a CancelOrder child, the one path that refunds, restocks and notifies.
    """

    @workflow.init
    def __init__(self, inp: PlaceOrderInput) -> None:
        self._snap = inp.resume or OrderSnapshot(
            order_id=inp.order_id,
            user_id=inp.user_id,
            status=OrderStatus.PENDING,
            items=[OrderLine(product_id=i.product_id, quantity=i.quantity) for i in inp.items],
            shipping_address=inp.shipping_address,
        )
        # What was asked and not yet done: each is set by its request's one handler.
        self._cancel: CancelRequest | None = None
        self._ship = False
        self._deliver = False
        # A CancelOrder child is refunding this PAID order (it reads PAID until the refund
        # is done): it is no longer the admin's to ship.
        self._closing = False

    @workflow.query(name="status")
    def status(self) -> OrderSnapshot:
        """The order as it stands: status, items, totals, payment, reasons and history."""
        return self._snap

    # --- cancel, ship, deliver: a signal and an update each, through one handler -------

    @workflow.signal(name="cancel")
    def cancel(self, req: CancelRequest) -> None:
        """Cancels the order as the REST route does; ignored once it has shipped or ended."""
        _unless_invalid(lambda: self._on_cancel(req))

    @workflow.update(name="request_cancel")
    async def request_cancel(self, req: CancelRequest) -> OrderSnapshot:
        """Cancels the order and answers once it is CANCELLED (or what it became instead)."""
        self._on_cancel(req)
        await workflow.wait_condition(lambda: self._snap.status.is_final)
        return self._snap

    @request_cancel.validator
    def _check_cancel(self, req: CancelRequest) -> None:
        # A ship already accepted goes first: the cancel that follows it is refused, rather
        # than both accepted and the ship answered with a CANCELLED order.
        self._check(self._snap.status in CANCELLABLE and not self._ship, "cancelled")

    def _on_cancel(self, req: CancelRequest) -> None:
        self._check_cancel(req)
        self._cancel = self._cancel or req

    @workflow.signal(name="ship")
    def ship(self) -> None:
        _unless_invalid(self._on_ship)

    @workflow.update(name="request_ship")
    async def request_ship(self) -> OrderSnapshot:
        """Marks a PAID order SHIPPED and answers with the order."""
        self._on_ship()
        await workflow.wait_condition(lambda: self._snap.status != OrderStatus.PAID)
        return self._snap

    @request_ship.validator
    def _check_ship(self) -> None:
        paid = self._snap.status == OrderStatus.PAID
        self._check(paid and self._cancel is None and not self._closing, "shipped")

    def _on_ship(self) -> None:
        self._check_ship()
        self._ship = True

    @workflow.signal(name="deliver")
    def deliver(self) -> None:
        _unless_invalid(self._on_deliver)

    @workflow.update(name="request_deliver")
    async def request_deliver(self) -> OrderSnapshot:
        """Marks a SHIPPED order DELIVERED and answers with the order."""
        self._on_deliver()
        await workflow.wait_condition(lambda: self._snap.status != OrderStatus.SHIPPED)
        return self._snap

    @request_deliver.validator
    def _check_deliver(self) -> None:
        self._check(self._snap.status == OrderStatus.SHIPPED, "delivered")

    def _on_deliver(self) -> None:
        self._check_deliver()
        self._deliver = True

    def _check(self, allowed: bool, action: str) -> None:
        """Refuses a request the order cannot take now: an update is answered with the
        error, a signal is ignored."""
        if not allowed:
            raise ApplicationError(
                f"order is {self._snap.status}: it cannot be {action} now", type=INVALID_STATE
            )

    # --- the run ------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: PlaceOrderInput) -> OrderSnapshot:
        if inp.resume is None:
            shop_metrics.order_placed(workflow.metric_meter())
        if inp.resume is None and not await self._checkout(inp):
            return self._snap
        try:
            if inp.resume is None:
                await self._notify(NotificationKind.ORDER_CONFIRMED)
            await self._fulfil(inp)
        except (Exception, asyncio.CancelledError) as err:
            # Cancelling the workflow of a PAID order cancels the order (refunded); a SHIPPED
            # order stays shipped.
            if is_cancelled_exception(err) and self._snap.status == OrderStatus.PAID:
                await steps.run_to_end(self._cancel_paid(FailureReason.WORKFLOW_CANCELLED))
            raise
        # Let update handlers that wait for the final state answer before the run ends.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._snap

    async def _checkout(self, inp: PlaceOrderInput) -> bool:
        """Runs the saga to PAID (True), or until it ends the order FAILED or CANCELLED."""
        task = asyncio.ensure_future(self._saga(inp))
        # The workflow's own cancellation is passed on to the saga below; the saga rolls
        # back and raises it again.
        with contextlib.suppress(asyncio.CancelledError):
            await workflow.wait_condition(
                lambda: (
                    task.done() or (self._cancel is not None and self._snap.status in PRE_PAYMENT)
                )
            )
        # Stops the saga (a no-op once it is done): the customer cancelled, or the workflow was.
        task.cancel()
        return await steps.run_to_end(task)

    async def _saga(self, inp: PlaceOrderInput) -> bool:
        order_id = inp.order_id
        saga = Saga()
        try:
            await self._transition(OrderStatus.PENDING)
            await self._price(inp)

            self._stop_if_cancelled()
            saga.add("release_stock", lambda: steps.release_stock(order_id))
            await workflow.execute_activity_method(
                InventoryActivities.reserve_stock,
                ReserveStockInput(order_id=order_id, items=inp.items),
                **steps.FORWARD,
            )
            await self._transition(OrderStatus.RESERVED)

            self._stop_if_cancelled()
            saga.add("refund", self._refund)
            payment = await workflow.execute_activity_method(
                PaymentActivities.charge,
                ChargeInput(
                    order_id=order_id,
                    user_id=inp.user_id,
                    amount_cents=self._snap.total_cents,
                    card_token=inp.card_token,
                    idempotency_key=f"{order_id}:charge",
                ),
                **steps.FORWARD,
            )
            self._snap.payment_status = PaymentStatus.CAPTURED
            self._snap.card_last4 = payment.card_last4
            await self._transition(OrderStatus.PAID)
            return True
        # Exception and CancelledError, not BaseException: cancellation must compensate, but
        # the SDK's eviction of a cached workflow (GeneratorExit) must pass straight through.
        except (Exception, asyncio.CancelledError) as err:
            reason = _failure_reason(err)
            workflow.logger.info("order %s rolls back (%s): %r", order_id, reason, err)
            # Shielded: a further cancellation must not cut the rollback or the order's end short.
            await steps.run_to_end(self._roll_back(saga, reason))
            if reason == FailureReason.WORKFLOW_CANCELLED and self._cancel is None:
                raise asyncio.CancelledError from err
            return False

    async def _roll_back(self, saga: Saga, reason: FailureReason) -> None:
        """Compensates, then ends the order: CANCELLED when it was cancelled (by the customer
        or an admin, or the workflow itself through Temporal), else FAILED."""
        if reason == FailureReason.PAYMENT_DECLINED:
            self._snap.payment_status = PaymentStatus.DECLINED
        await saga.compensate()
        if reason != FailureReason.WORKFLOW_CANCELLED:
            await self._end(OrderStatus.FAILED, reason)
        elif self._cancel is not None:
            words = self._cancel.reason
            await self._end(OrderStatus.CANCELLED, FailureReason.CANCELLED_BY_CUSTOMER, words)
        else:
            await self._end(OrderStatus.CANCELLED, FailureReason.WORKFLOW_CANCELLED)

    async def _price(self, inp: PlaceOrderInput) -> None:
        """Looks up the customer and each product at once; prices the order's lines."""
        lookups = [
            workflow.execute_activity_method(
                UserActivities.get_user, GetUserInput(user_id=inp.user_id), **steps.FORWARD
            ),
            *(
                workflow.execute_activity_method(
                    ProductActivities.get_product,
                    GetProductInput(product_id=product_id),
                    **steps.FORWARD,
                )
                for product_id in dict.fromkeys(i.product_id for i in inp.items)
            ),
        ]
        # Wait for every lookup, then fail on the first in order: an unknown user is
        # USER_NOT_FOUND even when its product is unknown too and answers sooner.
        outcomes = await asyncio.gather(*lookups, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        prices = {p.id: p.price_cents for p in outcomes if isinstance(p, ProductInfo)}
        for line in self._snap.items:
            line.unit_price_cents = prices[line.product_id]
        self._snap.total_cents = sum(li.unit_price_cents * li.quantity for li in self._snap.items)

    async def _fulfil(self, inp: PlaceOrderInput) -> None:
        """Waits, while PAID, for ship, cancel or the deadline; while SHIPPED, for deliver."""
        paid_at = next(h.at for h in self._snap.history if h.status == OrderStatus.PAID)
        deadline = paid_at + (
            timedelta(seconds=inp.fulfilment_deadline_seconds)
            if inp.fulfilment_deadline_seconds
            else DEFAULT_FULFILMENT_DEADLINE
        )

        def long_history() -> bool:
            """Continue as new well before the history limits, keeping the order's state."""
            info = workflow.info()
            return (
                info.is_continue_as_new_suggested()
                or info.get_current_history_length() > inp.max_history_events
            )

        while not self._snap.status.is_final:
            # Never with a request still to act on: the new run would not know it.
            if long_history() and not (self._cancel or self._ship or self._deliver):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(inp.model_copy(update={"resume": self._snap}))
            if self._snap.status == OrderStatus.PAID:
                try:
                    await workflow.wait_condition(
                        lambda: self._cancel is not None or self._ship or long_history(),
                        timeout=max(deadline - workflow.now(), timedelta(seconds=1)),
                    )
                except TimeoutError:
                    await self._close_paid(FailureReason.NOT_SHIPPED)
                    continue
                if self._cancel is not None:
                    await self._close_paid(FailureReason.CANCELLED_BY_CUSTOMER, self._cancel.reason)
                elif self._ship:
                    self._ship = False
                    await self._reach(OrderStatus.SHIPPED, NotificationKind.ORDER_SHIPPED)
            else:
                await workflow.wait_condition(lambda: self._deliver or long_history())
                if self._deliver:
                    self._deliver = False
                    await self._reach(OrderStatus.DELIVERED, NotificationKind.ORDER_DELIVERED)

    async def _reach(self, status: OrderStatus, kind: NotificationKind) -> None:
        """Moves the order to SHIPPED or DELIVERED: its save and its notification run to
        their end even if the workflow is cancelled meanwhile (the order is then left as it
        is, but not stale in the read model nor untold), and the cancellation is raised
        after them."""

        async def move() -> None:
            await self._transition(status)
            await self._notify(kind)

        await steps.run_to_end(move(), then_cancelled=True)

    async def _close_paid(self, reason: FailureReason, words: str | None = None) -> None:
        """_cancel_paid run to its end even if the workflow is cancelled meanwhile: its
        CancelOrder child is not cut short (a second one would then start, with another
        reason than the first had saved), and that cancellation is raised after it."""
        await steps.run_to_end(self._cancel_paid(reason, words), then_cancelled=True)

    async def _cancel_paid(self, reason: FailureReason, words: str | None = None) -> None:
        """Hands a PAID order to CancelOrder (refund, restock, save, notify); it is then
        CANCELLED. The order reads PAID until the refund is done."""
        self._closing = True
        after = self._snap.model_copy(deep=True)
        after.payment_status = PaymentStatus.REFUNDED
        _move(after, OrderStatus.CANCELLED, reason, words)
        cancel_in = CancelOrderInput(
            order_id=after.order_id, user_id=after.user_id, reason=words or reason, snapshot=after
        )
        while True:
            try:
                await workflow.execute_child_workflow(
                    CancelOrder.run, cancel_in, id=cancel_workflow_id_for(after.order_id)
                )
                break
            except WorkflowAlreadyStartedError:
                # Another CancelOrder for this order runs (started by hand): ours runs after
                # it. Every step is idempotent, so the order is refunded and restocked once.
                await workflow.sleep(timedelta(seconds=1))
        self._snap = after
        self._publish()
        self._measure()

    # --- helpers ------------------------------------------------------------------------

    def _stop_if_cancelled(self) -> None:
        """Stops the saga before its next step once the customer has cancelled.

        `_checkout` cancels the saga's task, but when the cancel signal comes in the same
        workflow task as the result of the step the saga awaits, that cancellation can be
        lost (the result wins) and the saga would go on to its next step.
        """
        if self._cancel is not None:
            raise asyncio.CancelledError

    async def _refund(self) -> None:
        payment = await steps.refund(self._snap.order_id)
        if payment.status == PaymentStatus.REFUNDED:
            self._snap.payment_status = PaymentStatus.REFUNDED

    async def _end(
        self, status: OrderStatus, reason: FailureReason, words: str | None = None
    ) -> None:
        """Ends an unpaid order FAILED or CANCELLED and tells the customer."""
        await self._transition(status, reason, words)
        kind = (
            NotificationKind.ORDER_CANCELLED
            if status == OrderStatus.CANCELLED
            else NotificationKind.ORDER_FAILED
        )
        await self._notify(kind)

    async def _transition(
        self, status: OrderStatus, reason: FailureReason | None = None, words: str | None = None
    ) -> None:
        _move(self._snap, status, reason, words)
        self._publish()
        self._measure()
        await steps.save(self._snap)

    def _measure(self) -> None:
        """Business metrics of the status reached (replay-safe: a replay records nothing)."""
        meter, started = workflow.metric_meter(), workflow.info().start_time
        shop_metrics.status_reached(meter, self._snap, started, workflow.now())

    async def _notify(self, kind: NotificationKind) -> None:
        snap = self._snap
        why = snap.cancel_reason or snap.failure_reason
        if kind == NotificationKind.ORDER_SHIPPED and snap.shipping_address is not None:
            why = f"to {snap.shipping_address.one_line()}"
        await steps.notify(snap.user_id, snap.order_id, kind, why)

    def _publish(self) -> None:
        """Search attributes and current details, so the Web UI shows where the saga is."""
        # Only what differs: the API starts the workflow with OrderStatus=PENDING and
        # CustomerId set, and every upsert costs the server a visibility write.
        current = workflow.info().typed_search_attributes
        changed = [
            update
            for update in (
                ORDER_STATUS.value_set(self._snap.status.value),
                CUSTOMER_ID.value_set(self._snap.user_id),
            )
            if current.get(update.key) != update.value
        ]
        if changed:
            workflow.upsert_search_attributes(changed)
        detail = f"{self._snap.status}"
        if self._snap.failure_reason:
            detail += f" ({self._snap.failure_reason})"
        workflow.set_current_details(
            f"**{detail}** · {len(self._snap.items)} item(s) · {self._snap.total_cents} cents"
        )


def _move(
    snap: OrderSnapshot,
    status: OrderStatus,
    reason: FailureReason | None = None,
    words: str | None = None,
) -> None:
    """Puts the order in `status` (with its reason and the canceller's words when it ends)."""
    snap.status = status
    if reason is not None:
        snap.failure_reason = reason
        snap.cancel_reason = words
    snap.history.append(StatusChange(status=status, at=workflow.now()))
    snap.version += 1


def _failure_reason(err: BaseException) -> FailureReason:
    """The order's failure reason for an exception out of a saga step."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ApplicationError) and cause.type in FAILURE_REASONS:
            return FailureReason(cause.type)
        cause = cause.__cause__
    if is_cancelled_exception(err):
        return FailureReason.WORKFLOW_CANCELLED
    return FailureReason.INTERNAL_ERROR


def _unless_invalid(take: Callable[[], None]) -> None:
    """Runs a signal's handler; a request the order cannot take now is logged and ignored
    (a signal has no answer to refuse it with, unlike an update)."""
    try:
        take()
    except ApplicationError as err:
        workflow.logger.info("signal ignored: %s", err)
