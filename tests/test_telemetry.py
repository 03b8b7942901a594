"""Telemetry of the real processes (tests/harness.py `running_stack`, started once here):
one checkout is one trace across shop-api, shop-worker and shop-services; replaying a
workflow emits no span; the three /metrics endpoints count a known mix of orders exactly;
every metric the dashboard and the alert rules query is really exported.

The spans go to an in-process OTLP/HTTP receiver (benchmarks/otlp_sink.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from temporalio.api.enums.v1 import EventType
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

import worker
from benchmarks.otlp_sink import OtlpSink, Span
from core.secrets import resolved_admin_password
from tests.api_fixtures import (
    DECLINED_CARD,
    FLAKY_CARD,
    GOOD_CARD,
    PASSWORD,
    SHIPPING_ADDRESS,
    bearer,
    log_in,
)
from tests.conftest import CONVERTER
from tests.harness import RunningStack, free_port, running_stack, uid

pytestmark = pytest.mark.timeout(180)

SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
PRICE = 1999
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Shop:
    stack: RunningStack
    sink: OtlpSink
    http: httpx.AsyncClient
    customer: dict[str, str]
    product_id: str

    async def checkout(self, card: str, quantity: int = 2) -> str:
        body = {
            "items": [{"product_id": self.product_id, "quantity": quantity}],
            "payment": {"card_number": card},
            "shipping_address": SHIPPING_ADDRESS,
        }
        r = await self.http.post(
            "/checkout", json=body, headers={"Idempotency-Key": uid()} | self.customer
        )
        assert r.status_code == 202, r.text
        return str(r.json()["order_id"])

    async def until(self, order_id: str, status: str) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while True:
            r = await self.http.get(f"/orders/{order_id}", headers=self.customer)
            if r.status_code == 200 and r.json()["status"] == status:
                return dict(r.json())
            assert time.monotonic() < deadline, f"order {order_id} not {status}: {r.text}"
            await asyncio.sleep(0.2)

    def metrics_urls(self) -> dict[str, str]:
        s = self.stack.settings
        return {
            "api": f"{self.stack.api_url}/metrics",
            "worker": f"http://127.0.0.1:{s.metrics_port_worker}/metrics",
            "services": f"http://127.0.0.1:{s.metrics_port_services}/metrics",
        }

    async def scrape(self) -> dict[str, Samples]:
        """Every sample of each endpoint, by (name, labels)."""
        scraped: dict[str, Samples] = {}
        async with httpx.AsyncClient(timeout=10) as http:
            for name, url in self.metrics_urls().items():
                r = await http.get(url)
                assert r.status_code == 200, (url, r.text[:300])
                scraped[name] = {
                    (s.name, frozenset(s.labels.items())): s.value
                    for family in text_string_to_metric_families(r.text)
                    for s in family.samples
                }
        return scraped


@pytest.fixture(scope="module")
async def shop(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Shop]:
    address = dev_env.client.service_client.config.target_host
    with pytest.MonkeyPatch.context() as env, OtlpSink() as sink:
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")  # the children export every 0.2 s
        async with running_stack(
            address,
            tmp_path_factory.mktemp("telemetry"),
            otel_exporter_otlp_endpoint=sink.endpoint,
            metrics_port_worker=free_port(),
            metrics_port_services=free_port(),
            log_format="json",
        ) as stack:
            async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
                email = f"{uid()}@example.com"
                r = await http.post(
                    "/users", json={"email": email, "name": "T", "password": PASSWORD}
                )
                assert r.status_code == 201, r.text
                customer = bearer(await log_in(http, email, PASSWORD))
                admin_password = resolved_admin_password(stack.settings)
                admin = bearer(await log_in(http, stack.settings.admin_email, admin_password))
                product = {
                    "sku": uid("SKU-"), "name": "Gauge", "description": "telemetry",
                    "price_cents": PRICE, "stock": 100, "category": "telemetry",
                }  # fmt: skip
                r = await http.post("/products", json=product, headers=admin)
                assert r.status_code == 201, r.text
                yield Shop(stack, sink, http, customer, r.json()["id"])


# --- traces -------------------------------------------------------------------------------


async def spans_until(sink: OtlpSink, done: Callable[[list[Span]], bool]) -> list[Span]:
    """The spans received, once `done` says the ones awaited are there (exports are batched)."""
    deadline = time.monotonic() + 30
    while not done(spans := sink.snapshot()):
        assert time.monotonic() < deadline, sorted({(s.service, s.name) for s in spans})
        await asyncio.sleep(0.2)
    return spans


def is_sql(span: Span) -> bool:
    return "db.system" in span.attributes or "db.system.name" in span.attributes


def ancestors(span: Span, by_id: dict[str, Span]) -> list[Span] | None:
    """The span and its parents up to the root, in that order (None while one is missing)."""
    chain = [span]
    while chain[-1].parent_id:
        parent = by_id.get(chain[-1].parent_id)
        if parent is None:
            return None
        chain.append(parent)
    return chain


async def test_one_checkout_is_one_trace_across_the_three_processes(shop: Shop) -> None:
    order_id = await shop.checkout(GOOD_CARD)
    await shop.until(order_id, "PAID")
    workflow_id = f"order-{order_id}"

    def charge_sql(spans: list[Span]) -> list[Span]:
        by_id = {s.span_id: s for s in spans}
        charges = {
            s.span_id
            for s in spans
            if s.service == "shop-services" and s.name.endswith("PaymentService/Charge")
        }
        return [s for s in spans if is_sql(s) and s.parent_id in charges and s.parent_id in by_id]

    def arrived(spans: list[Span]) -> bool:
        """The checkout's spans are in, from the API's down to the charge's SQL."""
        checkout = [s for s in spans if s.attributes.get("temporalWorkflowID") == workflow_id]
        by_id = {s.span_id: s for s in spans}
        return bool(checkout) and any(
            s.trace_id == checkout[0].trace_id and ancestors(s, by_id) is not None
            for s in charge_sql(spans)
        )

    spans = await spans_until(shop.sink, arrived)
    start = next(s for s in spans if s.attributes.get("temporalWorkflowID") == workflow_id)
    trace = [s for s in spans if s.trace_id == start.trace_id]
    by_id = {s.span_id: s for s in trace}
    assert {s.service for s in trace} == {"shop-api", "shop-worker", "shop-services"}

    # The charge's SQL, up to the root: every hop of the request, in parent-child order.
    sql = next(s for s in charge_sql(trace) if ancestors(s, by_id))
    path = ancestors(sql, by_id) or []
    chain = [(s.service, s.name) for s in path]
    expected = [
        ("shop-services", "/shop.v1.PaymentService/Charge"),  # gRPC server
        ("shop-worker", "/shop.v1.PaymentService/Charge"),  # gRPC client
        ("shop-worker", "RunActivity:charge"),
        ("shop-worker", "StartActivity:charge"),  # the workflow's command
        ("shop-api", "StartWorkflow:PlaceOrder"),
        ("shop-api", "POST /checkout"),  # FastAPI's server span: the root
    ]
    positions = [chain.index(hop) for hop in expected if hop in chain]
    assert len(positions) == len(expected) and positions == sorted(positions), "\n".join(
        map(str, chain)
    )
    assert chain[-1] == ("shop-api", "POST /checkout") and not path[-1].parent_id
    # The workflow's own span (Temporal's TracingInterceptor ends it at once) is a sibling
    # of its steps, under the API's StartWorkflow.
    run = next(s for s in trace if s.name == "RunWorkflow:PlaceOrder")
    assert (run.service, by_id[run.parent_id].name) == ("shop-worker", "StartWorkflow:PlaceOrder")
    kinds = {(s.service, s.name): s.kind for s in trace}
    assert kinds[expected[0]] == SERVER and kinds[expected[1]] == CLIENT
    # Each workflow step is one span, however many workflow tasks (and replays) it took.
    names = [s.name for s in trace]
    for once in ("RunWorkflow:PlaceOrder", "StartActivity:charge", "RunActivity:charge"):
        assert names.count(once) == 1, (once, names)


async def test_replaying_the_workflow_emits_no_span(
    shop: Shop, dev_env: WorkflowEnvironment
) -> None:
    order_id = await shop.checkout(GOOD_CARD)
    await shop.until(order_id, "PAID")
    handle = dev_env.client.get_workflow_handle(f"order-{order_id}")
    # A history that ends with a workflow task still to run would have the replayer run that
    # task for real: take the history of the order waiting to be shipped (its last command
    # the fulfilment deadline's timer), as a worker whose cache lost it replays it.
    idle = (EventType.EVENT_TYPE_TIMER_STARTED,)
    deadline = time.monotonic() + 30
    while (history := await handle.fetch_history()).events[-1].event_type not in idle:
        assert time.monotonic() < deadline, history.events[-1]
        await asyncio.sleep(0.2)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    replayer = Replayer(
        workflows=list(worker.WORKFLOWS),
        data_converter=CONVERTER,
        workflow_runner=worker.WORKFLOW_RUNNER,
        interceptors=[TracingInterceptor(provider.get_tracer(__name__))],
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None
    assert [s.name for s in exporter.get_finished_spans()] == []


# --- metrics ------------------------------------------------------------------------------


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def test_the_metrics_count_a_known_mix_of_orders_exactly(shop: Shop) -> None:
    before = await shop.scrape()
    paid = await shop.checkout(GOOD_CARD)
    declined = await shop.checkout(DECLINED_CARD)
    out_of_stock = await shop.checkout(GOOD_CARD, quantity=1000)
    flaky = await shop.checkout(FLAKY_CARD)  # two transient errors, then captured
    cancelled = await shop.checkout(GOOD_CARD)
    await shop.until(cancelled, "PAID")
    r = await shop.http.post(
        f"/orders/{cancelled}/cancel", json={"reason": "changed my mind"}, headers=shop.customer
    )
    assert r.status_code in (200, 202), r.text
    for order_id, status in (
        (paid, "PAID"),
        (declined, "FAILED"),
        (out_of_stock, "FAILED"),
        (flaky, "PAID"),
        (cancelled, "CANCELLED"),
    ):
        await shop.until(order_id, status)

    expected: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {
        ("worker", "shop_orders_placed_total", ()): 5,
        ("worker", "shop_orders_finished_total", (("status", "FAILED"),)): 2,
        ("worker", "shop_orders_finished_total", (("reason", "PAYMENT_DECLINED"),)): 1,
        ("worker", "shop_orders_finished_total", (("reason", "OUT_OF_STOCK"),)): 1,
        ("worker", "shop_orders_finished_total", (("status", "CANCELLED"),)): 1,
        ("worker", "shop_orders_finished_total", (("reason", "CANCELLED_BY_CUSTOMER"),)): 1,
        ("worker", "shop_payments_total", (("outcome", "captured"),)): 3,
        ("worker", "shop_payments_total", (("outcome", "declined"),)): 1,
        ("worker", "shop_payments_total", (("outcome", "refunded"),)): 1,
        ("worker", "shop_payments_total", (("outcome", "error"),)): 2,
        ("worker", "shop_compensations_total", (("step", "release_stock"),)): 2,
        ("worker", "shop_compensations_total", (("step", "refund"),)): 1,
        ("worker", "shop_order_value_cents_count", ()): 3,
        ("worker", "shop_order_value_cents_sum", ()): 3 * 2 * PRICE,
        ("worker", "shop_order_value_cents_bucket", (("le", "5000"),)): 3,
        ("worker", "shop_order_value_cents_bucket", (("le", "2500"),)): 0,
        ("worker", "shop_checkout_seconds_count", (("status", "PAID"),)): 3,
        ("worker", "shop_checkout_seconds_count", (("status", "FAILED"),)): 2,
        ("services", "grpc_server_handled_total", (("grpc_method", "Charge"),)): 6,
        (
            "services",
            "grpc_server_handled_total",
            (("grpc_method", "Charge"), ("grpc_code", "OK")),
        ): 3,
        ("services", "grpc_server_handling_seconds_count", (("grpc_method", "Charge"),)): 6,
        ("api", "http_requests_total", (("handler", "/checkout"), ("status", "2xx"))): 5,
        ("api", "http_request_duration_seconds_count", (("handler", "/checkout"),)): 5,
    }

    def deltas(after: dict[str, Samples]) -> dict[Any, float]:
        return {
            key: total(after[where], name, **dict(labels))
            - total(before[where], name, **dict(labels))
            for key in expected
            for where, name, labels in [key]
        }

    # The last metric may be recorded a moment after the order's status is saved.
    deadline = time.monotonic() + 10
    while (got := deltas(await shop.scrape())) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
    assert got == expected
    # Checkout durations are real durations: a positive sum for five checkouts.
    after = await shop.scrape()
    assert total(after["worker"], "shop_checkout_seconds_sum") > total(
        before["worker"], "shop_checkout_seconds_sum"
    )


async def test_json_logs_carry_the_trace(shop: Shop) -> None:
    lines = [
        json.loads(line) for line in shop.stack.log("api").splitlines() if line.startswith("{")
    ]
    assert lines, shop.stack.log("api")[-2000:]
    assert all(
        {"time", "level", "logger", "message", "trace_id", "span_id"} <= set(e) for e in lines
    )
    # Requests are logged inside their spans: some lines carry a trace id of 32 hex digits.
    traced = [e["trace_id"] for e in lines if e["trace_id"]]
    assert traced and all(len(t) == 32 for t in traced), lines[-5:]


# --- the dashboard and the alert rules query what the processes export ---------------------

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
PROMQL_WORDS |= {"and", "or", "unless", "inf", "nan"}
# Made by Prometheus itself for each scrape, not by the processes.
SYNTHETIC = {"up"}


def queried_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values may hold anything
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        rest = expr[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in PROMQL_WORDS:
            continue  # a function or an operator
        names.add(match.group())
    return names


def dashboard_and_alert_queries() -> dict[str, str]:
    """Where each query is -> the query."""
    queries = {}
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                queries[f"{path.name}: {panel['title']} {target['refId']}"] = target["expr"]
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            queries[f"alert {rule['alert']}"] = rule["expr"]
    return queries


def test_queried_metrics_reads_names_not_functions_or_labels() -> None:
    expr = 'histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y(z)"}[5m]))) / b or vector(0)'
    assert queried_metrics(expr) == {"a_bucket", "b"}


async def test_every_metric_the_dashboard_and_the_alerts_query_is_exported(shop: Shop) -> None:
    """After the orders of the tests above (a failed activity among them), scraped live."""
    scraped = await shop.scrape()
    exported = {name for samples in scraped.values() for name, _ in samples} | SYNTHETIC
    queries = dashboard_and_alert_queries()
    assert len(queries) > 15
    missing = {
        where: sorted(queried_metrics(expr) - exported)
        for where, expr in queries.items()
        if queried_metrics(expr) - exported
    }
    assert not missing, missing
