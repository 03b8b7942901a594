"""Logs, traces and metrics of the shop's processes: each calls `setup` once at start.

- Logs: every record carries `trace_id` and `span_id` (empty outside a span);
  LOG_FORMAT=json writes one JSON object a line (python-json-logger).
- Traces: only when OTEL_EXPORTER_OTLP_ENDPOINT is set, OpenTelemetry exports this
  process's spans there over OTLP/HTTP through a batch processor (the standard `OTEL_*`
  variables apply). Unset, nothing is installed: the instrumentation helpers below are
  no-ops and the OpenTelemetry SDK is not even imported.
  The context travels in HTTP headers (FastAPI), Temporal headers (the SDK's
  `TracingInterceptor`, which creates no span while a workflow replays) and gRPC metadata,
  so one `POST /checkout` is one trace down to the charge's SQL.
- Metrics: Prometheus. The worker through the Temporal runtime (`worker_runtime`), the
  services through prometheus-client (`serve_metrics`, core.grpc_metrics), the API on its
  own `/metrics` (`instrument_app`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span
    from sqlalchemy import Engine
    from temporalio.client import Interceptor
    from temporalio.runtime import Runtime

log = logging.getLogger(__name__)

API, WORKER, SERVICES = "shop-api", "shop-worker", "shop-services"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_provider: TracerProvider | None = None
# opentelemetry.trace.get_current_span once tracing is on. Held here so that the log filter
# imports nothing: it also runs inside the workflow sandbox (workflow.logger), where a
# first import of opentelemetry would be re-imported under the sandbox's restrictions.
_current_span: Callable[[], Span] | None = None


def setup(service: str, settings: Settings) -> None:
    """Logging for `settings`, and tracing as `service` when an OTLP endpoint is set."""
    if settings.otel_exporter_otlp_endpoint and _provider is None:
        _start_tracing(service)
    setup_logging(settings)
    if _provider is not None:
        log.info("tracing on: %s exports spans over OTLP/HTTP", service)


def tracing() -> bool:
    """Whether this process exports spans."""
    return _provider is not None


def shutdown() -> None:
    """Exports the spans still buffered. Call before the process exits (the worker ends
    with os._exit, which runs no atexit hook)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


# --- logs ---------------------------------------------------------------------------------


class TraceIds(logging.Filter):
    """Puts the current span's `trace_id` and `span_id` (hex) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace_id = span_id = ""
        if _current_span is not None:
            ctx = _current_span().get_span_context()
            if ctx.is_valid:
                trace_id, span_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
        record.trace_id, record.span_id = trace_id, span_id
        return True


def setup_logging(settings: Settings) -> None:
    """One handler on the root logger: text (LOG_FORMAT=text) or one JSON object a line."""
    handler = logging.StreamHandler()
    handler.addFilter(TraceIds())
    formatter: logging.Formatter
    if settings.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s %(span_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    elif _provider is not None:
        formatter = logging.Formatter(f"{TEXT_FORMAT} [trace %(trace_id)s span %(span_id)s]")
    else:
        formatter = logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)


# --- traces -------------------------------------------------------------------------------


def _start_tracing(service: str) -> None:
    global _provider, _current_span
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
    )
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (and the other OTEL_* variables).
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider, _current_span = provider, trace.get_current_span
    # Both patch grpc.aio's factories: every channel and server made from now on is traced.
    GrpcAioInstrumentorClient().instrument()  # type: ignore[no-untyped-call]
    GrpcAioInstrumentorServer().instrument()  # type: ignore[no-untyped-call]


def traced(engine: Engine) -> Engine:
    """The engine, its SQL statements traced (a span each) when tracing is on."""
    if _provider is None:
        return engine
    from opentelemetry import metrics, trace
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    # SQLAlchemyInstrumentor().instrument(engine=...) works once per process; the engine
    # tracer it builds is what each of our engines needs.
    name = "opentelemetry.instrumentation.sqlalchemy"
    usage = metrics.get_meter(name).create_up_down_counter("db.client.connections.usage")
    EngineTracer(trace.get_tracer(name), engine, usage)  # type: ignore[no-untyped-call]
    return engine


def client_interceptors() -> list[Interceptor]:
    """The Temporal client's (and so the worker's) interceptors: Temporal's tracing when on."""
    if _provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


# --- metrics ------------------------------------------------------------------------------


def instrument_app(app: FastAPI) -> None:
    """`GET /metrics` (Prometheus: requests, latency by route template and status) on the
    app, and FastAPI's tracing when on."""
    from fastapi.responses import PlainTextResponse
    from prometheus_client import CollectorRegistry
    from prometheus_fastapi_instrumentator import Instrumentator

    # A registry per app: the tests build many apps in one process.
    instrumentator = Instrumentator(registry=CollectorRegistry(), excluded_handlers=["/metrics"])
    # Documented as text/plain: the Prometheus exposition format, not JSON.
    instrumentator.instrument(app).expose(
        app, tags=["health"], response_class=PlainTextResponse, summary="Prometheus metrics"
    )
    if _provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="/metrics,/health")


def worker_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime exporting the SDK's and the shop's metrics on
    METRICS_HOST:METRICS_PORT_WORKER (None when the port is 0 or taken: the worker then
    runs on the default runtime, without metrics, and says so)."""
    if not settings.metrics_port_worker:
        return None
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    from core.shop_metrics import HISTOGRAM_BUCKETS

    address = f"{settings.metrics_host}:{settings.metrics_port_worker}"
    config = PrometheusConfig(
        bind_address=address,
        counters_total_suffix=True,
        durations_as_seconds=True,
        histogram_bucket_overrides=dict(HISTOGRAM_BUCKETS),
    )
    try:
        runtime = Runtime(telemetry=TelemetryConfig(metrics=config))
    except Exception as err:  # noqa: BLE001 - the bridge raises a plain RuntimeError
        log.warning("worker metrics off: cannot serve %s: %s", address, err)
        return None
    log.info("worker metrics on http://%s/metrics", address)
    return runtime


def serve_metrics(host: str, port: int, registry: Any = None) -> None:
    """prometheus-client's /metrics server in a daemon thread (port 0: none). A taken port
    is logged, not fatal: metrics must not keep the services from serving."""
    if not port:
        return
    from prometheus_client import REGISTRY, start_http_server

    try:
        start_http_server(port, addr=host, registry=registry or REGISTRY)
    except OSError as err:
        log.warning("metrics off: cannot serve %s:%d: %s", host, port, err)
        return
    log.info("metrics on http://%s:%d/metrics", host, port)
