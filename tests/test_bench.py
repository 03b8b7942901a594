"""`make bench` smoke test: the whole benchmark with tiny numbers. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from benchmarks.bench import bench_settings
from benchmarks.noop import (
    ACTIVITIES_PER_ORDER,
    CUSTOMER_ID,
    FULFILMENT_WAIT,
    ORDER_STATUS,
    SEQUENTIAL,
)
from benchmarks.report import Result, Usage, percentile, scale, window_rate
from benchmarks.steps import Steps, steps_table
from core import messages
from core.run import child_env
from workflows.place_order import DEFAULT_FULFILMENT_DEADLINE

ROOT = Path(__file__).resolve().parent.parent
# A stack start and a few orders a side: minutes only on a machine loaded by other work.
BENCH_TIMEOUT = 240


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_scale_compares_the_rate_of_the_last_orders_with_the_first() -> None:
    # 10 orders a second for the first 6 completions, then 5 a second.
    done = [0.1 * i for i in range(6)] + [0.5 + 0.2 * i for i in range(1, 7)]
    assert round(window_rate(done, 4, last=False), 6) == 10.0
    assert round(window_rate(done, 4, last=True), 6) == 5.0
    one = Result(12, 0.0, done[-1], done=done)
    assert scale([one], 4) == {"first_per_s": 10.0, "last_per_s": 5.0, "ratio": 0.5}
    # Across rounds: the first round's first window, the last round's last one.
    steady = Result(6, 0.0, 0.5, done=[0.1 * i for i in range(6)])
    assert scale([steady, one], 4) == {"first_per_s": 10.0, "last_per_s": 5.0, "ratio": 0.5}
    assert scale([steady], 4) is None  # fewer than two windows of orders


def test_the_limit_names_the_busy_resource() -> None:
    cores = os.cpu_count() or 1
    busy = Usage(cpu_s={"temporal": 5.0 * cores, "worker": 4.0}, wall_s=10.0, machine_busy=0.97)
    assert busy.limit().startswith("CPU: ") and "top: temporal" in busy.limit()
    one = Usage(cpu_s={"worker": 9.5, "temporal": 1.0}, wall_s=10.0, machine_busy=0.6)
    assert one.limit().startswith("CPU of one process") and "worker" in one.limit()
    idle = Usage(cpu_s={"worker": 2.0}, wall_s=10.0, machine_busy=0.3)
    assert idle.limit().startswith("not CPU")


def test_noop_has_the_shape_of_place_orders_happy_path() -> None:
    """BenchNoop sends the server PlaceOrder's commands up to PAID and the confirmation: as
    many activities, and a search attribute upsert before each save after the first."""
    events = _history("order-paid-delivered.json").events
    paid = next(
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
        and b"PAID" in e.upsert_workflow_search_attributes_event_attributes.SerializeToString()
    )
    # Up to the confirmation: the activity scheduled after PAID's save is the notification.
    scheduled = [
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    confirmation = [i for i in scheduled if i > paid][1]
    upserts = [
        e
        for e in events[: confirmation + 1]
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    ]
    assert ACTIVITIES_PER_ORDER == len([i for i in scheduled if i <= confirmation]) == 8
    assert len(upserts) == sum(s.startswith("save_order:") for s in SEQUENTIAL) == 2
    assert (ORDER_STATUS, CUSTOMER_ID) == (messages.ORDER_STATUS, messages.CUSTOMER_ID)
    # Then a PAID order waits for ship, cancel or its fulfilment deadline: open, on a timer
    # (started in the task after the confirmation), as BenchNoop stays.
    waiting = _history("order-fulfilment-deadline.json").events
    commands = [e.event_type for e in waiting if e.event_type in _COMMANDS]
    confirmed = [i for i, c in enumerate(commands) if c == _SCHEDULED][ACTIVITIES_PER_ORDER - 1]
    assert commands[confirmed + 1] == EventType.EVENT_TYPE_TIMER_STARTED
    assert FULFILMENT_WAIT == DEFAULT_FULFILMENT_DEADLINE


_SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
# The events that record a workflow's commands, in the order it sent them.
_COMMANDS = {
    _SCHEDULED,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
}


def _history(name: str) -> WorkflowHistory:
    path = ROOT / "tests" / "histories" / name
    return WorkflowHistory.from_json("order-" + name, path.read_text())


def test_steps_of_a_recorded_history_match_its_events() -> None:
    history = _history("order-paid-delivered.json")
    count = Counter(e.event_type for e in history.events)
    steps = Steps()
    steps.add(history.events)
    means = steps.means()
    assert means["histories"] == 1
    assert len(steps.workflow_task_wait) == count[EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED]
    assert len(steps.workflow_task_run) == count[EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    runs = [v for values in steps.activity_run.values() for v in values]
    assert len(runs) == count[EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED]
    # PENDING, RESERVED, PAID, SHIPPED, DELIVERED: one save each.
    assert len(steps.activity_run["save_order"]) == 5
    assert {"get_user", "get_product", "reserve_stock", "charge", "send_notification"} <= set(
        steps.activity_run
    )
    every = steps.workflow_task_wait + steps.workflow_task_run + steps.activity_wait + runs
    assert all(ms >= 0 for ms in every) and sum(every) > 0
    # Each step lies within the workflow's run.
    first, last = history.events[0].event_time, history.events[-1].event_time
    assert max(every) <= last.ToMilliseconds() - first.ToMilliseconds() + 1
    # PAID once, at the start of the workflow task that upserted it; the last step (the
    # DELIVERED notification) after it.
    [to_paid], [to_last_step] = steps.to_paid, steps.to_last_step
    upserts = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    ]
    paid = next(
        e
        for e in upserts
        if e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields[
            "OrderStatus"
        ].data
        == b'"PAID"'
    )
    task_started = max(
        e.event_time.ToMilliseconds()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and e.event_id < paid.event_id
    )
    assert to_paid == pytest.approx(task_started - first.ToMilliseconds(), abs=1)
    assert 0 < to_paid < to_last_step
    assert means["to_paid"] == round(to_paid, 1)


def test_steps_pool_histories_and_print_side_by_side() -> None:
    steps = Steps()
    for name in ("order-paid-delivered.json", "order-payment-declined.json"):
        steps.add(_history(name).events)
    means = steps.means()
    assert means["histories"] == 2 and "release_stock" in means["activities"]  # declined
    assert len(steps.to_paid) == 1 and len(steps.to_last_step) == 2  # the declined: no PAID
    empty = Steps().means()
    assert empty["workflow_task_run"] is None and empty["activities"] == {}
    text = steps_table(means, empty)
    assert "workflow task wait" in text and "save_order" in text


def _processes_with(data_dir: Path) -> list[int]:
    """Live processes started for this data dir (by command line or DATA_DIR)."""
    marker = str(data_dir).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (
                marker in (proc / "cmdline").read_bytes()
                or marker in (proc / "environ").read_bytes()
            ):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _bench_databases(db_url: str) -> set[str]:
    conninfo = make_url(db_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(conninfo.render_as_string(hide_password=False)) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'bench_%'")
        return {name for (name,) in rows}


def _bench(data_dir: Path, *args: str) -> dict[str, Any]:
    """Runs `make bench` with tiny numbers: its last line of JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--orders", "4", "--concurrency", "2",
         "--warmup", "0", "--data-dir", str(data_dir), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=BENCH_TIMEOUT - 10,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PlaceOrder via REST" in done.stdout and "BenchNoop" in done.stdout
    assert "where the time goes" in done.stdout and "limit: " in done.stdout
    # The children's logs pass through: none of them failed on a request (an event stream
    # closed by its client once PAID, say).
    assert "Traceback" not in done.stdout and "unhandled" not in done.stdout, done.stdout[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert (data_dir / "temporal.db").exists()  # the dev server persisted to DATA_DIR
    assert _processes_with(data_dir) == []  # every child stopped
    return result


def _assert_figures(mode: dict[str, Any], rounds: int) -> None:
    assert len(mode["round_ratios"]) == rounds and all(r > 0 for r in mode["round_ratios"])
    for key in ("saga_orders_per_s", "noop_orders_per_s", "ratio", "post_p50_ms",
                "post_p99_ms", "paid_p50_ms", "paid_p99_ms", "noop_p99_ms"):  # fmt: skip
        assert mode[key] > 0, key
    for side in ("saga", "noop"):
        usage = mode["usage"][side]
        assert usage["wall_s"] > 0 and usage["cpu_s"]["temporal"] >= 0 and usage["limit"]


@pytest.mark.timeout(BENCH_TIMEOUT)
def test_bench_runs_each_mode_and_prints_json(tmp_path: Path, db_url: str) -> None:
    """Every mode on SQLite in one run; on PostgreSQL, the shop's tables in a database of
    their own, dropped after. No figure is judged: the run works and reports."""
    data_dir = tmp_path / "bench"
    if make_url(db_url).get_backend_name() == "sqlite":
        result = _bench(
            data_dir, "--rounds", "1", "--mode", "sse,poll,open", "--poll-interval", "0.1",
            "--window", "2",
        )  # fmt: skip
        assert result["database"] == "sqlite" and (data_dir / "shop.db").exists()
        assert {"sse", "poll", "open"} <= set(result)
        for name in ("sse", "poll", "open"):
            _assert_figures(result[name], rounds=1)
        assert result["sse"]["follow"] == "SSE" and result["poll"]["follow"] == "poll 0.1s"
        assert result["sse"]["concurrency"] == result["poll"]["concurrency"] == 2
        # Open loop at 0.8 of the no-op's closed-loop rate measured in this very run.
        opened = result["open"]
        assert opened["concurrency"] is None and opened["rate"] > 0
        assert abs(opened["rate"] - 0.8 * opened["noop_saturated_per_s"]) < 0.02
        assert opened["noop_saturated_per_s"] == max(
            result["sse"]["noop_orders_per_s"], result["poll"]["noop_orders_per_s"]
        )
        # Scale: 4 orders a side, windows of 2.
        for name in ("sse", "poll", "open"):
            for side in ("saga", "noop"):
                figures = result[name]["scale"][side]
                assert figures["first_per_s"] > 0 and figures["ratio"] > 0
                cpu = result[name]["scale"]["cpu_ms_per_order"][side]
                assert cpu["first"]["temporal"] >= 0 and cpu["last"]["temporal"] >= 0
        # Where the time went, from each mode's own histories (4 a side: no warm-up, no
        # other mode's): every step and both milestones measured on both sides.
        for name in ("sse", "poll", "open"):
            saga_steps = result[name]["steps_ms"]["saga"]
            noop_steps = result[name]["steps_ms"]["noop"]
            assert saga_steps["histories"] == noop_steps["histories"] == 4
            assert set(noop_steps["activities"]) == {"bench_noop_step"}
            assert {"get_user", "reserve_stock", "charge", "save_order"} <= set(
                saga_steps["activities"]
            )
            for steps in (saga_steps, noop_steps):
                assert 0 < steps["to_paid"] < steps["to_last_step"]
        assert set(result["rss_mb"]) == {"temporal", "worker", "services", "api"}
        assert all(v and v > 0 for v in result["rss_mb"].values())
        return
    before = _bench_databases(db_url)
    result = _bench(data_dir, "--rounds", "1", "--database-url", db_url)
    assert result["database"] == "postgresql" and not (data_dir / "shop.db").exists()
    assert set(result) >= {"sse"} and "poll" not in result and "open" not in result
    _assert_figures(result["sse"], rounds=1)
    scaled = result["sse"]["scale"]  # 4 orders: no two windows of 500
    assert scaled["saga"] is None and scaled["cpu_ms_per_order"]["saga"] is None
    assert _bench_databases(db_url) == before  # its database dropped


@pytest.mark.timeout(BENCH_TIMEOUT)
def test_calls_measures_each_call_and_prints_json(tmp_path: Path) -> None:
    """`python -m benchmarks.calls` on a tiny load: every call answered as it should (the
    run fails otherwise) and has its CPU figure; every child stopped. No figure is judged."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.calls", "--calls", "20", "--concurrency", "2",
         "--data-dir", str(tmp_path / "calls")],
        cwd=ROOT, capture_output=True, text=True, timeout=BENCH_TIMEOUT - 10,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["calls"] == 20 and result["database"] == "sqlite"
    expected = {
        "GET /orders/{id}",
        "GET /orders/{id} without a token (401)",
        "GetUser",
        "GetProduct",
        "TokenizeCard",
        "ReserveStock",
        "Charge",
        "SendNotification",
        "Health.Check (grpc.aio floor)",
    }
    assert set(result["cpu_ms"]) == set(result["per_s"]) == expected
    assert all(result["cpu_ms"][name] >= 0 and result["per_s"][name] > 0 for name in expected)
    assert "GET /orders/{id}" in done.stdout and "Charge" in done.stdout
    assert _processes_with(tmp_path / "calls") == []  # every child stopped


def test_the_bench_measures_the_stack_not_one_customer_s_limits(tmp_path: Path) -> None:
    """Every benchmark order comes from one customer, dozens followed at once in the open
    loop: neither the rate limit nor the bound on a caller's open streams may apply."""
    settings = bench_settings(tmp_path, f"sqlite:///{tmp_path}/shop.db", "warning")
    assert settings.rate_limit == "0" and settings.streams_per_caller == 0
    # ... in the API it starts, too.
    env = child_env(settings)
    assert env["RATE_LIMIT"] == "0" and env["STREAMS_PER_CALLER"] == "0"
