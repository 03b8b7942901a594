"""`make bench`: checkout throughput and latency through the REST API, next to the engine's
limit, in one run.

    python -m benchmarks.bench [--mode sse,poll,open] [--orders N] [--rounds R]
        [--poll-interval S] [--rate R|auto] [--database-url URL] ...

Starts the stack as `make run` does (core.run.start_stack): a Temporal dev server persisted
to SQLite in a fresh DATA_DIR, the gRPC services, the worker and the API, all on free ports,
over a fresh shop database (SQLite, or `bench_<random>` on the PostgreSQL server of
--database-url, dropped after). Seeds one user and one product, then runs each mode, in
rounds alternating the two sides on the same server:

  saga  checkouts through POST /checkout, each client following its order until PAID
  noop  BenchNoop runs (benchmarks/noop.py: PlaceOrder's happy path, no-op activities) on a
        worker of the same configuration in this process, each waited on

Modes (benchmarks/clients.py):
  sse   C clients (10) follow their orders on GET /orders/{id}/events
  poll  C clients (32) poll GET /orders/{id} every --poll-interval seconds (0.3)
  open  open loop: an order arrives every 1/R s (--rate; `auto`: --rate-fraction (0.8) of
        the no-op's closed-loop rate, measured in this run), followed by SSE

For each: orders/s, the ratio saga/noop, p50/p99 of POST /checkout and POST->PAID, the
rate of the last --window (500) orders against the first (when the run has that many),
CPU seconds by process, which resource was the limit, and where the time went, step by
step, in a sample of the mode's histories (benchmarks/steps.py). Then the peak memory of
each process, and a last line of JSON with each mode's figures. Stops everything it
started, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from temporalio.client import Client

from benchmarks.clients import (
    Done,
    Headers,
    http_session,
    ignore_done,
    measure_noop,
    measure_saga,
    seed_catalogue,
)
from benchmarks.database import backend, fresh_database
from benchmarks.noop import ACTIVITIES_PER_ORDER
from benchmarks.otlp_sink import OtlpSink
from benchmarks.report import (
    CpuMeter,
    Result,
    Usage,
    WindowCpu,
    combine,
    peak_rss_mb,
    scale,
    scale_lines,
    summary,
    table,
    usage_lines,
)
from benchmarks.steps import sample_steps, steps_table
from core.config import Settings
from core.run import DEV_SERVER_IP, StartupError, api_url, child_env, free_port, start_stack
from core.runtime import exit_now, freeze_startup_objects
from core.supervisor import Interrupted, Supervisor
from worker import connect

MEASURED = ("temporal", "worker", "services", "api")
MODES = ("sse", "poll", "open")
DEFAULT_CONCURRENCY = {"sse": 10, "poll": 32}
DEFAULT_POLL_INTERVAL = 0.3
DATABASE_URL_ENV = "BENCH_DATABASE_URL"
T = TypeVar("T")


def say(message: str) -> None:
    print(f"{'bench':>8} | {message}", flush=True)


@dataclass
class Mode:
    name: str
    concurrency: int  # closed loop: clients; open loop: unused
    poll_interval: float | None = None
    rate: float | None = None  # open loop: arrivals per second, once known

    @property
    def follow(self) -> str:
        return "SSE" if self.poll_interval is None else f"poll {self.poll_interval}s"


@dataclass
class Run:
    """What every mode of one run shares: the stack's clients and its seeded order."""

    args: argparse.Namespace
    http: aiohttp.ClientSession
    headers: Headers  # the customer's
    client: Client
    user_id: str
    product_id: str
    task_queue: str
    pids: dict[str, int]

    async def saga(self, mode: Mode, orders: int, on_done: Done = ignore_done) -> Result:
        return await measure_saga(
            self.http,
            self.headers,
            self.user_id,
            self.product_id,
            orders,
            mode.concurrency,
            mode.poll_interval,
            mode.rate,
            on_done,
        )

    async def noop(self, mode: Mode, orders: int, on_done: Done = ignore_done) -> Result:
        return await measure_noop(
            self.client, orders, mode.concurrency, self.task_queue, mode.rate, on_done
        )


async def run_mode(run: Run, mode: Mode) -> dict[str, Any]:
    """Rounds alternating saga and noop, so both see the same machine: on a shared VM the
    speed drifts by more than the gap measured. The ratio is the median of the rounds'."""
    args = run.args
    sagas: list[Result] = []
    noops: list[Result] = []
    usage = {"saga": Usage(), "noop": Usage()}
    windows = {side: WindowCpu(run.pids, args.window, args.orders, args.rounds) for side in usage}
    load = f"{mode.rate:.1f} orders/s" if mode.rate else f"C={mode.concurrency}"
    since = f"StartTime >= '{datetime.now(UTC).isoformat()}'"  # this mode's runs only
    for n in range(1, args.rounds + 1):
        say(f"{mode.name} round {n}/{args.rounds}, saga: {args.orders} checkouts, {load}")
        meter = CpuMeter(run.pids)
        windows["saga"].start(n)
        sagas.append(await run.saga(mode, args.orders, windows["saga"].hook(n)))
        usage["saga"].add(meter.stop())
        say(f"{mode.name} round {n}/{args.rounds}, noop: {args.orders} BenchNoop runs")
        meter = CpuMeter(run.pids)
        windows["noop"].start(n)
        noops.append(await run.noop(mode, args.orders, windows["noop"].hook(n)))
        usage["noop"].add(meter.stop())
        say(f"{mode.name} round {n}: saga {sagas[-1].per_s:.1f}/s, noop {noops[-1].per_s:.1f}/s")
    ratios = [a.per_s / b.per_s for a, b in zip(sagas, noops, strict=True)]
    saga, noop = combine(sagas), combine(noops)
    steps = {
        "saga": (await sample_steps(run.client, f"WorkflowType='PlaceOrder' AND {since}")).means(),
        "noop": (await sample_steps(run.client, f"WorkflowType='BenchNoop' AND {since}")).means(),
    }
    figures = summary(saga, noop, ratios, usage) | {
        "follow": mode.follow,
        "concurrency": None if mode.rate else mode.concurrency,
        "rate": round(mode.rate, 2) if mode.rate else None,
        "scale": {
            "window": args.window,
            "saga": scale(sagas, args.window),
            "noop": scale(noops, args.window),
            "cpu_ms_per_order": {side: w.figures() for side, w in windows.items()},
        },
        "steps_ms": steps,
    }
    heading = f"mode {mode.name}: {args.rounds} round(s) of {args.orders} orders, {load}"
    heading += f", clients follow by {mode.follow}"
    print(
        f"\n{heading}\n{table(saga, noop, statistics.median(ratios), mode.follow)}\n"
        f"ratio per round: {', '.join(f'{r:.2f}' for r in ratios)}\n"
        f"{scale_lines(figures['scale'])}{usage_lines(usage)}\n\n"
        f"{steps_table(steps['saga'], steps['noop'])}\n",
        flush=True,
    )
    return figures


def modes_of(args: argparse.Namespace) -> list[Mode]:
    names = args.mode or (
        [m for m, on in (("poll", args.poll_interval), ("open", args.rate)) if on] or ["sse"]
    )
    return [
        Mode(
            name,
            args.concurrency or DEFAULT_CONCURRENCY.get(name, DEFAULT_CONCURRENCY["sse"]),
            (args.poll_interval or DEFAULT_POLL_INTERVAL) if name == "poll" else None,
        )
        for name in MODES
        if name in names
    ]


async def open_rate(run: Run, done: dict[str, dict[str, Any]]) -> tuple[float, float]:
    """The open loop's rate: --rate, or --rate-fraction of the no-op's saturated rate, from
    a closed mode of this run or else measured now. (rate, the no-op's rate or 0)."""
    args = run.args
    if args.rate != "auto":
        return float(args.rate), 0.0
    closed = [f["noop_orders_per_s"] for f in done.values() if f["concurrency"]]
    if closed:
        saturated = max(closed)
    else:
        say(f"open: the no-op's closed-loop rate, {args.orders} runs")
        mode = Mode("sse", args.concurrency or DEFAULT_CONCURRENCY["sse"])
        saturated = (await run.noop(mode, args.orders)).per_s
    return args.rate_fraction * saturated, saturated


async def bench(sup: Supervisor, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    await start_stack(sup, settings, dev_server=True)
    say(f"stack ready in {time.monotonic() - started:.1f}s")
    modes = modes_of(args)
    async with http_session(api_url(settings)) as http:
        stock = len(modes) * args.rounds * args.orders + args.warmup + 10
        user_id, product_id, headers = await seed_catalogue(http, settings, stock)
        say(f"seeded user {user_id} and product {product_id}")
        client = await connect(settings)
        run = Run(
            args,
            http,
            headers,
            client,
            user_id,
            product_id,
            f"bench-noop-{uuid.uuid4().hex[:12]}",
            {},
        )
        if args.warmup:
            warm = Mode("sse", DEFAULT_CONCURRENCY["sse"])
            await run.saga(warm, args.warmup)
            await run.noop(warm, args.warmup)
        # The no-op worker runs here: set up like worker.py's process, GC included.
        freeze_startup_objects()
        run.pids = {name: p.pid for name, p in sup.children.items()} | {"bench": os.getpid()}
        figures: dict[str, dict[str, Any]] = {}
        for mode in modes:
            noop_rate = 0.0
            if mode.name == "open":
                mode.rate, noop_rate = await open_rate(run, figures)
            figures[mode.name] = await run_mode(run, mode)
            if noop_rate:
                figures[mode.name]["noop_saturated_per_s"] = round(noop_rate, 2)
    rss = {name: peak_rss_mb(run.pids[name]) for name in MEASURED}
    print(
        "peak RSS (VmHWM): "
        + ", ".join(f"{k} {v} MiB" for k, v in rss.items())
        + f"\n{ACTIVITIES_PER_ORDER} activities per order; database "
        f"{backend(settings.database_url)}\n",
        flush=True,
    )
    return {
        "database": backend(settings.database_url),
        "orders": args.orders,
        "rounds": args.rounds,
        **figures,
        "rss_mb": rss,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--mode",
        type=lambda s: [m.strip() for m in s.split(",") if m.strip()],
        help="comma-separated, of sse, poll, open (default: sse; poll with --poll-interval, "
        "open with --rate)",
    )
    parser.add_argument(
        "--orders", "-n", type=int, default=100, help="orders per round, each side (100)"
    )
    parser.add_argument(
        "--rounds", "-r", type=int, default=3, help="saga/noop rounds, alternating (3)"
    )
    parser.add_argument(
        "--concurrency", "-c", type=int, help="closed-loop clients (sse: 10, poll: 32)"
    )
    parser.add_argument(
        "--poll-interval", type=float, help="poll mode: seconds between polls (0.3)"
    )
    parser.add_argument(
        "--rate", help="open mode: arrivals per second, or `auto` (the default in --mode open)"
    )
    parser.add_argument(
        "--rate-fraction",
        type=float,
        default=0.8,
        help="--rate auto: this share of the no-op's closed-loop rate (0.8)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=500,
        help="scale: rate of the last W orders against the first W, when there are (500)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_URL_ENV),
        help=f"a PostgreSQL server (${DATABASE_URL_ENV}), e.g. postgresql+psycopg://"
        "postgres@127.0.0.1:5432/postgres: the shop's tables in a new database there, "
        "dropped after (default: SQLite in DATA_DIR)",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="DATA_DIR to use (default: a fresh temp dir, removed after)"
    )
    parser.add_argument(
        "--warmup", type=int, default=5, help="unmeasured orders before each run (5)"
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
    if args.orders < 1 or args.rounds < 1 or args.warmup < 0 or args.window < 1:
        parser.error("--orders, --rounds and --window must be >= 1, --warmup >= 0")
    if args.concurrency is not None and args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    if args.poll_interval is not None and args.poll_interval <= 0:
        parser.error("--poll-interval must be > 0")
    if unknown := set(args.mode or []) - set(MODES):
        parser.error(f"unknown mode(s) {', '.join(sorted(unknown))}: use {', '.join(MODES)}")
    if args.mode and "open" in args.mode and args.rate is None:
        args.rate = "auto"
    if args.rate is not None and args.rate != "auto":
        try:
            if float(args.rate) <= 0:
                raise ValueError
        except ValueError:
            parser.error("--rate must be a number > 0 or `auto`")
    return args


def bench_settings(data_dir: Path, database_url: str, log_level: str) -> Settings:
    """The stack's settings for a measurement: every port free, no injected faults, no rate
    limit and no bound on open event streams (every order comes from one customer, with up
    to dozens followed at once in the open loop: a limit would measure it, not the stack)."""
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        temporal_address=f"{DEV_SERVER_IP}:{free_port()}",
        temporal_ui_port=free_port(),
        grpc_port=(grpc_port := free_port()),
        grpc_target=f"{DEV_SERVER_IP}:{grpc_port}",
        api_host=DEV_SERVER_IP,
        api_port=free_port(),
        codec_port=free_port(),
        fault_rate=0.0,
        log_level=log_level,
        rate_limit="0",
        streams_per_caller=0,
    )


async def supervised(
    database_url: str | None,
    log_level: str,
    data_dir: Path | None,
    body: Callable[[Supervisor, Settings], Awaitable[T]],
    otlp_endpoint: str | None = None,
) -> T | None:
    """body(sup, settings) over a fresh DATA_DIR (removed after, unless given) and a fresh
    shop database (`database_url`: a PostgreSQL server, else SQLite), every child stopped at
    the end, also on Ctrl-C or a failure; None, the failure said, when it did not finish."""
    own_dir = data_dir is None
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="order-saga-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    with fresh_database(database_url, data_dir) as url:
        settings = bench_settings(data_dir, url, log_level)
        if otlp_endpoint is not None:
            settings.otel_exporter_otlp_endpoint = otlp_endpoint
        sup = Supervisor(child_env(settings))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, sup.stop.set)
        try:
            return await sup.guard(body(sup, settings))
        except Interrupted:
            sup.failure = sup.failure or "interrupted"
        except Exception as err:  # noqa: BLE001 - reported below, after stopping the children
            while isinstance(err, ExceptionGroup):  # a failed order out of a TaskGroup
                err = err.exceptions[0]
            sup.fail(str(err) if isinstance(err, StartupError) else f"{type(err).__name__}: {err}")
        finally:
            await sup.shutdown()
            if own_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
    say(f"error: {sup.failure}")
    return None


async def main_async(args: argparse.Namespace) -> int:
    async def body(sup: Supervisor, settings: Settings) -> dict[str, Any]:
        return await bench(sup, settings, args)

    with contextlib.ExitStack() as stack:
        # --tracing: the cost of tracing (compare the ratio with a run without); the no-op
        # side runs in this process, untraced, so only the saga pays for it.
        sink = stack.enter_context(OtlpSink()) if args.tracing else None
        endpoint = sink.endpoint if sink is not None else None
        result = await supervised(args.database_url, args.log_level, args.data_dir, body, endpoint)
        spans = dict(sink.count_by_service()) if sink is not None else {}
    if result is None:
        return 1
    print(json.dumps(result | {"tracing": args.tracing, "spans": spans}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    exit_now(asyncio.run(main_async(parse_args(argv))))


if __name__ == "__main__":
    main()
