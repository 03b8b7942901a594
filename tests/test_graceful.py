"""SIGTERM: the worker stops polling, lets what is in flight finish, and exits 0; a new worker
carries the orders on with no manual step. The API shuts down cleanly on SIGTERM too.

The real processes (tests/harness.py) on the session's dev server, with the demo data seeded.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from core.grpc_client import Stubs
from core.messages import (
    OrderItem,
    OrderSnapshot,
    OrderStatus,
    PlaceOrderInput,
    ShippingAddress,
    workflow_id_for,
)
from core.seed import DEMO_PRODUCTS, DEMO_USER_EMAIL, DEMO_USER_ID, DEMO_USER_PASSWORD, seed
from proto.shop.v1 import payment_pb2, payment_pb2_grpc
from tests.api_fixtures import GOOD_CARD, SHIPPING_ADDRESS, bearer, log_in
from tests.harness import RunningStack, running_stack

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
async def processes(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningStack]:
    address = dev_env.client.service_client.config.target_host
    async with running_stack(address, tmp_path_factory.mktemp("graceful")) as stack:
        async with Stubs.open(stack.grpc_target) as stubs:
            await seed(stubs)
        yield stack


async def test_worker_sigterm_finishes_in_flight_work_and_a_new_worker_carries_on(
    dev_env: WorkflowEnvironment, processes: RunningStack
) -> None:
    handles: list[WorkflowHandle[object, OrderSnapshot]] = []
    async with Stubs.open(processes.grpc_target) as stubs:
        card = await stubs.payment.TokenizeCard(
            payment_pb2.TokenizeCardRequest(user_id=DEMO_USER_ID, card_number=GOOD_CARD)
        )
    for _ in range(5):
        order_id = uuid.uuid4().hex
        handles.append(
            await dev_env.client.start_workflow(
                "PlaceOrder",
                PlaceOrderInput(
                    order_id=order_id,
                    user_id=DEMO_USER_ID,
                    items=[OrderItem(product_id=DEMO_PRODUCTS[0].id, quantity=1)],
                    card_token=card.token,
                    shipping_address=ShippingAddress(**SHIPPING_ADDRESS),
                ),
                id=workflow_id_for(order_id),
                task_queue=processes.task_queue,
                result_type=OrderSnapshot,
            )
        )
    # Stop it while the checkouts are under way.
    code = await processes.stop("worker")
    log = processes.log("worker")
    assert code == 0, log[-2000:]
    assert "worker stopped" in log

    # A new worker, nothing else done by hand: every order gets to PAID.
    await processes.start("worker")
    for handle in handles:
        snap: OrderSnapshot | None = None
        for _ in range(200):
            snap = await handle.query("status", result_type=OrderSnapshot)
            if snap.status == OrderStatus.PAID:
                break
            await asyncio.sleep(0.1)
        assert snap is not None and snap.status == OrderStatus.PAID, snap
    # However the stop cut in, each order was charged exactly once.
    async with grpc.aio.insecure_channel(processes.grpc_target) as channel:
        payments = payment_pb2_grpc.PaymentServiceStub(channel)
        for handle in handles:
            order_id = handle.id.removeprefix("order-")
            ledger = await payments.ListLedger(payment_pb2.ListLedgerRequest(order_id=order_id))
            kinds = [payment_pb2.LedgerEntryType.Name(e.type) for e in ledger.entries]
            assert kinds.count("LEDGER_ENTRY_TYPE_CAPTURE") == 1, kinds
    for handle in handles:
        await handle.terminate("test over")


async def test_api_exits_cleanly_on_sigterm(processes: RunningStack) -> None:
    async with httpx.AsyncClient(base_url=processes.api_url, timeout=10) as http:
        assert (await http.get("/products")).status_code == 200
        token = await log_in(http, DEMO_USER_EMAIL, DEMO_USER_PASSWORD)
        assert (await http.get("/users/me", headers=bearer(token))).status_code == 200
    code = await processes.stop("api")
    log = processes.log("api")
    # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM is the
    # conventional status of a clean stop by SIGTERM.
    assert code in (0, -signal.SIGTERM), log[-2000:]
    assert "Application shutdown complete" in log and "Finished server process" in log
