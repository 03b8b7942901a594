"""The Cart workflow's clock, on the time-skipping test server: one CART_REMINDER per
untouched period, after the delay, reset by each change; closed after its idle days; and
continued as new with everything in it. The reminders go through the real notification
service (on port 0, over SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Engine
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import worker
from core.db import make_engine
from core.grpc_client import Stubs
from core.messages import CartInput, CartState, ProductInfo, SetCartItem, cart_workflow_id_for
from proto.shop.v1 import notification_pb2
from services.server import create_server
from tests.harness import uid
from workflows.cart import Cart

pytestmark = pytest.mark.timeout(90)

HOUR = 3600


@pytest.fixture(scope="module")
async def services(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Stubs, Engine]]:
    """The real services on a free port over SQLite, and stubs to them."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('cart')}/shop.db")
    server, port = create_server("127.0.0.1:0", engine, fault_rate=0.0)
    await server.start()
    try:
        async with Stubs.open(f"127.0.0.1:{port}") as stubs:
            yield stubs, engine
    finally:
        await server.stop(grace=1)
        engine.dispose()


@pytest.fixture
async def cart_worker(
    clock_env: WorkflowEnvironment, task_queue: str, services: tuple[Stubs, Engine]
) -> AsyncIterator[Worker]:
    activities = worker.build_activities(*services)
    async with worker.build_worker(clock_env.client, task_queue, activities) as w:
        yield w


def item(product_id: str, quantity: int) -> SetCartItem:
    product = ProductInfo(id=product_id, sku=product_id.upper(), name="Tea", price_cents=450)
    return SetCartItem(product_id=product_id, quantity=quantity, product=product)


async def set_item(
    client: Client, task_queue: str, inp: CartInput, req: SetCartItem
) -> WorkflowHandle[Cart, CartState]:
    """Starts the cart unless it runs, then the update. (Not the API's update-with-start:
    after one, the V1 test server keeps time skipping locked, and `result()` would wait
    30 real days. test_cart.py drives update-with-start on the dev server.)"""
    handle = await client.start_workflow(
        Cart.run,
        inp,
        id=cart_workflow_id_for(inp.user_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    await handle.execute_update("set_item", req, result_type=CartState)
    return handle


async def reminders(stubs: Stubs, user_id: str) -> list[notification_pb2.Notification]:
    listed = await stubs.notification.ListNotifications(
        notification_pb2.ListNotificationsRequest(user_id=user_id)
    )
    return list(listed.notifications)


async def reminded(handle: WorkflowHandle[Cart, CartState], version: int) -> CartState:
    """Waits until the cart has sent the reminder of `version`."""
    for _ in range(200):
        state = await handle.query(Cart.cart)
        if state.reminded_version == version:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"no reminder of version {version}: {state}")


async def test_one_reminder_per_untouched_period_reset_by_each_change(
    clock_env: WorkflowEnvironment,
    task_queue: str,
    services: tuple[Stubs, Engine],
    cart_worker: Worker,
) -> None:
    stubs, _ = services
    user_id = uid("u-")
    inp = CartInput(user_id=user_id, reminder_seconds=HOUR)
    handle = await set_item(clock_env.client, task_queue, inp, item("tea", 2))

    await clock_env.sleep(HOUR // 2)
    assert await reminders(stubs, user_id) == []
    # A change half-way: the reminder is due an hour after it, not after the first.
    await set_item(clock_env.client, task_queue, inp, item("tea", 3))
    await clock_env.sleep(HOUR * 7 // 10)
    assert await reminders(stubs, user_id) == []
    await clock_env.sleep(HOUR // 2)
    await reminded(handle, 2)
    [first] = await reminders(stubs, user_id)
    # The reminder of the cart as changed (3 items), not of the first one: sent once.
    assert (first.kind, first.order_id) == ("CART_REMINDER", "")
    assert first.message == "Your cart still holds 3 item(s)."

    # Untouched for hours more: nothing more. Changed again: one more, an hour later.
    await clock_env.sleep(HOUR * 5)
    assert len(await reminders(stubs, user_id)) == 1
    await set_item(clock_env.client, task_queue, inp, item("coffee", 1))
    await clock_env.sleep(HOUR + 60)
    await reminded(handle, 3)
    assert [n.message for n in await reminders(stubs, user_id)] == [
        "Your cart still holds 3 item(s).",
        "Your cart still holds 4 item(s).",
    ]

    # 30 days without a change: the cart closes itself, emptied, without another reminder.
    closed = await handle.result()
    assert (closed.items, closed.version) == ([], 3)
    assert len(await reminders(stubs, user_id)) == 2


async def test_an_empty_cart_sends_no_reminder(
    clock_env: WorkflowEnvironment,
    task_queue: str,
    services: tuple[Stubs, Engine],
    cart_worker: Worker,
) -> None:
    stubs, _ = services
    user_id = uid("u-")
    inp = CartInput(user_id=user_id, reminder_seconds=HOUR, idle_close_seconds=10 * HOUR)
    handle = await set_item(clock_env.client, task_queue, inp, item("tea", 1))
    await set_item(clock_env.client, task_queue, inp, item("tea", 0))
    closed = await handle.result()
    assert (closed.items, closed.version, closed.reminded_version) == ([], 2, None)
    assert await reminders(stubs, user_id) == []


async def test_a_long_cart_continues_as_new_with_everything_in_it(
    clock_env: WorkflowEnvironment,
    task_queue: str,
    services: tuple[Stubs, Engine],
    cart_worker: Worker,
) -> None:
    user_id = uid("u-")
    inp = CartInput(user_id=user_id, max_history_events=20, idle_close_seconds=HOUR)
    handle = await set_item(clock_env.client, task_queue, inp, item("p0", 1))
    first_run = (await handle.describe()).run_id
    for n in range(1, 8):
        await set_item(clock_env.client, task_queue, inp, item(f"p{n}", n + 1))
    state = await handle.query(Cart.cart)
    assert [(li.product_id, li.quantity) for li in state.items] == [
        (f"p{n}", n + 1) for n in range(8)
    ]
    assert state.version == 8
    assert (await handle.describe()).run_id != first_run
    old = clock_env.client.get_workflow_handle(handle.id, run_id=first_run)
    events = [e.event_type for e in (await old.fetch_history()).events]
    assert events[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    # Closed before the worker stops: a timer left behind would fire with no worker to take
    # its task, and that task would keep the shared server from skipping time for good.
    assert (await handle.result()).version == 8
