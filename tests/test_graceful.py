"""SIGTERM: the worker stops polling, lets what is in flight finish, and exits 0; a new worker
carries the orders on with no manual step. The API shuts down cleanly on SIGTERM too.

Real processes (`worker.py`, `python -m api`) against the session's dev server and the real
services on port 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from core.db import make_engine
from core.grpc_client import Stubs
from core.messages import OrderItem, OrderSnapshot, OrderStatus, PlaceOrderInput, workflow_id_for
from core.seed import DEMO_PRODUCTS, DEMO_USER_ID, seed
from proto.shop.v1 import payment_pb2, payment_pb2_grpc
from services.server import create_server
from tests.api_fixtures import GOOD_CARD
from tests.harness import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)



@pytest.fixture
async def env(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """Environment for the child processes: the dev server, seeded services on port 0."""
    url = f"sqlite:///{tmp_path}/shop.db"
    engine = make_engine(url)
    server, port = create_server("127.0.0.1:0", engine, fault_rate=0.0)
    await server.start()
    async with Stubs.open(f"127.0.0.1:{port}") as stubs:
        await seed(stubs)
    try:
        yield dict(
            os.environ,
            DATA_DIR=str(tmp_path),
            DATABASE_URL=url,
            TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
            TEMPORAL_TASK_QUEUE=f"graceful-{uuid.uuid4().hex[:12]}",
            GRPC_TARGET=f"127.0.0.1:{port}",
            API_HOST="127.0.0.1",
            API_PORT=str(free_port()),
            LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
    finally:
        await server.stop(grace=1)
        engine.dispose()


async def _spawn(args: list[str], env: dict[str, str], ready: str) -> asyncio.subprocess.Process:
    """Starts a child and waits for `ready` in its log (stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    seen: list[str] = []
    async with asyncio.timeout(30):
        while ready not in "".join(seen):
            line = await proc.stderr.readline()
            if not line:
                raise AssertionError(f"{args} exited before {ready!r}: {''.join(seen)[-2000:]}")
            seen.append(line.decode())
    return proc


async def _stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    """SIGTERM, then the exit code and the rest of the log."""
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        rest = (await proc.stderr.read()).decode()
        code = await proc.wait()
    return code, rest


async def test_worker_sigterm_finishes_in_flight_work_and_a_new_worker_carries_on(
    dev_env: WorkflowEnvironment, env: dict[str, str]
) -> None:
    worker = await _spawn(["worker.py"], env, "worker polling")
    handles: list[WorkflowHandle[object, OrderSnapshot]] = []
    for _ in range(5):
        order_id = uuid.uuid4().hex
        handles.append(
            await dev_env.client.start_workflow(
                "PlaceOrder",
                PlaceOrderInput(
                    order_id=order_id,
                    user_id=DEMO_USER_ID,
                    items=[OrderItem(product_id=DEMO_PRODUCTS[0].id, quantity=1)],
                    card_number=GOOD_CARD,
                ),
                id=workflow_id_for(order_id),
                task_queue=env["TEMPORAL_TASK_QUEUE"],
                result_type=OrderSnapshot,
            )
        )
    # Stop it while the checkouts are under way.
    code, log = await _stop(worker)
    assert code == 0, log[-2000:]
    assert "worker stopped" in log

    # A new worker, nothing else done by hand: every order gets to PAID.
    worker = await _spawn(["worker.py"], env, "worker polling")
    try:
        for handle in handles:
            snap: OrderSnapshot | None = None
            for _ in range(200):
                snap = await handle.query("status", result_type=OrderSnapshot)
                if snap.status == OrderStatus.PAID:
                    break
                await asyncio.sleep(0.1)
            assert snap is not None and snap.status == OrderStatus.PAID, snap
    finally:
        code, log = await _stop(worker)
    assert code == 0, log[-2000:]
    # However the stop cut in, each order was charged exactly once.
    async with grpc.aio.insecure_channel(env["GRPC_TARGET"]) as channel:
        payments = payment_pb2_grpc.PaymentServiceStub(channel)
        for handle in handles:
            order_id = handle.id.removeprefix("order-")
            ledger = await payments.ListLedger(payment_pb2.ListLedgerRequest(order_id=order_id))
            kinds = [payment_pb2.LedgerEntryType.Name(e.type) for e in ledger.entries]
            assert kinds.count("LEDGER_ENTRY_TYPE_CAPTURE") == 1, kinds
    for handle in handles:
        await handle.terminate("test over")


async def test_api_exits_cleanly_on_sigterm(env: dict[str, str]) -> None:
    api = await _spawn(["-m", "api"], env, "Application startup complete")
    url = f"http://127.0.0.1:{env['API_PORT']}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        assert (await http.get("/products")).status_code == 200
    code, log = await _stop(api)
    # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM is the
    # conventional status of a clean stop by SIGTERM.
    assert code in (0, -signal.SIGTERM), log[-2000:]
    assert "Application shutdown complete" in log and "Finished server process" in log
