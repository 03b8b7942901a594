"""Renders docs/images/dashboard.png: the dashboard's main panels, plotted with matplotlib
from a real run (Grafana is not on this machine), clearly labelled as such.

    .venv/bin/pip install matplotlib   # not a dependency of the project
    .venv/bin/python docs/images/dashboard.py [--seconds 90]

Starts the stack on a fresh dev server (benchmarks/bench.py's way), drives a steady mix of
checkouts (paid, declined, out of stock, a flaky card) and a few cancels, scrapes the three
/metrics endpoints every few seconds, and computes each panel's query over the scrapes the
way Prometheus would (rates of counters, quantiles of histogram buckets).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.bench import seed_catalogue  # noqa: E402
from core.config import Settings  # noqa: E402
from core.run import DEV_SERVER_IP, api_url, child_env, free_port, start_stack  # noqa: E402
from core.supervisor import Supervisor  # noqa: E402

CARDS = ["4242424242424242"] * 7 + ["4000000000000002", "4000000000000119"]
ADDRESS = {"name": "Demo", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115",
           "country": "DE"}  # fmt: skip
Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(urls: list[str]) -> Scrape:
    samples: Scrape = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for url in urls:
            text = (await http.get(url)).text
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def total(s: Scrape, name: str, by: str | None = None, **want: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (n, labels), v in s.items():
        d = dict(labels)
        if n == name and all(d.get(k) == x for k, x in want.items()):
            out[d.get(by, "") if by else ""] += v
    return out


def quantile(q: float, buckets: dict[str, float]) -> float:
    """histogram_quantile over cumulative buckets {le: count}."""
    pairs = sorted((float(le), c) for le, c in buckets.items())
    if not pairs or pairs[-1][1] <= 0:
        return float("nan")
    rank, prev_le, prev_c = q * pairs[-1][1], 0.0, 0.0
    for le, c in pairs:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-9)
        prev_le, prev_c = le, c
    return prev_le


async def drive(http: httpx.AsyncClient, product_id: str, until: float) -> None:
    rng = random.Random(7)
    paid: list[str] = []
    while time.monotonic() < until:
        # A few orders ask for more than the stock: OUT_OF_STOCK.
        quantity = 10_000 if rng.random() < 0.06 else rng.randint(1, 3)
        body = {
            "items": [{"product_id": product_id, "quantity": quantity}],
            "payment": {"card_number": rng.choice(CARDS)},
            "shipping_address": ADDRESS,
        }
        r = await http.post("/checkout", json=body, headers={"Idempotency-Key": str(rng.random())})
        if r.status_code == 202:
            paid.append(r.json()["order_id"])
        if len(paid) > 5 and rng.random() < 0.1:
            await http.post(f"/orders/{paid.pop(0)}/cancel", json={"reason": "demo"})
        await asyncio.sleep(rng.uniform(0.1, 0.5))


def plot(times: list[float], scrapes: list[Scrape], out: Path, window: int) -> None:
    fig, axes = plt.subplots(3, 3, figsize=(13, 8.5))
    fig.suptitle(
        "Shop dashboard panels: plotted with matplotlib from a real local run's /metrics "
        "scrapes (not a Grafana screenshot)",
        fontsize=11,
    )
    t = [x - times[0] for x in times]

    def rates(name: str, by: str | None = None, **want: str) -> dict[str, list[float]]:
        series: dict[str, list[float]] = defaultdict(list)
        keys = set().union(*(total(s, name, by, **want) for s in scrapes))
        for i in range(len(scrapes)):
            j = max(0, i - window)
            dt = max(times[i] - times[j], 1e-9)
            a, b = total(scrapes[j], name, by, **want), total(scrapes[i], name, by, **want)
            for k in keys:
                series[k].append((b.get(k, 0) - a.get(k, 0)) / dt if i else 0.0)
        return series

    def draw(ax: Any, title: str, series: dict[str, list[float]], unit: str = "/s") -> None:
        for label, values in sorted(series.items()):
            ax.plot(t, values, label=label or title)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=7)
        if any(series):
            ax.legend(fontsize=7)

    draw(axes[0][0], "Orders placed", rates("shop_orders_placed_total"))
    paid = rates("shop_checkout_seconds_count", None, status="PAID")[""]
    every = rates("shop_checkout_seconds_count")[""]
    ratio = [p / e if e else float("nan") for p, e in zip(paid, every, strict=True)]
    draw(axes[0][1], "Checkout success ratio", {"PAID / (PAID+FAILED)": ratio}, "ratio")
    draw(axes[0][2], "Failures by reason",
         rates("shop_orders_finished_total", "reason", status="FAILED"))  # fmt: skip
    draw(axes[1][0], "Payment outcomes", rates("shop_payments_total", "outcome"))
    value = rates("shop_order_value_cents_sum")[""]
    count = rates("shop_order_value_cents_count")[""]
    draw(axes[1][1], "Revenue and average order value", {
        "revenue $/s": [v / 100 for v in value],
        "AOV $": [v / c / 100 if c else float("nan") for v, c in zip(value, count, strict=True)],
    }, "$")  # fmt: skip
    lat: dict[str, list[float]] = defaultdict(list)
    for i in range(len(scrapes)):
        j = max(0, i - window)
        a = total(scrapes[j], "shop_checkout_seconds_bucket", "le")
        b = total(scrapes[i], "shop_checkout_seconds_bucket", "le")
        diff = {le: b[le] - a.get(le, 0) for le in b}
        for q in (0.5, 0.95, 0.99):
            lat[f"p{int(q * 100)}"].append(quantile(q, diff))
    draw(axes[1][2], "Checkout latency (to PAID/FAILED)", lat, "s")
    draw(axes[2][0], "Compensations by step", rates("shop_compensations_total", "step"))
    draw(axes[2][1], "Activity retries (failed attempts)",
         rates("temporal_activity_execution_failed_total", "activity_type"))  # fmt: skip
    every_rpc = rates("grpc_server_handled_total", "grpc_service")
    ok = rates("grpc_server_handled_total", "grpc_service", grpc_code="OK")
    errors = {
        service.removeprefix("shop.v1."): [a - b for a, b in zip(v, ok[service], strict=True)]
        for service, v in every_rpc.items()
    }
    draw(axes[2][2], "gRPC errors by service", {k: v for k, v in errors.items() if any(v)})
    for ax in axes[-1]:
        ax.set_xlabel("seconds into the run", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(out, dpi=72)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".png"))
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="order-saga-dashboard-"))
    settings = Settings(
        data_dir=data_dir, database_url=f"sqlite:///{data_dir}/shop.db",
        temporal_address=f"{DEV_SERVER_IP}:{free_port()}", temporal_ui_port=free_port(),
        grpc_port=(grpc_port := free_port()), grpc_target=f"{DEV_SERVER_IP}:{grpc_port}",
        api_host=DEV_SERVER_IP, api_port=free_port(), codec_port=free_port(), rate_limit="0",
        metrics_port_worker=free_port(), metrics_port_services=free_port(), log_level="WARNING",
    )  # fmt: skip
    urls = [f"{api_url(settings)}/metrics"] + [
        f"http://127.0.0.1:{p}/metrics"
        for p in (settings.metrics_port_worker, settings.metrics_port_services)
    ]
    sup = Supervisor(child_env(settings))
    try:
        await start_stack(sup, settings, dev_server=True)
        async with httpx.AsyncClient(base_url=api_url(settings), timeout=30) as http:
            _, product_id = await seed_catalogue(http, settings, 5_000)
            until = time.monotonic() + args.seconds
            load = asyncio.gather(*(drive(http, product_id, until) for _ in range(4)))
            times, scrapes = [], []
            while time.monotonic() < until + 10:
                times.append(time.monotonic())
                scrapes.append(await scrape(urls))
                await asyncio.sleep(3)
            await load
        plot(times, scrapes, args.out, window=5)
        print(f"wrote {args.out}")
    finally:
        await sup.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
