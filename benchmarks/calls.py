"""`python -m benchmarks.calls`: what one call costs the process that answers it, in CPU.

    python -m benchmarks.calls [--calls N] [--concurrency C] [--database-url URL]

Starts the stack as `make bench` does (a fresh DATA_DIR and shop database, free ports),
places one order and waits until it is PAID, then sends N calls (C at a time) of each kind
and reads the CPU time the answering process used (`/proc/<pid>/stat`) before and after:

  api       GET /orders/{id} as a polling customer sends it (bearer token, aiohttp client),
            and the same without a token (401: FastAPI, the middlewares and the routing
            alone, the floor of any request)
  services  each RPC a checkout makes (GetUser, GetProduct, TokenizeCard, ReserveStock,
            Charge, SendNotification) and the gRPC health check (grpc.aio and the metrics
            interceptor alone, the floor of any call)

`make bench` says how much CPU an order costs each process; this says where, call by call,
so that a change to one handler can be judged on its own (docs/benchmarks.md). The figures
move with the machine's speed by 10 to 20% between runs: compare runs made one after the
other. Prints a table and a last line of JSON, {"calls", "concurrency", "database",
"cpu_ms": {name: ms}, "per_s": {name: calls/s}}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from grpc_health.v1 import health_pb2

from benchmarks.bench import supervised
from benchmarks.clients import GOOD_CARD, SHIPPING_ADDRESS, Headers, http_session, seed_catalogue
from benchmarks.database import backend
from benchmarks.report import cpu_seconds
from core.config import Settings
from core.grpc_client import Stubs
from core.run import api_url, start_stack
from core.runtime import exit_now
from core.supervisor import Supervisor
from proto.shop.v1 import (
    inventory_pb2,
    notification_pb2,
    payment_pb2,
    product_pb2,
    user_pb2,
)

Call = Callable[[int], Awaitable[object]]
PAID_WAIT = 60.0  # seconds for the one order to become PAID


async def measure(pid: int, calls: int, concurrency: int, call: Call) -> tuple[float, float]:
    """(CPU ms of process `pid` per call, calls/s) over `calls` calls, `concurrency` at once;
    call(i) gets each call's own index."""
    per_client = max(calls // concurrency, 1)

    async def client(k: int) -> None:
        for j in range(per_client):
            await call(k * per_client + j)

    before, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    wall, after = time.perf_counter() - started, cpu_seconds(pid)
    if before is None or after is None:
        raise RuntimeError(f"process {pid} is gone")
    done = per_client * concurrency
    return (after - before) * 1000 / done, done / wall


async def paid_order(http: aiohttp.ClientSession, headers: Headers, user: str, product: str) -> str:
    """Places one order and waits until it is PAID: its id."""
    body = {
        "user_id": user,
        "items": [{"product_id": product, "quantity": 1}],
        "payment": {"card_number": GOOD_CARD},
        "shipping_address": SHIPPING_ADDRESS,
    }
    async with http.post("/checkout", json=body, headers=headers) as r:
        if r.status != 202:
            raise RuntimeError(f"POST /checkout answered {r.status}: {await r.text()}")
        order_id: str = (await r.json())["order_id"]
    deadline = time.monotonic() + PAID_WAIT
    while time.monotonic() < deadline:
        async with http.get(f"/orders/{order_id}", headers=headers) as r:
            if r.status == 200 and (await r.json())["status"] == "PAID":
                return order_id
        await asyncio.sleep(0.2)
    raise RuntimeError(f"order {order_id} was not PAID within {PAID_WAIT:.0f} s")


def api_calls(http: aiohttp.ClientSession, headers: Headers, order_id: str) -> dict[str, Call]:
    async def get(path: str, with_token: bool, expected: int) -> None:
        async with http.get(path, headers=headers if with_token else None) as r:
            await r.read()
            if r.status != expected:
                raise RuntimeError(f"GET {path} answered {r.status}, not {expected}")

    return {
        "GET /orders/{id}": lambda i: get(f"/orders/{order_id}", True, 200),
        "GET /orders/{id} without a token (401)": lambda i: get(f"/orders/{order_id}", False, 401),
    }


async def service_calls(stubs: Stubs, user: str, product: str) -> dict[str, Call]:
    tag = uuid.uuid4().hex[:8]
    card = await stubs.payment.TokenizeCard(
        payment_pb2.TokenizeCardRequest(user_id=user, card_number=GOOD_CARD)
    )
    line = inventory_pb2.ReservationLine(product_id=product, quantity=1)
    calls: dict[str, Call] = {
        "GetUser": lambda i: stubs.user.GetUser(user_pb2.GetUserRequest(id=user)),
        "GetProduct": lambda i: stubs.product.GetProduct(product_pb2.GetProductRequest(id=product)),
        "TokenizeCard": lambda i: stubs.payment.TokenizeCard(
            payment_pb2.TokenizeCardRequest(user_id=user, card_number=GOOD_CARD)
        ),
        "ReserveStock": lambda i: stubs.inventory.ReserveStock(
            inventory_pb2.ReserveStockRequest(order_id=f"calls-{tag}-{i}", lines=[line])
        ),
        "Charge": lambda i: stubs.payment.Charge(
            payment_pb2.ChargeRequest(
                order_id=f"calls-{tag}-{i}",
                amount_cents=1000,
                idempotency_key=f"calls-{tag}-{i}:charge",
                user_id=user,
                card_token=card.token,
            )
        ),
        "SendNotification": lambda i: stubs.notification.SendNotification(
            notification_pb2.SendNotificationRequest(
                user_id=user,
                order_id=f"calls-{tag}-{i}",
                kind="ORDER_CONFIRMED",
                message="benchmark",
                idempotency_key=f"calls-{tag}-{i}:confirmed",
            )
        ),
    }
    health = health_pb2.HealthCheckRequest(service="")
    calls["Health.Check (grpc.aio floor)"] = lambda i: stubs.health.Check(health)
    return calls


async def run_calls(
    sup: Supervisor, settings: Settings, args: argparse.Namespace
) -> dict[str, Any]:
    await start_stack(sup, settings, dev_server=True)
    pids = {name: p.pid for name, p in sup.children.items()}
    # Units enough for every ReserveStock call, and the checkout's.
    stock = args.calls + 10
    cpu_ms: dict[str, float] = {}
    per_s: dict[str, float] = {}
    rows: list[str] = []

    async def record(process: str, calls: dict[str, Call]) -> None:
        for name, call in calls.items():
            await measure(pids[process], min(args.calls, 50), args.concurrency, call)  # warm
            ms, rate = await measure(pids[process], args.calls, args.concurrency, call)
            cpu_ms[name], per_s[name] = round(ms, 2), round(rate, 1)
            rows.append(f"  {process:9s} {name:40s} {ms:8.2f} {rate:9.0f}")

    async with http_session(api_url(settings)) as http:
        user, product, headers = await seed_catalogue(http, settings, stock + args.calls)
        order_id = await paid_order(http, headers, user, product)
        await record("api", api_calls(http, headers, order_id))
    async with Stubs.open(settings.grpc_target) as stubs:
        await record("services", await service_calls(stubs, user, product))
    print(
        f"\n{args.calls} calls of each, {args.concurrency} at a time; database "
        f"{backend(settings.database_url)}\n  {'process':9s} {'call':40s} {'CPU ms':>8s} "
        f"{'calls/s':>9s}\n" + "\n".join(rows) + "\n",
        flush=True,
    )
    return {
        "calls": args.calls,
        "concurrency": args.concurrency,
        "database": backend(settings.database_url),
        "cpu_ms": cpu_ms,
        "per_s": per_s,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.calls",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--calls", "-n", type=int, default=2000, help="calls of each kind (2000)")
    parser.add_argument("--concurrency", "-c", type=int, default=10, help="at a time (10)")
    parser.add_argument("--database-url", help="a PostgreSQL server, as for make bench")
    parser.add_argument(
        "--data-dir", type=Path, help="DATA_DIR to use (default: a fresh temp dir, removed after)"
    )
    parser.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of the children")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.concurrency < 1:
        parser.error("--calls and --concurrency must be >= 1")
    return args


async def main_async(args: argparse.Namespace) -> int:
    async def body(sup: Supervisor, settings: Settings) -> dict[str, Any]:
        return await run_calls(sup, settings, args)

    result = await supervised(args.database_url, args.log_level, args.data_dir, body)
    if result is None:
        return 1
    print(json.dumps(result), flush=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    exit_now(asyncio.run(main_async(parse_args(argv))))


if __name__ == "__main__":
    main()
