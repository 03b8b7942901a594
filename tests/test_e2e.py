"""End to end: the real processes (`python -m services`, `worker.py`, `python -m api`)
against the session's Temporal dev server, driven through REST and the `temporal` CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import binary
from tests.harness import free_port

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
PAYS = "4242424242424242"
DECLINED = "4000000000000002"
FLAKY = "4000000000000119"
FINAL = {"DELIVERED", "FAILED", "CANCELLED"}



class Stack:
    def __init__(self, env: dict[str, str], api: str, temporal: str) -> None:
        self.env = env
        self.api = api
        self.temporal = temporal
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def start(self, name: str, *args: str) -> None:
        log = Path(self.env["DATA_DIR"]) / f"{name}.log"
        self.logs[name] = log
        self.procs[name] = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def dump_logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.read_text()[-3000:]}" for n, p in self.logs.items())


@pytest.fixture(scope="module")
def stack(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("e2e")
    grpc_port, api_port = free_port(), free_port()
    temporal = dev_env.client.service_client.config.target_host
    env = {
        **os.environ,
        "DATA_DIR": str(data),
        "DATABASE_URL": f"sqlite:///{data}/shop.db",
        "TEMPORAL_ADDRESS": temporal,
        "TEMPORAL_TASK_QUEUE": f"e2e-{uuid.uuid4().hex[:8]}",
        "GRPC_PORT": str(grpc_port),
        "GRPC_TARGET": f"127.0.0.1:{grpc_port}",
        "API_PORT": str(api_port),
        "API_HOST": "127.0.0.1",
    }
    s = Stack(env, f"http://127.0.0.1:{api_port}", temporal)
    s.start("services", "-m", "services")
    s.start("worker", "worker.py")
    s.start("api", "-m", "api")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{s.api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            dead = [n for n, p in s.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"stack did not come up (dead: {dead})\n{s.dump_logs()}")
            time.sleep(0.3)
        yield s
    finally:
        s.stop()


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as client:
        yield client


async def make_user(http: httpx.AsyncClient) -> str:
    r = await http.post("/users", json={"email": f"{uuid.uuid4().hex}@example.com", "name": "E2E"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def make_product(http: httpx.AsyncClient, stock: int, price: int = 1200) -> str:
    body = {
        "sku": f"SKU-{uuid.uuid4().hex[:10]}",
        "name": "Widget",
        "description": "e2e",
        "price_cents": price,
        "stock": stock,
        "category": "e2e",
    }
    r = await http.post("/products", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def checkout(
    http: httpx.AsyncClient,
    user: str,
    product: str,
    qty: int = 1,
    card: str = PAYS,
    key: str | None = None,
) -> str:
    headers = {"Idempotency-Key": key} if key else {}
    body = {
        "user_id": user,
        "items": [{"product_id": product, "quantity": qty}],
        "payment": {"card_number": card},
    }
    r = await http.post("/checkout", json=body, headers=headers)
    assert r.status_code == 202, r.text
    return str(r.json()["order_id"])


async def settle(
    http: httpx.AsyncClient, order_id: str, until: set[str] | None = None, timeout: float = 60
) -> dict[str, Any]:
    """Polls GET /orders/{id} until the order is PAID or final."""
    until = until or {"PAID", *FINAL}
    deadline = time.monotonic() + timeout
    while True:
        r = await http.get(f"/orders/{order_id}")
        if r.status_code == 200 and r.json()["status"] in until:
            return dict(r.json())
        if time.monotonic() > deadline:
            raise AssertionError(f"order {order_id} stuck: {r.status_code} {r.text}")
        await asyncio.sleep(0.2)


async def stock_of(http: httpx.AsyncClient, product: str) -> int:
    r = await http.get(f"/products/{product}")
    assert r.status_code == 200
    return int(r.json()["stock"])


async def test_checkout_reaches_paid(http: httpx.AsyncClient) -> None:
    user, product = await make_user(http), await make_product(http, stock=3, price=1999)
    started = time.monotonic()
    order = await settle(http, await checkout(http, user, product, qty=2))
    elapsed = time.monotonic() - started
    print(f"\ncheckout POST -> PAID: {elapsed * 1000:.0f} ms")
    assert order["status"] == "PAID"
    assert order["payment_status"] == "CAPTURED"
    assert order["total_cents"] == 2 * 1999
    assert [h["status"] for h in order["history"]] == ["PENDING", "RESERVED", "PAID"]
    assert await stock_of(http, product) == 1
    r = await http.get(f"/users/{user}/notifications")
    assert r.status_code == 200
    for _ in range(50):
        kinds = [n["kind"] for n in (await http.get(f"/users/{user}/notifications")).json()]
        if kinds:
            break
        await asyncio.sleep(0.1)
    assert kinds == ["ORDER_CONFIRMED"]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("declined", "PAYMENT_DECLINED"),
        ("no_stock", "OUT_OF_STOCK"),
        ("no_user", "USER_NOT_FOUND"),
        ("no_product", "PRODUCT_NOT_FOUND"),
    ],
)
async def test_business_failures_end_failed_and_hold_nothing(
    http: httpx.AsyncClient, case: str, reason: str
) -> None:
    user, product = await make_user(http), await make_product(http, stock=2)
    card, qty = PAYS, 1
    if case == "declined":
        card = DECLINED
    elif case == "no_stock":
        qty = 3
    elif case == "no_user":
        user = "nobody-" + uuid.uuid4().hex[:8]
    elif case == "no_product":
        product = "missing-" + uuid.uuid4().hex[:8]
    order = await settle(http, await checkout(http, user, product, qty=qty, card=card))
    assert order["status"] == "FAILED"
    assert order["failure_reason"] == reason
    if case != "no_product":
        assert await stock_of(http, product) == 2
    ledger = (await http.get(f"/orders/{order['order_id']}/payments")).json()
    assert [e["type"] for e in ledger] == (["DECLINE"] if case == "declined" else [])


async def test_processing_error_card_is_retried_then_pays(http: httpx.AsyncClient) -> None:
    user, product = await make_user(http), await make_product(http, stock=1)
    order = await settle(http, await checkout(http, user, product, card=FLAKY))
    assert order["status"] == "PAID"
    ledger = (await http.get(f"/orders/{order['order_id']}/payments")).json()
    assert [e["type"] for e in ledger] == ["CAPTURE"]


async def test_idempotency_key_starts_one_order(http: httpx.AsyncClient) -> None:
    user, product = await make_user(http), await make_product(http, stock=5)
    key = uuid.uuid4().hex
    first = await checkout(http, user, product, key=key)
    second = await checkout(http, user, product, key=key)
    assert first == second
    await settle(http, first)
    assert await stock_of(http, product) == 4


async def test_twenty_concurrent_orders_for_five_units_sell_exactly_five(
    http: httpx.AsyncClient,
) -> None:
    user, product = await make_user(http), await make_product(http, stock=5)
    ids = await asyncio.gather(*(checkout(http, user, product) for _ in range(20)))
    orders = await asyncio.gather(*(settle(http, i, timeout=120) for i in ids))
    statuses = sorted(o["status"] for o in orders)
    assert statuses.count("PAID") == 5
    assert statuses.count("FAILED") == 15
    assert {o["failure_reason"] for o in orders if o["status"] == "FAILED"} == {"OUT_OF_STOCK"}
    assert await stock_of(http, product) == 0


async def test_cli_signal_cancels_like_the_rest_route(
    http: httpx.AsyncClient, stack: Stack
) -> None:
    user, product = await make_user(http), await make_product(http, stock=1)
    order_id = await checkout(http, user, product)
    await settle(http, order_id)
    cli = [
        binary("temporal"),
        "workflow",
        "signal",
        "--address",
        stack.temporal,
        "--workflow-id",
        f"order-{order_id}",
        "--name",
        "cancel",
        "--input",
        '{"reason":"x"}',
    ]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    order = await settle(http, order_id, until={"CANCELLED"})
    assert (order["failure_reason"], order["cancel_reason"]) == ("CANCELLED_BY_CUSTOMER", "x")
    assert order["payment_status"] == "REFUNDED"
    assert await stock_of(http, product) == 1
    ledger = (await http.get(f"/orders/{order_id}/payments")).json()
    assert sorted(e["type"] for e in ledger) == ["CAPTURE", "REFUND"]
    assert ledger[0]["amount_cents"] == ledger[1]["amount_cents"]
