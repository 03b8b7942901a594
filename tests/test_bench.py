"""`make bench` smoke test: the whole benchmark with tiny numbers. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.bench import percentile
from benchmarks.noop import ACTIVITIES_PER_ORDER

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
    assert (data_dir / "temporal.db").exists()  # the dev server persisted to DATA_DIR
    assert _processes_with(data_dir) == []  # every child stopped
