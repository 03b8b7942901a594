"""PlaceOrder and CancelOrder on the time-skipping server, with fake activities.

Over 400 lines: every path of the saga (each failure, each point a cancel can land, the
fulfilment loop, continue-as-new) on the same fixtures.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.messages import (
    CANCEL_REASON_MAX,
    CUSTOMER_ID,
    ORDER_STATUS,
    CancelOrderInput,
    CancelOrderResult,
    CancelRequest,
    OrderItem,
    OrderSnapshot,
    OrderStatus,
    PaymentStatus,
    PlaceOrderInput,
    ShippingAddress,
    workflow_id_for,
)
from tests.fakes import FakeShop
from worker import WORKFLOWS

pytestmark = pytest.mark.timeout(60)

# What the payment service hands out for a card ending 4242 (the fake reads the last four).
TOKEN = "tok_fake_4242"
ADDRESS = ShippingAddress(
    name="Ada Lovelace", line1="12 St James's Square", city="London", postal_code="SW1Y 4JH",
    country="GB",
)  # fmt: skip


@pytest.fixture
def shop() -> FakeShop:
    return FakeShop()


STARTED: list[WorkflowHandle[object, OrderSnapshot]] = []


@pytest.fixture
async def worker(
    time_env: WorkflowEnvironment, task_queue: str, shop: FakeShop
) -> AsyncIterator[Worker]:
    async with Worker(
        time_env.client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=shop.activities(),
    ) as w:
        yield w
        # A workflow left waiting (PAID orders wait days) would hold the shared test
        # server's clock back for later tests: end it with its worker.
        # An activity that completes after its workflow closed leaks the server's time lock
        # too, so first let activities in flight finish.
        while STARTED:
            handle = STARTED.pop()
            for _ in range(100):
                desc = await handle.describe()
                if not desc.raw_description.pending_activities:
                    break
                await asyncio.sleep(0.05)
            if desc.status is not None and desc.status.name == "RUNNING":
                await handle.terminate("test over")


@pytest.fixture
async def dev_worker(
    dev_env: WorkflowEnvironment, task_queue: str, shop: FakeShop
) -> AsyncIterator[Worker]:
    """The same worker on the real dev server (see the note above the tests that use it)."""
    async with Worker(
        dev_env.client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=shop.activities(),
    ) as w:
        yield w


async def start(
    env: WorkflowEnvironment,
    task_queue: str,
    search_attributes: TypedSearchAttributes | None = None,
    **overrides: object,
) -> WorkflowHandle[object, OrderSnapshot]:
    order_id = uuid.uuid4().hex
    inp = PlaceOrderInput(
        order_id=order_id,
        user_id="u-1",
        items=[OrderItem(product_id="p-1", quantity=2), OrderItem(product_id="p-2", quantity=1)],
        card_token=TOKEN,
        shipping_address=ADDRESS,
    ).model_copy(update=overrides)
    handle = await env.client.start_workflow(
        "PlaceOrder",
        inp,
        id=workflow_id_for(order_id),
        task_queue=task_queue,
        result_type=OrderSnapshot,
        search_attributes=search_attributes,
    )
    STARTED.append(handle)
    return handle


async def status_of(handle: WorkflowHandle[object, OrderSnapshot]) -> OrderSnapshot:
    snap: OrderSnapshot = await handle.query("status", result_type=OrderSnapshot)
    return snap


async def wait_for(
    handle: WorkflowHandle[object, OrderSnapshot], status: OrderStatus
) -> OrderSnapshot:
    for _ in range(200):
        snap = await status_of(handle)
        if snap.status == status:
            return snap
        await asyncio.sleep(0.05)
    events = [
        f"{e.event_id}:{EventType.Name(e.event_type)}"
        for e in (await handle.fetch_history()).events
    ]
    raise AssertionError(f"order never reached {status}; last {snap.status}; history {events}")


async def test_success_reaches_paid_and_waits_for_fulfilment(
    time_env: WorkflowEnvironment, task_queue: str, worker: Worker, shop: FakeShop
) -> None:
    handle = await start(time_env, task_queue)
    snap = await wait_for(handle, OrderStatus.PAID)
    assert snap.total_cents == 2 * 1500 + 250
    assert snap.payment_status == "CAPTURED"
    assert snap.card_last4 == "4242"
    assert [h.status for h in snap.history] == ["PENDING", "RESERVED", "PAID"]
    assert [li.unit_price_cents for li in snap.items] == [1500, 250]
    # Still running: PlaceOrder lives for the order's whole life.
    desc = await handle.describe()
    assert desc.status is not None and desc.status.name == "RUNNING"
    for _ in range(100):
        if ("notify:ORDER_CONFIRMED") in shop.calls:
            break
        await asyncio.sleep(0.05)
    assert shop.notifications == [(snap.order_id, "ORDER_CONFIRMED")]
    assert [s.status for s in shop.saved] == ["PENDING", "RESERVED", "PAID"]
    assert "refund" not in shop.calls and "release_stock" not in shop.calls
    assert shop.captured == {snap.order_id: 3250}


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda s: s.users.clear(), "USER_NOT_FOUND"),
        (lambda s: s.products.pop("p-2"), "PRODUCT_NOT_FOUND"),
        (lambda s: s.stock.update({"p-2": 0}), "OUT_OF_STOCK"),
        (lambda s: setattr(s, "decline", True), "PAYMENT_DECLINED"),
    ],
    ids=["user", "product", "stock", "declined"],
)
async def test_business_failures_end_failed_with_reason(
    time_env: WorkflowEnvironment,
    task_queue: str,
    worker: Worker,
    shop: FakeShop,
    setup: Callable[[FakeShop], object],
    reason: str,
) -> None:
    setup(shop)
    handle = await start(time_env, task_queue)
    result = await handle.result()
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == reason
    assert shop.notifications == [(result.order_id, "ORDER_FAILED")]
    assert result.history[-1].status == "FAILED"
    assert shop.saved[-1].status == "FAILED" and shop.saved[-1].failure_reason == reason
    # Nothing is held afterwards: no stock, no money.
    assert shop.stock == {"p-1": 10, "p-2": 0 if reason == "OUT_OF_STOCK" else 10}
    assert shop.reserved == {} and shop.captured == {}
    assert "charge" not in shop.calls or reason == "PAYMENT_DECLINED"


async def test_unknown_user_wins_over_unknown_product_even_when_slower(
    time_env: WorkflowEnvironment, task_queue: str, worker: Worker, shop: FakeShop
) -> None:
    # Both lookups fail; the product's answer comes first, yet the reason names the user.
    shop.users.clear()
    shop.products.clear()
    shop.user_delay = 0.3
    result = await (await start(time_env, task_queue)).result()
    assert result.status == OrderStatus.FAILED
    assert result.failure_reason == "USER_NOT_FOUND"
    assert shop.notifications == [(result.order_id, "ORDER_FAILED")]
    assert "reserve_stock" not in shop.calls


async def test_declined_payment_compensates_in_reverse(
    time_env: WorkflowEnvironment, task_queue: str, worker: Worker, shop: FakeShop
) -> None:
    shop.decline = True
    handle = await start(time_env, task_queue)
    result = await handle.result()
    assert result.payment_status == "DECLINED"
    i = shop.calls.index
    # Undo in reverse: the refund (a no-op void) before the release, both after the charge.
    assert i("reserve_stock") < i("charge") < i("refund") < i("release_stock")
    assert shop.calls.count("refund") == 1 and shop.calls.count("release_stock") == 1
    # The charge is final: a declined card is not retried.
    assert shop.charge_attempts == 1


async def test_unknown_user_compensates_nothing(
    time_env: WorkflowEnvironment, task_queue: str, worker: Worker, shop: FakeShop
) -> None:
    shop.users.clear()
    result = await (await start(time_env, task_queue)).result()
    assert result.failure_reason == "USER_NOT_FOUND"
    assert "reserve_stock" not in shop.calls
    assert "release_stock" not in shop.calls and "refund" not in shop.calls


async def test_out_of_stock_releases_but_does_not_refund(
    time_env: WorkflowEnvironment, task_queue: str, worker: Worker, shop: FakeShop
) -> None:
    shop.stock["p-1"] = 1
    result = await (await start(time_env, task_queue)).result()
    assert result.failure_reason == "OUT_OF_STOCK"
    assert "charge" not in shop.calls and "refund" not in shop.calls
    assert shop.calls.count("release_stock") == 1
    assert shop.stock == {"p-1": 1, "p-2": 10}


async def test_transient_payment_errors_are_retried_then_pay(
    time_env: WorkflowEnvironment, task_queue: str, worker: Worker, shop: FakeShop
) -> None:
    shop.charge_transient_failures = 2
    handle = await start(time_env, task_queue)
    snap = await wait_for(handle, OrderStatus.PAID)
    assert shop.charge_attempts == 3
    assert snap.payment_status == "CAPTURED"
    # End the order normally: terminating it here can leave the test server's clock locked.
    await handle.execute_update("request_ship", result_type=OrderSnapshot)
    await handle.execute_update("request_deliver", result_type=OrderSnapshot)
    assert (await handle.result()).status == OrderStatus.DELIVERED


async def test_cancel_update_after_payment_refunds_through_cancel_order(
    time_env: WorkflowEnvironment, task_queue: str, worker: Worker, shop: FakeShop
) -> None:
    handle = await start(time_env, task_queue)
    await wait_for(handle, OrderStatus.PAID)
    snap = await handle.execute_update(
        "request_cancel", CancelRequest(reason="too slow"), result_type=OrderSnapshot
    )
    assert snap.status == OrderStatus.CANCELLED
    assert snap.payment_status == "REFUNDED"
    assert (snap.failure_reason, snap.cancel_reason) == ("CANCELLED_BY_CUSTOMER", "too slow")
    assert shop.saved[-1] == snap  # the read model gets the order as CancelOrder left it
    assert shop.refunds[snap.order_id] == 1
    assert shop.stock == {"p-1": 10, "p-2": 10}
    result = await handle.result()
    assert result.status == OrderStatus.CANCELLED
    child = time_env.client.get_workflow_handle(f"cancel-{snap.order_id}")
    assert (await child.describe()).status.name == "COMPLETED"  # type: ignore[union-attr]
    assert [n for _, n in shop.notifications] == ["ORDER_CONFIRMED", "ORDER_CANCELLED"]


async def test_a_cancel_signal_with_too_long_words_still_cancels(
    time_env: WorkflowEnvironment, task_queue: str, worker: Worker, shop: FakeShop
) -> None:
    handle = await start(time_env, task_queue)
    await wait_for(handle, OrderStatus.PAID)
    await handle.signal("cancel", {"reason": "x" * (CANCEL_REASON_MAX + 100)})
    result = await handle.result()
    assert (result.status, result.failure_reason) == (
        OrderStatus.CANCELLED,
        "CANCELLED_BY_CUSTOMER",
    )
    assert result.cancel_reason == "x" * CANCEL_REASON_MAX
    assert shop.refunds[result.order_id] == 1


async def test_ship_then_deliver_completes_the_workflow(
    time_env: WorkflowEnvironment, task_queue: str, worker: Worker, shop: FakeShop
) -> None:
    handle = await start(time_env, task_queue)
    await wait_for(handle, OrderStatus.PAID)
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("request_deliver", result_type=OrderSnapshot)
    shipped = await handle.execute_update("request_ship", result_type=OrderSnapshot)
    assert shipped.status == OrderStatus.SHIPPED
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(
            "request_cancel", CancelRequest(reason="late"), result_type=OrderSnapshot
        )
    delivered = await handle.execute_update("request_deliver", result_type=OrderSnapshot)
    assert delivered.status == OrderStatus.DELIVERED
    result = await handle.result()
    assert [h.status for h in result.history] == [
        "PENDING",
        "RESERVED",
        "PAID",
        "SHIPPED",
        "DELIVERED",
    ]
    assert [n for _, n in shop.notifications] == [
        "ORDER_CONFIRMED",
        "ORDER_SHIPPED",
        "ORDER_DELIVERED",
    ]
    assert shop.refunds[result.order_id] == 0
    # The order keeps its address; the shipment notice says where it goes.
    assert result.shipping_address == ADDRESS
    assert shop.messages[(result.order_id, "ORDER_SHIPPED")] == (
        f"Order {result.order_id} shipped: to Ada Lovelace, 12 St James's Square, "
        "SW1Y 4JH London, GB"
    )
    assert shop.charged_with == [(result.order_id, "u-1", TOKEN)]


async def test_signals_move_the_order_and_wrong_state_ones_are_ignored(
    time_env: WorkflowEnvironment, task_queue: str, worker: Worker, shop: FakeShop
) -> None:
    handle = await start(time_env, task_queue)
    await wait_for(handle, OrderStatus.PAID)
    await handle.signal("deliver")  # not shipped yet: ignored
    await handle.signal("ship")
    shipped = await wait_for(handle, OrderStatus.SHIPPED)
    await handle.signal("cancel", CancelRequest(reason="too late"))  # shipped: ignored
    await handle.signal("ship")  # already shipped: ignored
    for name in ("request_ship", "request_cancel"):
        args = [CancelRequest(reason="late")] if name == "request_cancel" else []
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update(name, *args, result_type=OrderSnapshot)
        assert "SHIPPED" in str(info.value.cause)
    assert (await status_of(handle)).status == OrderStatus.SHIPPED
    await handle.signal("deliver")
    result = await handle.result()
    assert result.status == OrderStatus.DELIVERED
    assert result.failure_reason is None and result.payment_status == "CAPTURED"
    assert [h.status for h in result.history][-2:] == ["SHIPPED", "DELIVERED"]
    assert shipped.history[-1].at <= result.history[-1].at
    assert shop.refunds[result.order_id] == 0
    assert "release_stock" not in shop.calls


async def test_unshipped_order_is_cancelled_after_the_fulfilment_deadline(
    clock_env: WorkflowEnvironment, task_queue: str, shop: FakeShop
) -> None:
    async with Worker(
        clock_env.client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=shop.activities(),
    ):
        handle = await start(clock_env, task_queue)
        # The default deadline is 7 days: the test server skips them while we wait.
        result = await handle.result()
    assert result.status == OrderStatus.CANCELLED
    assert (result.failure_reason, result.cancel_reason) == ("NOT_SHIPPED", None)
    assert result.payment_status == "REFUNDED"
    paid_at = next(h.at for h in result.history if h.status == "PAID")
    cancelled_at = result.history[-1].at
    assert cancelled_at - paid_at >= timedelta(days=7)
    assert shop.refunds[result.order_id] == 1
    assert [n for _, n in shop.notifications] == ["ORDER_CONFIRMED", "ORDER_CANCELLED"]


async def test_concurrent_cancels_refund_and_restock_once(
    time_env: WorkflowEnvironment, task_queue: str, worker: Worker, shop: FakeShop
) -> None:
    handle = await start(time_env, task_queue)
    snap = await wait_for(handle, OrderStatus.PAID)
    cancel_in = CancelOrderInput(order_id=snap.order_id, user_id=snap.user_id, reason="direct")
    results = await asyncio.gather(
        handle.signal("cancel", CancelRequest(reason="signal")),
        handle.execute_update(
            "request_cancel", CancelRequest(reason="update"), result_type=OrderSnapshot
        ),
        time_env.client.execute_workflow(
            "CancelOrder",
            cancel_in,
            id=f"cancel-{snap.order_id}",
            task_queue=task_queue,
            result_type=CancelOrderResult,
        ),
        return_exceptions=True,
    )
    # The standalone CancelOrder may lose the id race to PlaceOrder's child: both are fine.
    assert not isinstance(results[1], BaseException), results[1]
    result = await handle.result()
    assert result.status == OrderStatus.CANCELLED
    assert result.payment_status == "REFUNDED"
    assert shop.refunds[snap.order_id] == 1
    assert shop.stock == {"p-1": 10, "p-2": 10}
    assert shop.notifications.count((snap.order_id, "ORDER_CANCELLED")) == 1
    assert result.failure_reason == "CANCELLED_BY_CUSTOMER"
    assert result.cancel_reason in {"signal", "update"}


async def test_a_cancel_while_another_cancel_order_runs_waits_for_it(
    time_env: WorkflowEnvironment, task_queue: str, worker: Worker, shop: FakeShop
) -> None:
    handle = await start(time_env, task_queue)
    snap = await wait_for(handle, OrderStatus.PAID)
    # A CancelOrder started by hand holds the id `cancel-{order_id}` (its notification waits).
    gate = shop.gates["notify:ORDER_CANCELLED"] = asyncio.Event()
    by_hand = await time_env.client.start_workflow(
        "CancelOrder",
        CancelOrderInput(order_id=snap.order_id, user_id=snap.user_id, reason="by hand"),
        id=f"cancel-{snap.order_id}",
        task_queue=task_queue,
        result_type=CancelOrderResult,
    )
    await _in_flight(shop, "notify:ORDER_CANCELLED")
    update = asyncio.ensure_future(
        handle.execute_update(
            "request_cancel", CancelRequest(reason="changed my mind"), result_type=OrderSnapshot
        )
    )
    await asyncio.sleep(0.5)
    assert (await status_of(handle)).status == OrderStatus.PAID  # waits for the other run
    gate.set()
    assert (await by_hand.result()).refunded_cents == snap.total_cents
    cancelled = await update
    # PlaceOrder's own CancelOrder ran after it: the order is CANCELLED and saved so, yet
    # refunded, restocked and notified once.
    assert (cancelled.status, cancelled.cancel_reason) == (OrderStatus.CANCELLED, "changed my mind")
    assert shop.saved[-1] == cancelled
    assert shop.refunds[snap.order_id] == 1 and shop.stock == {"p-1": 10, "p-2": 10}
    assert shop.notifications.count((snap.order_id, "ORDER_CANCELLED")) == 1
    latest = await time_env.client.get_workflow_handle(f"cancel-{snap.order_id}").describe()
    assert latest.run_id != by_hand.result_run_id


# The tests below run on the real dev server: the time-skipping test server mishandles the
# cancellation of an activity in flight (ACTIVITY_UNKNOWN) and, after a continue-as-new,
# stops answering queries in time. None of them needs time to be skipped.


async def test_an_order_being_refunded_after_its_deadline_cannot_be_shipped(
    dev_env: WorkflowEnvironment, task_queue: str, dev_worker: Worker, shop: FakeShop
) -> None:
    """The deadline's CancelOrder refunds the order, which reads PAID until it is done: a
    ship then is refused (409 at the API), not answered with the CANCELLED order."""
    gate = shop.gates["notify:ORDER_CANCELLED"] = asyncio.Event()
    handle = await start(dev_env, task_queue, fulfilment_deadline_seconds=1)
    await _in_flight(shop, "notify:ORDER_CANCELLED")  # refunded; the child's last step held
    assert (await status_of(handle)).status == OrderStatus.PAID
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update("request_ship", result_type=OrderSnapshot)
    assert "cannot be shipped" in str(info.value.cause)
    await handle.signal("ship")  # ignored as well
    gate.set()
    result = await handle.result()
    assert (result.status, result.failure_reason) == (OrderStatus.CANCELLED, "NOT_SHIPPED")
    assert "SHIPPED" not in [h.status for h in result.history]
    assert shop.refunds[result.order_id] == 1


async def test_cancelling_the_workflow_compensates_and_cancels_the_order(
    dev_env: WorkflowEnvironment, task_queue: str, dev_worker: Worker, shop: FakeShop
) -> None:
    shop.charge_blocks = True
    handle = await start(dev_env, task_queue)
    await wait_for(handle, OrderStatus.RESERVED)
    for _ in range(100):
        if shop.charge_attempts:
            break
        await asyncio.sleep(0.05)
    await handle.cancel()
    # Let the charge that was in flight come back late: the refund already voided it.
    shop.charge_gate.set()
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert isinstance(info.value.cause, CancelledError)
    snap = shop.saved[-1]
    assert snap.status == OrderStatus.CANCELLED
    assert (snap.failure_reason, snap.cancel_reason) == ("WORKFLOW_CANCELLED", None)
    assert shop.reserved == {} and shop.stock == {"p-1": 10, "p-2": 10}
    i = shop.calls.index
    assert i("charge") < i("refund") < i("release_stock")
    assert shop.notifications[-1][1] == "ORDER_CANCELLED"


async def _in_flight(shop: FakeShop, call: str) -> None:
    for _ in range(200):
        if call in shop.calls:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{call} never started: {shop.calls}")


async def _cancel_during(
    handle: WorkflowHandle[object, OrderSnapshot], shop: FakeShop, call: str, gate: asyncio.Event
) -> None:
    """Cancels the workflow while `call` (held by `gate`) is in flight; it ends cancelled."""
    await _in_flight(shop, call)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    gate.set()
    assert isinstance(info.value.cause, CancelledError)


async def test_cancelling_the_workflow_while_it_saves_the_new_order_cancels_it(
    dev_env: WorkflowEnvironment, task_queue: str, dev_worker: Worker, shop: FakeShop
) -> None:
    gate = shop.gates["save:PENDING"] = asyncio.Event()
    handle = await start(dev_env, task_queue)
    await _cancel_during(handle, shop, "save:PENDING", gate)
    # Not left PENDING for ever: the read model gets its end, the customer a notification.
    snap = shop.saved[-1]
    assert (snap.status, snap.failure_reason) == (OrderStatus.CANCELLED, "WORKFLOW_CANCELLED")
    assert [n[1] for n in shop.notifications] == ["ORDER_CANCELLED"]
    assert "reserve_stock" not in shop.calls and shop.captured == {}


async def test_cancelling_the_workflow_while_it_confirms_refunds_the_paid_order(
    dev_env: WorkflowEnvironment, task_queue: str, dev_worker: Worker, shop: FakeShop
) -> None:
    gate = shop.gates["notify:ORDER_CONFIRMED"] = asyncio.Event()
    handle = await start(dev_env, task_queue)
    paid = await wait_for(handle, OrderStatus.PAID)
    await _cancel_during(handle, shop, "notify:ORDER_CONFIRMED", gate)
    # Paid, then cancelled before it could wait to ship: refunded and restocked once.
    snap = shop.saved[-1]
    assert (snap.status, snap.failure_reason) == (OrderStatus.CANCELLED, "WORKFLOW_CANCELLED")
    assert snap.payment_status == PaymentStatus.REFUNDED
    assert shop.refunds[paid.order_id] == 1 and shop.captured[paid.order_id] == paid.total_cents
    assert shop.reserved == {} and shop.stock == {"p-1": 10, "p-2": 10}
    assert (paid.order_id, "ORDER_CANCELLED") in shop.notifications


async def test_a_cancel_that_comes_with_a_steps_result_is_not_lost(
    dev_env: WorkflowEnvironment, task_queue: str, dev_worker: Worker, shop: FakeShop
) -> None:
    # The save of RESERVED comes back at the moment the customer cancels: often both land
    # in one workflow task, where the step's result could win over the task's cancellation
    # and the order went on to be charged. Several orders, so the race is met.
    for _ in range(8):
        gate = shop.gates["save:RESERVED"] = asyncio.Event()
        handle = await start(dev_env, task_queue)
        await _in_flight(shop, "save:RESERVED")
        gate.set()
        await handle.signal("cancel", CancelRequest(reason="changed my mind"))
        result = await handle.result()
        assert (result.status, result.failure_reason, result.cancel_reason) == (
            OrderStatus.CANCELLED,
            "CANCELLED_BY_CUSTOMER",
            "changed my mind",
        )
        # No charge scheduled once the workflow has the cancel. (On a loaded machine the
        # cancel may reach the server only after the workflow scheduled the charge: then
        # the charge may happen, and is refunded.)
        events = list((await handle.fetch_history()).events)
        signalled = next(
            i
            for i, e in enumerate(events)
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        )
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in events[signalled:]
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
        assert "charge" not in scheduled, "charged although cancelled before payment"
        if result.order_id in shop.captured:
            assert shop.refunds[result.order_id] == 1
        shop.calls.clear()
    assert shop.stock == {"p-1": 10, "p-2": 10}


async def test_cancel_signal_before_payment_rolls_back(
    dev_env: WorkflowEnvironment, task_queue: str, dev_worker: Worker, shop: FakeShop
) -> None:
    shop.charge_blocks = True
    handle = await start(dev_env, task_queue)
    await wait_for(handle, OrderStatus.RESERVED)
    await handle.signal("cancel", CancelRequest(reason="changed my mind"))
    await wait_for(handle, OrderStatus.CANCELLED)
    shop.charge_gate.set()
    result = await handle.result()
    assert result.status == OrderStatus.CANCELLED
    assert (result.failure_reason, result.cancel_reason) == (
        "CANCELLED_BY_CUSTOMER",
        "changed my mind",
    )
    assert shop.stock == {"p-1": 10, "p-2": 10}
    assert shop.notifications[-1][1] == "ORDER_CANCELLED"
    assert shop.captured == {}


async def _ignored_until_continued(
    env: WorkflowEnvironment, handle: WorkflowHandle[object, OrderSnapshot], signal: str
) -> WorkflowHandle[object, OrderSnapshot]:
    """Sends a signal the order ignores until its run continues as new; the new run's handle.

    Each signal, ignored or not, grows the history. Signals may arrive one per workflow
    task or batched into one, so keep sending until the history passes the limit.
    """
    first_run = (await handle.describe()).run_id
    for _ in range(200):
        if (await handle.describe()).run_id != first_run:
            break
        await handle.signal(signal)
        await asyncio.sleep(0.05)
    for _ in range(100):
        if (await handle.describe()).run_id != first_run:
            break
        await asyncio.sleep(0.1)
    fresh = env.client.get_workflow_handle(handle.id, result_type=OrderSnapshot)
    if (await fresh.describe()).run_id == first_run:
        events = [
            f"{e.event_id}:{EventType.Name(e.event_type)}"
            for e in (await handle.fetch_history()).events
        ]
        raise AssertionError(f"no continue-as-new: {len(events)} events {events[-12:]}")
    return fresh


async def test_long_lived_order_continues_as_new_and_keeps_its_state(
    dev_env: WorkflowEnvironment, task_queue: str, dev_worker: Worker, shop: FakeShop
) -> None:
    handle = await start(dev_env, task_queue, max_history_events=40)
    first = await wait_for(handle, OrderStatus.PAID)
    fresh = await _ignored_until_continued(dev_env, handle, "deliver")
    again = await status_of(fresh)
    assert again.status == OrderStatus.PAID
    assert again.history == first.history and again.total_cents == first.total_cents
    await fresh.execute_update("request_ship", result_type=OrderSnapshot)
    done = await fresh.execute_update("request_deliver", result_type=OrderSnapshot)
    assert done.status == OrderStatus.DELIVERED
    assert shop.notifications.count((first.order_id, "ORDER_CONFIRMED")) == 1


async def test_shipped_order_with_a_long_history_continues_as_new(
    dev_env: WorkflowEnvironment, task_queue: str, dev_worker: Worker, shop: FakeShop
) -> None:
    handle = await start(dev_env, task_queue, max_history_events=40)
    await wait_for(handle, OrderStatus.PAID)
    shipped = await handle.execute_update("request_ship", result_type=OrderSnapshot)
    assert shipped.status == OrderStatus.SHIPPED
    # A shipped order ignores `ship`.
    fresh = await _ignored_until_continued(dev_env, handle, "ship")
    again = await status_of(fresh)
    assert again.status == OrderStatus.SHIPPED and again.history == shipped.history
    done = await fresh.execute_update("request_deliver", result_type=OrderSnapshot)
    assert done.status == OrderStatus.DELIVERED
    assert shop.notifications.count((shipped.order_id, "ORDER_SHIPPED")) == 1


async def upserted(handle: WorkflowHandle[object, OrderSnapshot]) -> list[set[str]]:
    """The search attribute names of each upsert in the workflow's history, in order."""
    return [
        set(e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
        for e in (await handle.fetch_history()).events
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    ]


@pytest.mark.parametrize("set_at_start", [True, False], ids=["set-at-start", "not-set"])
async def test_search_attributes_are_upserted_only_when_they_change(
    dev_env: WorkflowEnvironment,
    task_queue: str,
    dev_worker: Worker,
    shop: FakeShop,
    set_at_start: bool,
) -> None:
    # The API starts PlaceOrder with OrderStatus=PENDING and CustomerId set (each upsert
    # costs the server a visibility write); a workflow started without them gets them.
    attrs = TypedSearchAttributes(
        [SearchAttributePair(ORDER_STATUS, "PENDING"), SearchAttributePair(CUSTOMER_ID, "u-1")]
    )
    handle = await start(dev_env, task_queue, search_attributes=attrs if set_at_start else None)
    await wait_for(handle, OrderStatus.PAID)
    first = [{"OrderStatus", "CustomerId"}] if not set_at_start else []
    assert await upserted(handle) == [
        *first,
        {"OrderStatus"},  # RESERVED
        {"OrderStatus"},  # PAID
    ]
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(ORDER_STATUS) == "PAID"
    assert desc.typed_search_attributes.get(CUSTOMER_ID) == "u-1"


async def test_cancelling_the_workflow_while_it_ships_still_saves_and_tells_it(
    dev_env: WorkflowEnvironment, task_queue: str, dev_worker: Worker, shop: FakeShop
) -> None:
    """A Temporal cancel that comes while the SHIPPED save is in flight: the order stays
    shipped (it has left), and the read model and the customer still learn it; the
    workflow then ends cancelled."""
    gate = shop.gates["save:SHIPPED"] = asyncio.Event()
    handle = await start(dev_env, task_queue)
    await wait_for(handle, OrderStatus.PAID)
    await handle.signal("ship")
    await _cancel_while_held(handle, shop, "save:SHIPPED", gate)
    order_id = shop.saved[-1].order_id
    assert shop.saved[-1].status == OrderStatus.SHIPPED
    assert (order_id, "ORDER_SHIPPED") in shop.notifications
    assert shop.refunds.get(order_id, 0) == 0


async def _cancel_while_held(
    handle: WorkflowHandle[object, OrderSnapshot], shop: FakeShop, call: str, gate: asyncio.Event
) -> None:
    """Cancels the workflow while `call` (held by `gate`) is in flight, and lets `call` go
    once the worker has seen the cancel: the run must still end cancelled."""
    await _in_flight(shop, call)
    await handle.cancel()
    await _processed_cancel(handle)
    gate.set()
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert isinstance(info.value.cause, CancelledError)


async def _processed_cancel(handle: WorkflowHandle[object, OrderSnapshot]) -> None:
    """Waits until the worker has run the workflow task that saw the cancel request."""
    for _ in range(200):
        kinds = [e.event_type for e in (await handle.fetch_history()).events]
        asked = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
        if (
            asked in kinds
            and EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in kinds[kinds.index(asked) :]
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the cancel request was never processed")


async def test_a_cancel_right_behind_an_accepted_ship_is_refused(
    dev_env: WorkflowEnvironment, task_queue: str, shop: FakeShop
) -> None:
    """A ship and a cancel that reach the workflow in one task: the ship, first, goes on;
    the cancel is refused (409 at the API), not both accepted and the ship answered with
    a CANCELLED order."""

    def a_worker() -> Worker:
        return Worker(
            dev_env.client,
            task_queue=task_queue,
            workflows=list(WORKFLOWS),
            activities=shop.activities(),
        )

    async with a_worker():
        handle = await start(dev_env, task_queue)
        await wait_for(handle, OrderStatus.PAID)
    # No worker: both wait for the same workflow task.
    await handle.signal("ship")
    cancel = asyncio.create_task(
        handle.execute_update("request_cancel", CancelRequest(), result_type=OrderSnapshot)
    )
    async with a_worker():
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await cancel
        assert "cannot be cancelled" in str(info.value.cause)
        await wait_for(handle, OrderStatus.SHIPPED)
    await handle.terminate("test over")
    assert shop.refunds.get(shop.saved[-1].order_id, 0) == 0


async def test_cancelling_the_workflow_while_a_customer_s_cancel_refunds_lets_it_finish(
    dev_env: WorkflowEnvironment, task_queue: str, dev_worker: Worker, shop: FakeShop
) -> None:
    """A Temporal cancel while the customer's CancelOrder runs: that CancelOrder finishes
    (refunded once, the customer's reason kept everywhere), no second one starts with
    another reason, and the workflow then ends cancelled."""
    gate = shop.gates["notify:ORDER_CANCELLED"] = asyncio.Event()
    handle = await start(dev_env, task_queue)
    paid = await wait_for(handle, OrderStatus.PAID)
    await handle.signal("cancel", CancelRequest(reason="changed my mind"))
    await _cancel_while_held(handle, shop, "notify:ORDER_CANCELLED", gate)
    final = await status_of(handle)
    assert (final.status, final.failure_reason) == (OrderStatus.CANCELLED, "CANCELLED_BY_CUSTOMER")
    assert shop.saved[-1].failure_reason == "CANCELLED_BY_CUSTOMER"
    assert shop.refunds[paid.order_id] == 1 and shop.calls.count("refund") == 1
