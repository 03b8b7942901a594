# Over 400 lines: the two sides, their clients and the report are one measurement.
"""`make bench`: checkout throughput through the REST API, next to the engine's limit.

    python -m benchmarks.bench [--orders N] [--concurrency C] [--data-dir DIR]

Starts the stack as `make run` does (core.run.start_stack): a Temporal
dev server persisted to SQLite in a fresh DATA_DIR, the gRPC services, the worker and the
API, all on free ports. Seeds one user and one product, then measures on the same server:

  saga  N checkouts through POST /checkout from C concurrent clients, each then following
        GET /orders/{id}/events (SSE; or polling GET /orders/{id} with --poll-interval)
        until PAID: orders/s from the first POST to the last PAID, the
        POST response time and POST->PAID (to the PAID entry of the order's history).
  noop  N runs of BenchNoop (benchmarks/noop.py: PlaceOrder's happy path with no-op
        activities) started by C concurrent Temporal clients, each waiting for the result,
        on a worker of the same configuration in this process: orders/s and start->complete.

Prints a table, the mean time of each step (workflow task, activity) from a sample of
each side's histories (benchmarks/steps.py), the peak memory (VmHWM) of the dev server,
worker, services and API processes, and a last line of JSON. Stops everything it started,
also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from benchmarks.noop import ACTIVITIES_PER_ORDER, BenchNoop, noop_step
from benchmarks.otlp_sink import OtlpSink
from benchmarks.steps import sample_steps, steps_table
from core.config import Settings
from core.run import (
    DEV_SERVER_IP,
    StartupError,
    api_url,
    child_env,
    free_port,
    start_stack,
)
from core.runtime import exit_now, freeze_startup_objects
from core.secrets import resolved_admin_password
from core.supervisor import Interrupted, Supervisor
from worker import WORKER_OPTIONS, WORKFLOW_RUNNER, compile_sandboxed_modules, connect

GOOD_CARD = "4242424242424242"
SHIPPING_ADDRESS = {
    "name": "Bench",
    "line1": "1 Main St",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}
ORDER_TIMEOUT = 120.0  # one order from POST to PAID, or one BenchNoop run
MEASURED = ("temporal", "worker", "services", "api")


def say(message: str) -> None:
    print(f"{'bench':>8} | {message}", flush=True)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]


@dataclass
class Result:
    """One measured run: `count` orders between `start` and `end` (epoch seconds)."""

    count: int
    start: float
    end: float
    latencies_ms: list[float] = field(default_factory=list)  # to PAID / to completion
    post_ms: list[float] = field(default_factory=list)  # POST /checkout; noop: start RPC
    seen_ms: list[float] = field(default_factory=list)  # saga only: PAID -> client knows
    rate: float | None = None  # set on a combination of rounds: the median round's rate

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-9)

    @property
    def per_s(self) -> float:
        return self.rate if self.rate is not None else self.count / self.seconds

    def p(self, q: float, values: list[float] | None = None) -> float:
        return percentile(self.latencies_ms if values is None else values, q)


def combine(rounds: list[Result]) -> Result:
    """Rounds pooled: every latency, and the median of the rounds' rates."""
    return Result(
        count=sum(r.count for r in rounds),
        start=min(r.start for r in rounds),
        end=max(r.end for r in rounds),
        latencies_ms=[v for r in rounds for v in r.latencies_ms],
        post_ms=[v for r in rounds for v in r.post_ms],
        seen_ms=[v for r in rounds for v in r.seen_ms],
        rate=statistics.median(r.per_s for r in rounds),
    )


async def _bounded(n: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> None:
    """Runs one(0..n-1) with at most `concurrency` at a time; the first error stops all."""
    sem = asyncio.Semaphore(concurrency)

    async def run(i: int) -> None:
        async with sem:
            await one(i)

    async with asyncio.TaskGroup() as tg:
        for i in range(n):
            tg.create_task(run(i))


# --- (a) the saga through REST ------------------------------------------------------------


async def log_in(http: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    """POST /auth/token: the headers of the user's requests."""
    r = await http.post("/auth/token", data={"username": email, "password": password})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def seed_catalogue(
    http: httpx.AsyncClient, settings: Settings, stock: int
) -> tuple[str, str]:
    """One customer and one product with `stock` units, through the API: (user_id,
    product_id). The admin creates the product; `http` then sends the customer's token."""
    tag = uuid.uuid4().hex[:10]
    email, password = f"bench-{tag}@example.com", uuid.uuid4().hex
    r = await http.post("/users", json={"email": email, "name": "Bench", "password": password})
    r.raise_for_status()
    user_id: str = r.json()["id"]
    admin = await log_in(http, settings.admin_email, resolved_admin_password(settings))
    product = {
        "sku": f"BENCH-{tag}",
        "name": "Benchmark beans",
        "description": "One product for every benchmark order.",
        "price_cents": 1000,
        "stock": stock,
        "category": "bench",
    }
    r = await http.post("/products", json=product, headers=admin)
    r.raise_for_status()
    product_id: str = r.json()["id"]
    http.headers.update(await log_in(http, email, password))
    return user_id, product_id


def _settled(order: dict[str, Any]) -> float | None:
    """The time the order was PAID, None while it is not yet; an error if it never will be."""
    at = _paid_at(order)
    if at is None and order["status"] in ("FAILED", "CANCELLED"):
        raise RuntimeError(f"order {order['order_id']} ended {order['status']}: {order}")
    return at


async def _follow_sse(http: httpx.AsyncClient, order_id: str, _: float | None) -> float:
    """Follows GET /orders/{id}/events, as a checkout page would, until the order is PAID."""
    async with http.stream("GET", f"/orders/{order_id}/events") as r:
        if r.status_code != 200:
            raise RuntimeError(f"GET /orders/{order_id}/events answered {r.status_code}")
        async for line in r.aiter_lines():
            if line.startswith("data:"):
                at = _settled(json.loads(line.removeprefix("data:")))
                if at is not None:
                    return at
    raise RuntimeError(f"the event stream of order {order_id} ended before PAID")


async def _follow_poll(http: httpx.AsyncClient, order_id: str, interval: float | None) -> float:
    """Polls GET /orders/{id} every `interval` seconds until the order is PAID."""
    assert interval is not None
    while True:
        await asyncio.sleep(interval)
        g = await http.get(f"/orders/{order_id}")
        if g.status_code == 200 and (at := _settled(g.json())) is not None:
            return at


def _paid_at(order: dict[str, Any]) -> float | None:
    for change in order.get("history", []):
        if change["status"] == "PAID":
            return datetime.fromisoformat(change["at"].replace("Z", "+00:00")).timestamp()
    return None


async def measure_saga(
    http: httpx.AsyncClient,
    user_id: str,
    product_id: str,
    orders: int,
    concurrency: int,
    poll_interval: float | None = None,
) -> Result:
    """N checkouts from C concurrent clients, each following its order until PAID: through
    the SSE stream, or by polling GET /orders/{id} every `poll_interval` seconds.

    The PAID time of an order is the one its history records (the workflow's clock when it
    marked the order PAID), so the poll interval only delays noticing it, not the figure.
    """
    body = {
        "user_id": user_id,
        "items": [{"product_id": product_id, "quantity": 1}],
        "payment": {"card_number": GOOD_CARD},
        "shipping_address": SHIPPING_ADDRESS,
    }
    posted: list[float] = []
    paid: list[float] = []
    post_ms: list[float] = []
    to_paid_ms: list[float] = []
    seen_ms: list[float] = []

    async def one(i: int) -> None:
        sent = time.time()
        t0 = time.perf_counter()
        r = await http.post("/checkout", json=body)
        post_ms.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 202:
            raise RuntimeError(f"POST /checkout answered {r.status_code}: {r.text[:300]}")
        order_id = r.json()["order_id"]
        follow = _follow_sse if poll_interval is None else _follow_poll
        at = await asyncio.wait_for(follow(http, order_id, poll_interval), ORDER_TIMEOUT)
        seen_ms.append((time.time() - at) * 1000)
        posted.append(sent)
        paid.append(at)
        to_paid_ms.append((at - sent) * 1000)

    await _bounded(orders, concurrency, one)
    return Result(orders, min(posted), max(paid), to_paid_ms, post_ms, seen_ms)


# --- (b) the engine's limit: BenchNoop ----------------------------------------------------


def build_noop_worker(client: Client, task_queue: str) -> Worker:
    """A worker configured as worker.build_worker configures the real one, for BenchNoop."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[BenchNoop],
        activities=[noop_step],
        workflow_runner=WORKFLOW_RUNNER,
        **WORKER_OPTIONS,
    )


async def measure_noop(
    client: Client, orders: int, concurrency: int, task_queue: str | None = None
) -> Result:
    """N BenchNoop runs from C concurrent starters, each waiting for its result.

    `client` must encrypt as the real worker does (worker.connect's client does).
    """
    task_queue = task_queue or f"bench-noop-{uuid.uuid4().hex[:12]}"
    compile_sandboxed_modules(Path(__file__).resolve().parent)  # as worker.py does
    run_id = uuid.uuid4().hex[:12]
    starts: list[float] = []
    ends: list[float] = []
    latencies: list[float] = []
    start_ms: list[float] = []

    async def one(i: int) -> None:
        start = time.time()
        t0 = time.perf_counter()
        handle = await client.start_workflow(
            BenchNoop.run,
            f"noop-{i}",
            id=f"bench-noop-{run_id}-{i}",
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=ORDER_TIMEOUT),
        )
        start_ms.append((time.perf_counter() - t0) * 1000)
        done = await handle.result()
        end = time.time()
        if done != ACTIVITIES_PER_ORDER:
            raise RuntimeError(f"BenchNoop ran {done} activities, not {ACTIVITIES_PER_ORDER}")
        starts.append(start)
        ends.append(end)
        latencies.append((end - start) * 1000)

    async with build_noop_worker(client, task_queue):
        await _bounded(orders, concurrency, one)
    return Result(orders, min(starts), max(ends), latencies, post_ms=start_ms)


# --- report -------------------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a live process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds per process over one phase: where the time of a run went."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before = self._now()

    def _now(self) -> dict[str, float | None]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        after = self._now()
        return {
            name: round(end - start, 1)
            for name, end in after.items()
            if end is not None and (start := self.before[name]) is not None
        }


def summary(
    orders: int,
    concurrency: int,
    saga: Result,
    noop: Result,
    rss: dict[str, float | None],
    cpu: dict[str, dict[str, float]] | None = None,
    round_ratios: list[float] | None = None,
) -> dict[str, Any]:
    ratios = round_ratios or [saga.per_s / noop.per_s]
    return {
        "orders": orders,
        "concurrency": concurrency,
        "rounds": len(ratios),
        "saga_orders_per_s": round(saga.per_s, 2),
        "noop_orders_per_s": round(noop.per_s, 2),
        "ratio": round(statistics.median(ratios), 3),
        "round_ratios": [round(r, 3) for r in ratios],
        "post_p50_ms": round(saga.p(50, saga.post_ms), 1),
        "post_p99_ms": round(saga.p(99, saga.post_ms), 1),
        "paid_p50_ms": round(saga.p(50), 1),
        "paid_p99_ms": round(saga.p(99), 1),
        "seen_p50_ms": round(saga.p(50, saga.seen_ms), 1),
        "seen_p99_ms": round(saga.p(99, saga.seen_ms), 1),
        "noop_p50_ms": round(noop.p(50), 1),
        "noop_p99_ms": round(noop.p(99), 1),
        "noop_start_p50_ms": round(noop.p(50, noop.post_ms), 1),
        "noop_start_p99_ms": round(noop.p(99, noop.post_ms), 1),
        "rss_mb": rss,
        "cpu_s": cpu or {},
    }


def table(saga: Result, noop: Result, ratio: float | None = None) -> str:
    rows = [
        ("PlaceOrder via REST, POST->PAID", f"{saga.per_s:.1f}", saga.p(50), saga.p(99)),
        ("  POST /checkout response", "", saga.p(50, saga.post_ms), saga.p(99, saga.post_ms)),
        ("  PAID -> client told (SSE)", "", saga.p(50, saga.seen_ms), saga.p(99, saga.seen_ms)),
        ("BenchNoop via client, start->done", f"{noop.per_s:.1f}", noop.p(50), noop.p(99)),
        ("  start_workflow response", "", noop.p(50, noop.post_ms), noop.p(99, noop.post_ms)),
    ]
    lines = [f"{'':36}{'orders/s':>10}{'p50 ms':>10}{'p99 ms':>10}"]
    lines += [f"{name:36}{rate:>10}{p50:>10.1f}{p99:>10.1f}" for name, rate, p50, p99 in rows]
    ratio = saga.per_s / noop.per_s if ratio is None else ratio
    lines.append(f"{'ratio saga/noop (median of rounds)':36}{ratio:>10.2f}")
    return "\n".join(lines)


# --- the run ------------------------------------------------------------------------------


async def bench(sup: Supervisor, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    await start_stack(sup, settings, dev_server=True)
    say(f"stack ready in {time.monotonic() - started:.1f}s")
    limits = httpx.Limits(max_connections=args.concurrency + 5)
    async with httpx.AsyncClient(base_url=api_url(settings), timeout=30, limits=limits) as http:
        stock = args.rounds * args.orders + args.warmup + 10
        user_id, product_id = await seed_catalogue(http, settings, stock)
        say(f"seeded user {user_id} and product {product_id}")
        if args.warmup:
            await measure_saga(http, user_id, product_id, args.warmup, args.concurrency)
        client = await connect(settings)
        task_queue = f"bench-noop-{uuid.uuid4().hex[:12]}"
        if args.warmup:
            await measure_noop(client, args.warmup, args.concurrency, task_queue)
        # The no-op worker runs here: set up like worker.py's process, GC included.
        freeze_startup_objects()
        pids = {name: proc.pid for name, proc in sup.children.items()} | {"bench": os.getpid()}
        # Rounds alternate saga and noop, so both see the same machine: on a shared VM the
        # speed drifts by more than the gap measured. The ratio is the median of the rounds'.
        sagas: list[Result] = []
        noops: list[Result] = []
        cpu: dict[str, dict[str, float]] = {"saga": {}, "noop": {}}
        for n in range(1, args.rounds + 1):
            say(f"round {n}/{args.rounds}, saga: {args.orders} checkouts, C={args.concurrency}")
            meter = CpuMeter(pids)
            sagas.append(
                await measure_saga(
                    http, user_id, product_id, args.orders, args.concurrency, args.poll_interval
                )
            )
            _add(cpu["saga"], meter.stop())
            say(f"round {n}/{args.rounds}, noop: {args.orders} BenchNoop runs")
            meter = CpuMeter(pids)
            noops.append(await measure_noop(client, args.orders, args.concurrency, task_queue))
            _add(cpu["noop"], meter.stop())
            say(f"round {n}: saga {sagas[-1].per_s:.1f}/s, noop {noops[-1].per_s:.1f}/s")
    ratios = [a.per_s / b.per_s for a, b in zip(sagas, noops, strict=True)]
    saga, noop = combine(sagas), combine(noops)
    rss = {name: peak_rss_mb(pids[name]) for name in MEASURED}
    steps = {
        "saga": (await sample_steps(client, "WorkflowType='PlaceOrder'")).means(),
        "noop": (await sample_steps(client, "WorkflowType='BenchNoop'")).means(),
    }
    print(
        f"\n{table(saga, noop, statistics.median(ratios))}\n"
        f"ratio per round: {', '.join(f'{r:.2f}' for r in ratios)}\n\n"
        f"{steps_table(steps['saga'], steps['noop'])}\n\npeak RSS (VmHWM): "
        + ", ".join(f"{k} {v} MiB" for k, v in rss.items())
        + f"\n{ACTIVITIES_PER_ORDER} activities per order; {args.rounds} round(s) of "
        f"{args.orders} orders each for saga and noop"
        + "".join(
            f"\nCPU seconds during {phase}: " + ", ".join(f"{k} {v}" for k, v in used.items())
            for phase, used in cpu.items()
        )
        + "\n",
        flush=True,
    )
    return summary(args.orders, args.concurrency, saga, noop, rss, cpu, ratios) | {
        "steps_ms": steps
    }


def _add(total: dict[str, float], more: dict[str, float]) -> None:
    for name, seconds in more.items():
        total[name] = round(total.get(name, 0.0) + seconds, 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__)
    parser.add_argument(
        "--orders", "-n", type=int, default=100, help="orders per round, each side (100)"
    )
    parser.add_argument(
        "--rounds", "-r", type=int, default=3, help="saga/noop rounds, alternating (3)"
    )
    parser.add_argument("--concurrency", "-c", type=int, default=10, help="concurrent clients (10)")
    parser.add_argument(
        "--data-dir", type=Path, help="DATA_DIR to use (default: a fresh temp dir, removed after)"
    )
    parser.add_argument(
        "--warmup", type=int, default=5, help="unmeasured orders before each run (5)"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        help="poll GET /orders/{id} every S seconds instead of following its SSE stream",
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="LOG_LEVEL of the children (WARNING)"
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="the children export their spans to a local OTLP/HTTP receiver (otlp_sink.py)",
    )
    args = parser.parse_args(argv)
    if args.orders < 1 or args.concurrency < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--orders, --concurrency and --rounds must be >= 1, --warmup >= 0")
    return args


async def main_async(args: argparse.Namespace) -> int:
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="order-saga-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir}/shop.db",
        temporal_address=f"{DEV_SERVER_IP}:{free_port()}",
        temporal_ui_port=free_port(),
        grpc_port=(grpc_port := free_port()),
        grpc_target=f"{DEV_SERVER_IP}:{grpc_port}",
        api_host=DEV_SERVER_IP,
        api_port=free_port(),
        codec_port=free_port(),
        fault_rate=0.0,
        log_level=args.log_level,
        # Every order comes from one customer: no rate limit measures the stack, not it.
        rate_limit="0",
    )
    # --tracing: the cost of tracing (compare the ratio with a run without); the no-op side
    # runs in this process, untraced, so only the saga pays for it.
    sink = OtlpSink().__enter__() if args.tracing else None
    if sink is not None:
        settings.otel_exporter_otlp_endpoint = sink.endpoint
    sup = Supervisor(child_env(settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, sup.stop.set)
    result: dict[str, Any] | None = None
    try:
        result = await sup.guard(bench(sup, settings, args))
    except Interrupted:
        sup.failure = sup.failure or "interrupted"
    except Exception as err:  # noqa: BLE001 - reported below, after stopping the children
        while isinstance(err, ExceptionGroup):  # a failed order out of _bounded's TaskGroup
            err = err.exceptions[0]
        sup.fail(str(err) if isinstance(err, StartupError) else f"{type(err).__name__}: {err}")
    finally:
        await sup.shutdown()
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    if sink is not None:
        sink.__exit__()
    if result is None:
        say(f"error: {sup.failure}")
        return 1
    spans = dict(sink.count_by_service()) if sink is not None else {}
    print(json.dumps(result | {"tracing": args.tracing, "spans": spans}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    exit_now(asyncio.run(main_async(parse_args(argv))))


if __name__ == "__main__":
    main()
