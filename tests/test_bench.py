"""`make bench` smoke test: the whole benchmark with tiny numbers. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from benchmarks.bench import percentile
from benchmarks.noop import ACTIVITIES_PER_ORDER
from benchmarks.steps import Steps, steps_table

ROOT = Path(__file__).resolve().parent.parent


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_noop_has_the_shape_of_place_orders_happy_path() -> None:
    # save_order(PENDING), get_user | get_product, reserve_stock, save_order(RESERVED),
    # charge, save_order(PAID), send_notification(ORDER_CONFIRMED)
    assert ACTIVITIES_PER_ORDER == 8


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


def test_steps_pool_histories_and_print_side_by_side() -> None:
    steps = Steps()
    for name in ("order-paid-delivered.json", "order-payment-declined.json"):
        steps.add(_history(name).events)
    means = steps.means()
    assert means["histories"] == 2 and "release_stock" in means["activities"]  # declined
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


def test_bench_runs_end_to_end_and_prints_json(tmp_path: Path) -> None:
    data_dir = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--orders", "4", "--concurrency", "2",
         "--warmup", "0", "--rounds", "2", "--data-dir", str(data_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["orders"] == 4 and result["concurrency"] == 2 and result["rounds"] == 2
    assert len(result["round_ratios"]) == 2 and all(r > 0 for r in result["round_ratios"])
    for key in ("saga_orders_per_s", "noop_orders_per_s", "ratio", "post_p50_ms",
                "post_p99_ms", "paid_p50_ms", "paid_p99_ms"):  # fmt: skip
        assert result[key] > 0, key
    assert set(result["rss_mb"]) == {"temporal", "worker", "services", "api"}
    assert all(v and v > 0 for v in result["rss_mb"].values())
    assert "PlaceOrder via REST" in done.stdout and "BenchNoop" in done.stdout
    # Where the time went, from the histories of both sides (warm-up is 0: these rounds').
    saga_steps, noop_steps = result["steps_ms"]["saga"], result["steps_ms"]["noop"]
    assert saga_steps["histories"] == noop_steps["histories"] == 8
    assert set(noop_steps["activities"]) == {"bench_noop_step"}
    assert {"get_user", "reserve_stock", "charge", "save_order"} <= set(saga_steps["activities"])
    assert "where the time goes" in done.stdout
    assert (data_dir / "temporal.db").exists()  # the dev server persisted to DATA_DIR
    assert _processes_with(data_dir) == []  # every child stopped
