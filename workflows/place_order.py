"""PlaceOrder: the saga that takes an order from checkout to PAID, then lives on until the
order is delivered, failed or cancelled."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from activities.inventory import InventoryActivities
    from activities.notification import NotificationActivities
    from activities.orders import OrderActivities
    from activities.payment import PaymentActivities
    from activities.product import ProductActivities
    from activities.user import UserActivities
    from core.messages import (
        CUSTOMER_ID,
        ORDER_STATUS,
        CancelOrderInput,
        CancelRequest,
        ChargeInput,
        FailureReason,
        GetProductInput,
        GetUserInput,
        NotificationKind,
        NotifyInput,
        OrderLine,
        OrderSnapshot,
        OrderStatus,
        PaymentStatus,
        PlaceOrderInput,
        ProductInfo,
        RefundInput,
        ReleaseStockInput,
        ReserveStockInput,
        StatusChange,
        cancel_workflow_id_for,
    )
    from workflows.cancel_order import CancelOrder
    from workflows.saga import Saga

T = TypeVar("T")

DEFAULT_FULFILMENT_DEADLINE = timedelta(days=7)
PRE_PAYMENT = (OrderStatus.PENDING, OrderStatus.RESERVED)
CANCELLABLE = (OrderStatus.PENDING, OrderStatus.RESERVED, OrderStatus.PAID)
BUSINESS_REASONS = {r.value for r in FailureReason}
# Patch ids (workflow.patched): histories recorded before a patch replay the old way. Each
# patch id a new run passes costs it a marker event and an upsert of TemporalChangeVersion
# (one more visibility write), so the changes of a release share one id, and the id of a
# release implies the changes of the releases before it.
LOOKUPS_IN_ORDER = "lookups-fail-in-order"  # release 2: user first, then products
RELEASE_3 = "order-saga-3"  # release 2, and upserts of only the search attributes that change
# Release 4: the workflow cancelled while it saves the new order or confirms a paid one
# compensates like anywhere else, and a customer cancel that comes with a step's result
# stops the checkout before its next step. Checked only on those rare paths, so no other
# order pays for its marker.
RELEASE_4 = "order-saga-4"

# Forward steps give up after a while (the order then fails and compensates); transient
# errors are retried with backoff until then.
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
)
STEP_TIMEOUT = timedelta(seconds=10)
STEP_DEADLINE = timedelta(minutes=5)
# Undo steps and bookkeeping must eventually happen: no overall deadline.
UNDO_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)


def _step(**extra: object) -> dict[str, object]:
    return {
        "start_to_close_timeout": STEP_TIMEOUT,
        "schedule_to_close_timeout": STEP_DEADLINE,
        "retry_policy": STEP_RETRY,
        **extra,
    }


def _undo() -> dict[str, object]:
    return {"start_to_close_timeout": STEP_TIMEOUT, "retry_policy": UNDO_RETRY}


def failure_reason(err: BaseException) -> str:
    """The contract's failure reason for an exception out of a saga step."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ApplicationError) and cause.type in BUSINESS_REASONS:
            return cause.type
        cause = cause.__cause__
    if is_cancellation(err):
        return FailureReason.WORKFLOW_CANCELLED.value
    return FailureReason.INTERNAL_ERROR.value


def is_cancellation(err: BaseException) -> bool:
    """True for the workflow's own cancellation, raw or as the cause of a cancelled step."""
    if isinstance(err, asyncio.CancelledError | CancelledError):
        return True
    return isinstance(err, ActivityError | ChildWorkflowError) and isinstance(
        err.cause, CancelledError
    )


@workflow.defn(name="PlaceOrder")
class PlaceOrder:
    """Checkout saga: validate the customer and products, reserve stock, charge, confirm.

    Each step registers its compensation before it runs; any failure, a `cancel` signal
    before payment, or cancellation of the workflow runs them in reverse. A PAID order then
    waits for `ship` and `deliver`, a `cancel` (handled by a CancelOrder child), or its
    fulfilment deadline.
    """

    @workflow.init
    def __init__(self, inp: PlaceOrderInput) -> None:
        self._input = inp
        self._snap = inp.resume or OrderSnapshot(
            order_id=inp.order_id,
            user_id=inp.user_id,
            status=OrderStatus.PENDING,
            items=[OrderLine(product_id=i.product_id, quantity=i.quantity) for i in inp.items],
        )
        self._cancel: CancelRequest | None = None
        self._ship = False
        self._deliver = False
        # Requests that came when the order could no longer honour them.
        self._ignored: list[str] = []

    # --- queries, signals, updates -------------------------------------------------------

    @workflow.query(name="status")
    def status(self) -> OrderSnapshot:
        """The order as it stands: status, items, totals, payment, reason and history."""
        return self._snap

    @workflow.signal(name="cancel")
    def cancel(self, req: CancelRequest) -> None:
        """Cancels the order unless it has shipped; a late cancel is recorded and ignored."""
        if self._snap.status in CANCELLABLE and self._cancel is None:
            self._cancel = req
        else:
            self._ignored.append(f"cancel ({req.reason}) while {self._snap.status}")

    @workflow.signal(name="ship")
    def ship_signal(self) -> None:
        if self._snap.status == OrderStatus.PAID and self._cancel is None:
            self._ship = True
        else:
            self._ignored.append(f"ship while {self._snap.status}")

    @workflow.signal(name="deliver")
    def deliver_signal(self) -> None:
        if self._snap.status == OrderStatus.SHIPPED:
            self._deliver = True
        else:
            self._ignored.append(f"deliver while {self._snap.status}")

    @workflow.update(name="request_cancel")
    async def request_cancel(self, req: CancelRequest) -> OrderSnapshot:
        """Cancels the order and answers once it is CANCELLED (or what it became instead)."""
        if self._cancel is None:
            self._cancel = req
        await workflow.wait_condition(lambda: self._snap.status.is_final)
        return self._snap

    @request_cancel.validator
    def _validate_cancel(self, req: CancelRequest) -> None:
        if self._snap.status not in CANCELLABLE:
            raise ApplicationError(
                f"order is {self._snap.status} and can no longer be cancelled",
                type="INVALID_STATE",
            )

    @workflow.update(name="request_ship")
    async def request_ship(self) -> OrderSnapshot:
        """Marks a PAID order SHIPPED and answers with the order."""
        self._ship = True
        await workflow.wait_condition(lambda: self._snap.status != OrderStatus.PAID)
        return self._snap

    @request_ship.validator
    def _validate_ship(self) -> None:
        if self._snap.status != OrderStatus.PAID or self._cancel is not None:
            raise ApplicationError(
                f"order is {self._snap.status}: only a PAID order can be shipped",
                type="INVALID_STATE",
            )

    @workflow.update(name="request_deliver")
    async def request_deliver(self) -> OrderSnapshot:
        """Marks a SHIPPED order DELIVERED and answers with the order."""
        self._deliver = True
        await workflow.wait_condition(lambda: self._snap.status != OrderStatus.SHIPPED)
        return self._snap

    @request_deliver.validator
    def _validate_deliver(self) -> None:
        if self._snap.status != OrderStatus.SHIPPED:
            raise ApplicationError(
                f"order is {self._snap.status}: only a SHIPPED order can be delivered",
                type="INVALID_STATE",
            )

    # --- the run ------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: PlaceOrderInput) -> OrderSnapshot:
        if inp.resume is None:
            try:
                await self._transition(OrderStatus.PENDING)
            except (Exception, asyncio.CancelledError) as err:
                if not _cancelled_since(err, RELEASE_4):
                    raise
                # Nothing is reserved or charged yet: the order ends like one cancelled
                # during its checkout.
                await _finish(
                    asyncio.ensure_future(
                        self._end(OrderStatus.FAILED, FailureReason.WORKFLOW_CANCELLED.value)
                    )
                )
                raise
            paid = await self._checkout_until_paid_or_cancelled(inp)
            if not paid:
                return self._snap
            try:
                await self._notify(NotificationKind.ORDER_CONFIRMED)
            except (Exception, asyncio.CancelledError) as err:
                if not _cancelled_since(err, RELEASE_4):
                    raise
                # Paid: refunded and restocked, as when the workflow of a PAID order is
                # cancelled while it waits to ship.
                await _finish(
                    asyncio.ensure_future(self._cancel_paid(FailureReason.WORKFLOW_CANCELLED.value))
                )
                raise
        return await self._fulfil(inp)

    async def _checkout_until_paid_or_cancelled(self, inp: PlaceOrderInput) -> bool:
        checkout = asyncio.create_task(self._checkout(inp))
        try:
            await workflow.wait_condition(
                lambda: (
                    checkout.done()
                    or (self._cancel is not None and self._snap.status in PRE_PAYMENT)
                )
            )
        except asyncio.CancelledError:
            # The workflow itself was cancelled: roll back, then end as cancelled.
            checkout.cancel()
            await _finish(checkout)
            raise
        if not checkout.done():
            # A customer cancel before payment: the checkout rolls back its own saga.
            checkout.cancel()
        return await _finish(checkout)

    async def _checkout(self, inp: PlaceOrderInput) -> bool:
        saga = Saga()
        order_id = inp.order_id
        try:
            product_ids = list(dict.fromkeys(i.product_id for i in inp.items))
            lookups = [
                workflow.execute_activity_method(
                    UserActivities.get_user, GetUserInput(user_id=inp.user_id), **_step()
                ),
                *(
                    workflow.execute_activity_method(
                        ProductActivities.get_product, GetProductInput(product_id=p), **_step()
                    )
                    for p in product_ids
                ),
            ]
            if workflow.patched(RELEASE_3) or workflow.patched(LOOKUPS_IN_ORDER):
                # Wait for every lookup, then fail on the first in order: an unknown user
                # is USER_NOT_FOUND even when its product is unknown too and answers sooner.
                outcomes = await asyncio.gather(*lookups, return_exceptions=True)
                for outcome in outcomes:
                    if isinstance(outcome, BaseException):
                        raise outcome
                _user, *found = outcomes
            else:
                _user, *found = await asyncio.gather(*lookups)
            prices = {p.id: p.price_cents for p in found if isinstance(p, ProductInfo)}
            for line in self._snap.items:
                line.unit_price_cents = prices[line.product_id]
            self._snap.total_cents = sum(
                li.unit_price_cents * li.quantity for li in self._snap.items
            )

            self._stop_if_cancelled()
            saga.add("release_stock", lambda: self._release(order_id))
            await workflow.execute_activity_method(
                InventoryActivities.reserve_stock,
                ReserveStockInput(order_id=order_id, items=inp.items),
                **_step(),
            )
            await self._transition(OrderStatus.RESERVED)

            self._stop_if_cancelled()
            saga.add("refund", lambda: self._refund(order_id))
            payment = await workflow.execute_activity_method(
                PaymentActivities.charge,
                ChargeInput(
                    order_id=order_id,
                    amount_cents=self._snap.total_cents,
                    card_number=inp.card_number,
                    idempotency_key=f"{order_id}:charge",
                ),
                **_step(),
            )
            self._snap.payment_status = PaymentStatus.CAPTURED
            self._snap.card_last4 = payment.card_last4
            await self._transition(OrderStatus.PAID)
            return True
        # Exception and CancelledError, not BaseException: cancellation must compensate, but
        # the SDK's eviction of a cached workflow (GeneratorExit) must pass straight through.
        except (Exception, asyncio.CancelledError) as err:
            cancelled = is_cancellation(err)
            customer_cancel = cancelled and self._cancel is not None
            if isinstance(err, ActivityError) and isinstance(err.cause, ApplicationError):
                if err.cause.type == FailureReason.PAYMENT_DECLINED.value:
                    self._snap.payment_status = PaymentStatus.DECLINED
            await saga.compensate()
            if customer_cancel:
                assert self._cancel is not None
                await self._end(OrderStatus.CANCELLED, self._cancel.reason)
            else:
                workflow.logger.info("order %s failed: %s", order_id, err)
                await self._end(OrderStatus.FAILED, failure_reason(err))
            if cancelled and not customer_cancel:
                raise asyncio.CancelledError from err
            return False

    async def _fulfil(self, inp: PlaceOrderInput) -> OrderSnapshot:
        deadline = (
            timedelta(seconds=inp.fulfilment_deadline_seconds)
            if inp.fulfilment_deadline_seconds
            else DEFAULT_FULFILMENT_DEADLINE
        )
        paid_at = next(h.at for h in self._snap.history if h.status == OrderStatus.PAID)
        try:
            while not self._snap.status.is_final:
                # A request the current state still has to act on: no continue-as-new
                # before it is done. (`_ship` stays set once SHIPPED: counting it then kept
                # a SHIPPED order with a long history from ever continuing as new, and
                # spun the loop without yielding.)
                pending = (
                    self._cancel is not None
                    or (self._ship and self._snap.status == OrderStatus.PAID)
                    or (self._deliver and self._snap.status == OrderStatus.SHIPPED)
                )
                if _history_is_long(inp.max_history_events) and not pending:
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    workflow.continue_as_new(inp.model_copy(update={"resume": self._snap}))
                if self._snap.status == OrderStatus.PAID:
                    left = paid_at + deadline - workflow.now()
                    try:
                        await workflow.wait_condition(
                            lambda: (
                                self._cancel is not None
                                or self._ship
                                or _history_is_long(inp.max_history_events)
                            ),
                            timeout=max(left, timedelta(seconds=1)),
                        )
                    except TimeoutError:
                        self._cancel = CancelRequest(reason=FailureReason.NOT_SHIPPED.value)
                    if self._cancel is not None:
                        await self._cancel_paid(self._cancel.reason)
                    elif self._ship:
                        await self._transition(OrderStatus.SHIPPED)
                        await self._notify(NotificationKind.ORDER_SHIPPED)
                elif self._snap.status == OrderStatus.SHIPPED:
                    await workflow.wait_condition(
                        lambda: self._deliver or _history_is_long(inp.max_history_events)
                    )
                    if self._deliver:
                        await self._transition(OrderStatus.DELIVERED)
                        await self._notify(NotificationKind.ORDER_DELIVERED)
        except (Exception, asyncio.CancelledError) as err:
            # A cancellation may also come as the cause of a step's failure.
            if not isinstance(err, asyncio.CancelledError) and not _cancelled_since(err, RELEASE_4):
                raise
            # Cancelling the workflow of a PAID order cancels the order; a shipped one stays.
            if self._snap.status == OrderStatus.PAID:
                await _finish(
                    asyncio.ensure_future(self._cancel_paid(FailureReason.WORKFLOW_CANCELLED.value))
                )
            raise
        # Let update handlers that wait for the final state answer before the run ends.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._snap

    async def _cancel_paid(self, reason: str) -> None:
        """Hands a PAID order to CancelOrder (refund, restock, notify) and ends CANCELLED."""
        after = self._snap.model_copy(deep=True)
        after.payment_status = PaymentStatus.REFUNDED
        after.failure_reason = reason
        after.status = OrderStatus.CANCELLED
        after.history.append(StatusChange(status=OrderStatus.CANCELLED, at=workflow.now()))
        after.version += 1
        cancel_in = CancelOrderInput(
            order_id=self._snap.order_id, user_id=self._snap.user_id, reason=reason, snapshot=after
        )
        try:
            await workflow.execute_child_workflow(
                CancelOrder.run, cancel_in, id=cancel_workflow_id_for(self._snap.order_id)
            )
        except (ChildWorkflowError, WorkflowAlreadyStartedError) as err:
            # Another CancelOrder for this order ran or runs: its steps are idempotent, so
            # doing them here as well refunds and restocks exactly once all the same.
            workflow.logger.warning("CancelOrder child for %s: %s", self._snap.order_id, err)
            await self._refund(self._snap.order_id)
            await self._release(self._snap.order_id)
            await self._notify(NotificationKind.ORDER_CANCELLED)
            await self._save(after)
        self._snap = after
        self._publish()

    # --- helpers ------------------------------------------------------------------------

    def _stop_if_cancelled(self) -> None:
        """Stops the checkout before its next step once the customer has cancelled.

        The wait in `_checkout_until_paid_or_cancelled` cancels the checkout's task, but
        when the cancel signal comes in the same workflow task as the result of the step
        the checkout awaits, that cancellation can be lost (the result wins) and the
        checkout would go on to its next step.
        """
        if self._cancel is not None and workflow.patched(RELEASE_4):
            raise asyncio.CancelledError

    async def _end(self, status: OrderStatus, reason: str) -> None:
        self._snap.failure_reason = reason
        await self._transition(status)
        kind = (
            NotificationKind.ORDER_CANCELLED
            if status == OrderStatus.CANCELLED
            else NotificationKind.ORDER_FAILED
        )
        await self._notify(kind)

    async def _transition(self, status: OrderStatus) -> None:
        self._snap.status = status
        self._snap.history.append(StatusChange(status=status, at=workflow.now()))
        self._snap.version += 1
        self._publish()
        await self._save(self._snap)

    def _publish(self) -> None:
        """Search attributes and current details, so the Web UI shows where the saga is."""
        wanted = [
            ORDER_STATUS.value_set(self._snap.status.value),
            CUSTOMER_ID.value_set(self._snap.user_id),
        ]
        if workflow.patched(RELEASE_3):
            # Only what differs: the API starts the workflow with OrderStatus=PENDING and
            # CustomerId set, and every upsert costs the server a visibility write.
            current = workflow.info().typed_search_attributes
            wanted = [u for u in wanted if current.get(u.key) != u.value]
        if wanted:
            workflow.upsert_search_attributes(wanted)
        detail = f"{self._snap.status}"
        if self._snap.failure_reason:
            detail += f" ({self._snap.failure_reason})"
        workflow.set_current_details(
            f"**{detail}** · {len(self._snap.items)} item(s) · {self._snap.total_cents} cents"
        )

    async def _save(self, snap: OrderSnapshot) -> None:
        await workflow.execute_activity_method(OrderActivities.save_order, snap, **_undo())

    async def _release(self, order_id: str) -> None:
        await workflow.execute_activity_method(
            InventoryActivities.release_stock, ReleaseStockInput(order_id=order_id), **_undo()
        )

    async def _refund(self, order_id: str) -> None:
        result = await workflow.execute_activity_method(
            PaymentActivities.refund,
            RefundInput(order_id=order_id, idempotency_key=f"{order_id}:refund"),
            **_undo(),
        )
        if result.status == PaymentStatus.REFUNDED.value:
            self._snap.payment_status = PaymentStatus.REFUNDED

    async def _notify(self, kind: NotificationKind) -> None:
        reason = f": {self._snap.failure_reason}" if self._snap.failure_reason else ""
        await workflow.execute_activity_method(
            NotificationActivities.send_notification,
            NotifyInput(
                user_id=self._snap.user_id,
                order_id=self._snap.order_id,
                kind=kind,
                message=f"Order {self._snap.order_id} {kind.value.removeprefix('ORDER_').lower()}"
                f"{reason}",
                idempotency_key=f"{self._snap.order_id}:{kind.value}",
            ),
            **_undo(),
        )


def _history_is_long(limit: int) -> bool:
    """Continue as new well before the history limits, keeping the order's state."""
    info = workflow.info()
    return info.is_continue_as_new_suggested() or info.get_current_history_length() > limit


def _cancelled_since(err: BaseException, patch_id: str) -> bool:
    """Whether `err` is the workflow's cancellation and the run handles it as `patch_id`
    does (a run recorded before that patch let it end the workflow there)."""
    return is_cancellation(err) and workflow.patched(patch_id)


async def _finish(task: asyncio.Future[T]) -> T:
    """Awaits a task to its end even if this coroutine is cancelled meanwhile."""
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            continue
    return task.result()
