"""The benchmark's two sides and how their load arrives.

saga  checkouts through POST /checkout, each client then following its order until PAID:
      through GET /orders/{id}/events (SSE), or by polling GET /orders/{id}.
noop  BenchNoop runs (benchmarks/noop.py) started through a Temporal client, each waited on
      until its last step ran (the run then stays open, as a PAID order does).

The load is closed-loop (C clients, each starting its next order when the last is done) or
open-loop (`rate`: one arrival every 1/rate seconds, however many are still in flight,
as customers arrive: latencies then show queueing that closed-loop clients hide).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

from benchmarks.noop import (
    CUSTOMER_ID,
    ORDER_STATUS,
    BenchNoop,
    NoopSteps,
)
from benchmarks.report import Result
from core.config import Settings
from core.secrets import resolved_admin_password
from worker import WORKER_OPTIONS, WORKFLOW_RUNNER, compile_sandboxed_modules

GOOD_CARD = "4242424242424242"
SHIPPING_ADDRESS = {
    "name": "Bench",
    "line1": "1 Main St",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}
ORDER_TIMEOUT = 120.0  # one order from POST to PAID, or one BenchNoop run
Headers = dict[str, str]


def http_session(base_url: str) -> aiohttp.ClientSession:
    """The customers' HTTP client. aiohttp, not httpx: the clients share the two cores with
    everything they measure, and httpx spent about 5 ms of CPU per request against aiohttp's
    0.35 ms (32 clients polling one route, docs/benchmarks.md): with polling clients that
    was a third of a core taken from the saga's side alone."""
    return aiohttp.ClientSession(
        base_url,
        # Open-loop arrivals are not bounded by clients: neither are the connections. An
        # idle connection is dropped well before uvicorn's keep-alive timeout (5 s) closes
        # it: aiohttp's own default (15 s) reused connections the server was closing after a
        # no-op round (ServerDisconnectedError in a PostgreSQL run's poll mode).
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=2.0),
        timeout=aiohttp.ClientTimeout(total=ORDER_TIMEOUT),
    )


One = Callable[[int], Coroutine[Any, Any, None]]
Done = Callable[[int], None]  # called with the count of orders done, after each


def ignore_done(count: int) -> None:
    pass


async def _bounded(n: int, concurrency: int, one: One) -> None:
    """Closed loop: runs one(0..n-1), `concurrency` at a time; the first error stops all."""
    sem = asyncio.Semaphore(concurrency)

    async def run(i: int) -> None:
        async with sem:
            await one(i)

    async with asyncio.TaskGroup() as tg:
        for i in range(n):
            tg.create_task(run(i))


async def _paced(n: int, rate: float, one: One) -> None:
    """Open loop: starts one(i) at i/rate seconds from now, whatever is still running."""
    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for i in range(n):
            if (delay := start + i / rate - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            tg.create_task(one(i))


def drive(n: int, concurrency: int, rate: float | None, one: One) -> Awaitable[None]:
    return _bounded(n, concurrency, one) if rate is None else _paced(n, rate, one)


# --- the saga through REST ----------------------------------------------------------------


async def _json(r: aiohttp.ClientResponse, expected: int | None, what: str) -> Any:
    """The JSON body of an answer with the `expected` status (any 2xx when None)."""
    if r.status != expected and not (expected is None and 200 <= r.status < 300):
        raise RuntimeError(f"{what} answered {r.status}: {(await r.text())[:300]}")
    return await r.json()


async def log_in(http: aiohttp.ClientSession, email: str, password: str) -> Headers:
    """POST /auth/token: the headers of the user's requests."""
    form = {"username": email, "password": password}
    async with http.post("/auth/token", data=form) as r:
        token = (await _json(r, 200, "POST /auth/token"))["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def seed_catalogue(
    http: aiohttp.ClientSession, settings: Settings, stock: int
) -> tuple[str, str, Headers]:
    """One customer and one product with `stock` units, through the API: (user_id,
    product_id, the customer's headers). The admin creates the product."""
    tag = uuid.uuid4().hex[:10]
    email, password = f"bench-{tag}@example.com", uuid.uuid4().hex
    user = {"email": email, "name": "Bench", "password": password}
    async with http.post("/users", json=user) as r:
        user_id: str = (await _json(r, None, "POST /users"))["id"]
    admin = await log_in(http, settings.admin_email, resolved_admin_password(settings))
    product = {
        "sku": f"BENCH-{tag}",
        "name": "Benchmark beans",
        "description": "One product for every benchmark order.",
        "price_cents": 1000,
        "stock": stock,
        "category": "bench",
    }
    async with http.post("/products", json=product, headers=admin) as r:
        product_id: str = (await _json(r, None, "POST /products"))["id"]
    return user_id, product_id, await log_in(http, email, password)


def _paid_at(order: dict[str, Any]) -> float | None:
    for change in order.get("history", []):
        if change["status"] == "PAID":
            return datetime.fromisoformat(change["at"].replace("Z", "+00:00")).timestamp()
    return None


def _settled(order: dict[str, Any]) -> float | None:
    """The time the order was PAID, None while it is not yet; an error if it never will be."""
    at = _paid_at(order)
    if at is None and order["status"] in ("FAILED", "CANCELLED"):
        raise RuntimeError(f"order {order['order_id']} ended {order['status']}: {order}")
    return at


async def _follow_sse(
    http: aiohttp.ClientSession, headers: Headers, order_id: str, _: float | None
) -> float:
    """Follows GET /orders/{id}/events, as a checkout page would, until the order is PAID."""
    async with http.get(f"/orders/{order_id}/events", headers=headers) as r:
        if r.status != 200:
            raise RuntimeError(f"GET /orders/{order_id}/events answered {r.status}")
        async for raw in r.content:
            line = raw.decode()
            if line.startswith("data:"):
                at = _settled(json.loads(line.removeprefix("data:")))
                if at is not None:
                    return at
    raise RuntimeError(f"the event stream of order {order_id} ended before PAID")


async def _follow_poll(
    http: aiohttp.ClientSession, headers: Headers, order_id: str, interval: float | None
) -> float:
    """Polls GET /orders/{id} every `interval` seconds until the order is PAID (or FAILED)."""
    assert interval is not None
    while True:
        await asyncio.sleep(interval)
        async with http.get(f"/orders/{order_id}", headers=headers) as g:
            if g.status == 200 and (at := _settled(await g.json())) is not None:
                return at


async def measure_saga(
    http: aiohttp.ClientSession,
    headers: Headers,
    user_id: str,
    product_id: str,
    orders: int,
    concurrency: int,
    poll_interval: float | None = None,
    rate: float | None = None,
    on_done: Done = ignore_done,
) -> Result:
    """N checkouts, each followed until PAID: through the SSE stream, or by polling
    GET /orders/{id} every `poll_interval` seconds; from C clients, or arriving at `rate`/s.

    The PAID time of an order is the one its history records (the workflow's clock when it
    marked the order PAID), so the poll interval only delays noticing it, not the figure.
    """
    body = {
        "user_id": user_id,
        "items": [{"product_id": product_id, "quantity": 1}],
        "payment": {"card_number": GOOD_CARD},
        "shipping_address": SHIPPING_ADDRESS,
    }
    result = Result(orders, 0.0, 0.0)
    posted: list[float] = []
    follow = _follow_sse if poll_interval is None else _follow_poll

    async def one(i: int) -> None:
        sent = time.time()
        t0 = time.perf_counter()
        async with http.post("/checkout", json=body, headers=headers) as r:
            order_id = (await _json(r, 202, "POST /checkout"))["order_id"]
        result.post_ms.append((time.perf_counter() - t0) * 1000)
        at = await asyncio.wait_for(follow(http, headers, order_id, poll_interval), ORDER_TIMEOUT)
        result.seen_ms.append((time.time() - at) * 1000)
        posted.append(sent)
        result.done.append(at)
        result.latencies_ms.append((at - sent) * 1000)
        on_done(len(result.done))

    await drive(orders, concurrency, rate, one)
    result.start, result.end = min(posted), max(result.done)
    return result


# --- the engine's limit: BenchNoop --------------------------------------------------------


def build_noop_worker(client: Client, task_queue: str, steps: NoopSteps) -> Worker:
    """A worker configured as worker.build_worker configures the real one, for BenchNoop."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[BenchNoop],
        activities=[steps.step],
        workflow_runner=WORKFLOW_RUNNER,
        **WORKER_OPTIONS,
    )


async def measure_noop(
    client: Client,
    orders: int,
    concurrency: int,
    task_queue: str | None = None,
    rate: float | None = None,
    on_done: Done = ignore_done,
) -> Result:
    """N BenchNoop runs, each waited on until its last step ran: from C concurrent starters,
    or arriving at `rate`/s. The runs stay open afterwards (on a 7-day timer), as PAID orders
    do; the benchmark's dev server goes with its DATA_DIR.

    `client` must encrypt as the real worker does (worker.connect's client does).
    """
    task_queue = task_queue or f"bench-noop-{uuid.uuid4().hex[:12]}"
    compile_sandboxed_modules(Path(__file__).resolve().parent)  # as worker.py does
    run_id = uuid.uuid4().hex[:12]
    result = Result(orders, 0.0, 0.0)
    starts: list[float] = []
    loop = asyncio.get_running_loop()
    last_step: dict[str, asyncio.Future[float]] = {}

    def on_last(workflow_id: str) -> None:
        waiter = last_step.get(workflow_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(time.time())

    async def one(i: int) -> None:
        workflow_id = f"bench-noop-{run_id}-{i}"
        last_step[workflow_id] = waiter = loop.create_future()
        start = time.time()
        t0 = time.perf_counter()
        await client.start_workflow(
            BenchNoop.run,
            f"noop-{i}",
            id=workflow_id,
            task_queue=task_queue,
            # As POST /checkout starts PlaceOrder: the status and the customer, searchable.
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(ORDER_STATUS, "PENDING"),
                    SearchAttributePair(CUSTOMER_ID, "bench-noop"),
                ]
            ),
        )
        result.post_ms.append((time.perf_counter() - t0) * 1000)
        try:
            end = await asyncio.wait_for(waiter, ORDER_TIMEOUT)
        finally:
            del last_step[workflow_id]
        starts.append(start)
        result.done.append(end)
        result.latencies_ms.append((end - start) * 1000)
        on_done(len(result.done))

    async with build_noop_worker(client, task_queue, NoopSteps(on_last)):
        await drive(orders, concurrency, rate, one)
    result.start, result.end = min(starts), max(result.done)
    return result
