"""What `make bench` measures and prints: results, percentiles, rates over windows of orders,
CPU by process (and which resource was the limit), and the tables."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A phase is CPU-bound when the machine's cores were this busy, or one process (Python: one
# core at most, its GIL) used this share of a core.
BUSY = 0.9


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
    done: list[float] = field(default_factory=list)  # each order's PAID / completion time
    rate: float | None = None  # set on a combination of rounds: the median round's rate

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-9)

    @property
    def per_s(self) -> float:
        return self.rate if self.rate is not None else self.count / self.seconds

    def p(self, q: float, values: list[float] | None = None) -> float:
        values = self.latencies_ms if values is None else values
        return percentile(values, q) if values else 0.0


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


def window_rate(done: list[float], window: int, last: bool) -> float:
    """Orders/s over `window` consecutive completions: the first or the last of a run
    (the span between completions, so the start-up and the tail weigh the same)."""
    ordered = sorted(done)
    span = ordered[-1] - ordered[-1 - window] if last else ordered[window] - ordered[0]
    return window / max(span, 1e-9)


def scale(rounds: list[Result], window: int) -> dict[str, float] | None:
    """The rate of the last `window` orders (of the last round) against the first `window`
    (of the first round): whatever grows with the orders shows as a ratio below 1. None when
    the rounds are too short for two windows."""
    first, last = rounds[0].done, rounds[-1].done
    total = sum(len(r.done) for r in rounds)
    if min(len(first), len(last)) <= window or total < 2 * window:
        return None
    a, b = window_rate(first, window, last=False), window_rate(last, window, last=True)
    return {"first_per_s": round(a, 2), "last_per_s": round(b, 2), "ratio": round(b / a, 3)}


# --- CPU by process -----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a live process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def written_bytes(pid: int) -> int | None:
    """Bytes a live process has had written to storage: the dev server's SQLite file and WAL
    (`wchar` would count its sockets too)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


@dataclass
class Usage:
    """What one phase used: CPU seconds by process, the machine's busy share, wall time."""

    cpu_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    machine_busy: float = 0.0  # share of all cores' time, ours and anyone else's
    temporal_written_mb: float = 0.0

    def add(self, other: Usage) -> None:
        for name, seconds in other.cpu_s.items():
            self.cpu_s[name] = round(self.cpu_s.get(name, 0.0) + seconds, 1)
        total = self.wall_s + other.wall_s
        if total > 0:
            self.machine_busy = (
                self.machine_busy * self.wall_s + other.machine_busy * other.wall_s
            ) / total
        self.wall_s = total
        self.temporal_written_mb = round(self.temporal_written_mb + other.temporal_written_mb, 1)

    def limit(self) -> str:
        """Which resource bounded the phase, as far as CPU accounting tells."""
        cores = os.cpu_count() or 1
        wall = max(self.wall_s, 1e-9)
        ours = sum(self.cpu_s.values()) / (wall * cores)
        top, top_s = max(self.cpu_s.items(), key=lambda kv: kv[1], default=("none", 0.0))
        where = f"top: {top} {top_s / wall:.0%} of a core"
        if self.machine_busy >= BUSY:
            return (
                f"CPU: the {cores} cores {self.machine_busy:.0%} busy (ours {ours:.0%}, "
                f"other processes {max(self.machine_busy - ours, 0):.0%}); {where}"
            )
        if top != "temporal" and top_s / wall >= BUSY:
            return f"CPU of one process: {where} (one Python process uses one core)"
        return (
            f"not CPU ({self.machine_busy:.0%} of the cores busy; {where}): waiting, for the "
            f"dev server's SQLite ({self.temporal_written_mb} MB written) or the clients"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpu_s": self.cpu_s,
            "wall_s": round(self.wall_s, 1),
            "machine_busy": round(self.machine_busy, 3),
            "temporal_written_mb": self.temporal_written_mb,
            "limit": self.limit(),
        }


class CpuMeter:
    """CPU seconds per process over one phase: where the time of a run went."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before = self._now()

    def _now(self) -> tuple[float, tuple[int, int], int | None, dict[str, float | None]]:
        temporal = self.pids.get("temporal")
        written = written_bytes(temporal) if temporal is not None else None
        cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return os.times().elapsed, machine_ticks(), written, cpu

    def stop(self) -> Usage:
        (t0, (busy0, total0), w0, cpu0), (t1, (busy1, total1), w1, cpu1) = self.before, self._now()
        return Usage(
            cpu_s={
                name: round(end - start, 1)
                for name, end in cpu1.items()
                if end is not None and (start := cpu0[name]) is not None
            },
            wall_s=t1 - t0,
            machine_busy=(busy1 - busy0) / max(total1 - total0, 1),
            temporal_written_mb=round(((w1 or 0) - (w0 or 0)) / 1e6, 1),
        )


class WindowCpu:
    """CPU ms per order, by process, over the first `window` orders of the first round and
    the last `window` of the last: on a shared machine the rates drift with the neighbours'
    load, the CPU an order costs much less, so a cost that grows with the orders shows."""

    def __init__(self, pids: dict[str, int], window: int, orders: int, rounds: int) -> None:
        self.pids, self.window, self.orders, self.rounds = pids, window, orders, rounds
        self.marks: dict[str, dict[str, float | None]] = {}

    def _mark(self, name: str) -> None:
        self.marks[name] = {n: cpu_seconds(pid) for n, pid in self.pids.items()}

    def start(self, round_no: int) -> None:
        if round_no == 1:
            self._mark("first_start")
        if round_no == self.rounds and self.orders == self.window:
            self._mark("last_start")

    def hook(self, round_no: int) -> Callable[[int], None]:
        """What the round calls with the count of orders done, after each."""

        def done(count: int) -> None:
            if round_no == 1 and count == self.window:
                self._mark("first_end")
            if round_no == self.rounds and count == self.orders - self.window:
                self._mark("last_start")
            if round_no == self.rounds and count == self.orders:
                self._mark("last_end")

        return done

    def _per_order(self, start: str, end: str) -> dict[str, float]:
        a, b = self.marks[start], self.marks[end]
        return {
            n: round((after - before) * 1000 / self.window, 1)
            for n, after in b.items()
            if after is not None and (before := a.get(n)) is not None
        }

    def figures(self) -> dict[str, dict[str, float]] | None:
        if not {"first_start", "first_end", "last_start", "last_end"} <= set(self.marks):
            return None
        return {
            "first": self._per_order("first_start", "first_end"),
            "last": self._per_order("last_start", "last_end"),
        }


# --- the printed figures ------------------------------------------------------------------


def summary(
    saga: Result, noop: Result, round_ratios: list[float], usage: dict[str, Usage]
) -> dict[str, Any]:
    """One mode's figures, for the JSON line."""
    return {
        "rounds": len(round_ratios),
        "saga_orders_per_s": round(saga.per_s, 2),
        "noop_orders_per_s": round(noop.per_s, 2),
        "ratio": round(statistics.median(round_ratios), 3),
        "round_ratios": [round(r, 3) for r in round_ratios],
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
        "usage": {side: u.as_dict() for side, u in usage.items()},
    }


def table(saga: Result, noop: Result, ratio: float, follow: str) -> str:
    seen = saga.seen_ms
    rows = [
        ("PlaceOrder via REST, POST->PAID", f"{saga.per_s:.1f}", saga.p(50), saga.p(99)),
        ("  POST /checkout response", "", saga.p(50, saga.post_ms), saga.p(99, saga.post_ms)),
        (f"  PAID -> client told ({follow})", "", saga.p(50, seen), saga.p(99, seen)),
        ("BenchNoop via client, start->done", f"{noop.per_s:.1f}", noop.p(50), noop.p(99)),
        ("  start_workflow response", "", noop.p(50, noop.post_ms), noop.p(99, noop.post_ms)),
    ]
    lines = [f"{'':36}{'orders/s':>10}{'p50 ms':>10}{'p99 ms':>10}"]
    lines += [f"{name:36}{rate:>10}{p50:>10.1f}{p99:>10.1f}" for name, rate, p50, p99 in rows]
    lines.append(f"{'ratio saga/noop (median of rounds)':36}{ratio:>10.2f}")
    return "\n".join(lines)


def usage_lines(usage: dict[str, Usage]) -> str:
    return "\n".join(
        f"during {side}: CPU s "
        + ", ".join(f"{k} {v}" for k, v in u.cpu_s.items())
        + f" in {u.wall_s:.1f} s\n  limit: {u.limit()}"
        for side, u in usage.items()
    )


def scale_lines(figures: dict[str, Any]) -> str:
    """The scale figures of one mode, printed."""
    sides = [(side, figures[side]) for side in ("saga", "noop") if figures[side]]
    if not sides:
        return ""
    lines = [
        f"last {figures['window']} orders against the first {figures['window']}: "
        + ", ".join(
            f"{side} {f['last_per_s']:.1f} vs {f['first_per_s']:.1f}/s ({f['ratio']:.2f})"
            for side, f in sides
        )
    ]
    for side, cpu in figures["cpu_ms_per_order"].items():
        if cpu:
            lines.append(
                f"  {side} CPU ms per order, last vs first: "
                + ", ".join(
                    f"{name} {ms} vs {cpu['first'].get(name)}"
                    for name, ms in cpu["last"].items()
                    if ms or cpu["first"].get(name)
                )
            )
    return "\n".join(lines) + "\n"
