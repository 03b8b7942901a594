"""gRPC server metrics on prometheus-client's instruments, with the names and labels of
go-grpc-prometheus (what Grafana's gRPC dashboards query): started and handled RPCs by
service, method and status code, and handling latency per method.

py-grpc-prometheus does this for the synchronous server only and is unmaintained, and
OpenTelemetry's gRPC instrumentation records no server metrics in Python: hence this small
interceptor for grpc.aio, on top of the standard client library's counters and histogram.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]

LABELS = ("grpc_type", "grpc_service", "grpc_method")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServerMetrics:
    """The instruments, registered once in `registry` (one set per process)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.started = Counter(
            "grpc_server_started", "RPCs started on the server.", LABELS, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by status code.",
            (*LABELS, "grpc_code"),
            registry=registry,
        )
        self.seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time the server took to handle an RPC.",
            LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


_default: ServerMetrics | None = None


def default_metrics() -> ServerMetrics:
    """The process's instruments in prometheus-client's global registry."""
    global _default
    if _default is None:
        _default = ServerMetrics()
    return _default


def _code(context: grpc.aio.ServicerContext[Any, Any], err: BaseException | None) -> str:
    """The RPC's final status code: the one the handler set or aborted with, else OK for a
    normal return, CANCELLED for a cancelled handler and UNKNOWN for an unexpected error."""
    code = context.code()
    if isinstance(code, grpc.StatusCode) and (code != grpc.StatusCode.OK or err is None):
        return code.name
    if err is None:
        return "OK"
    return "CANCELLED" if isinstance(err, asyncio.CancelledError) else "UNKNOWN"


# grpc.aio.ServerInterceptor is generic only in the type stubs: not subscriptable at run time.
class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Counts and times every RPC of the server, unary and streaming."""

    def __init__(self, metrics: ServerMetrics | None = None) -> None:
        self.metrics = metrics or default_metrics()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        m = self.metrics

        def labels(kind: str) -> tuple[str, str, str]:
            return kind, service, method

        async def unary(inner: Any, kind: str, arg: Any, context: Any) -> Any:
            start = _begin(m, labels(kind))
            err: BaseException | None = None
            try:
                return await inner(arg, context)
            except BaseException as e:
                err = e
                raise
            finally:
                _end(m, labels(kind), start, _code(context, err))

        async def streaming(inner: Any, kind: str, arg: Any, context: Any) -> AsyncIterator[Any]:
            start = _begin(m, labels(kind))
            err: BaseException | None = None
            try:
                result = inner(arg, context)
                if hasattr(result, "__aiter__"):
                    async for item in result:
                        yield item
                else:  # a handler that writes with context.write and returns None
                    await result
            except BaseException as e:
                err = e
                raise
            finally:
                _end(m, labels(kind), start, _code(context, err))

        def wrap(inner: Any, kind: str, stream_out: bool) -> Any:
            # grpc.aio awaits a behavior only if it is a coroutine (or async generator)
            # function: a lambda returning a coroutine would be taken for a plain function.
            if stream_out:

                async def stream_behavior(arg: Any, context: Any) -> AsyncIterator[Any]:
                    async for item in streaming(inner, kind, arg, context):
                        yield item

                return stream_behavior

            async def unary_behavior(arg: Any, context: Any) -> Any:
                return await unary(inner, kind, arg, context)

            return unary_behavior

        options = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            behavior = wrap(handler.unary_unary, "unary", False)
            return grpc.unary_unary_rpc_method_handler(behavior, **options)
        if handler.unary_stream is not None:
            behavior = wrap(handler.unary_stream, "server_stream", True)
            return grpc.unary_stream_rpc_method_handler(behavior, **options)
        if handler.stream_unary is not None:
            behavior = wrap(handler.stream_unary, "client_stream", False)
            return grpc.stream_unary_rpc_method_handler(behavior, **options)
        behavior = wrap(handler.stream_stream, "bidi_stream", True)
        return grpc.stream_stream_rpc_method_handler(behavior, **options)


def _begin(m: ServerMetrics, labels: tuple[str, str, str]) -> float:
    m.started.labels(*labels).inc()
    return time.perf_counter()


def _end(m: ServerMetrics, labels: tuple[str, str, str], start: float, code: str) -> None:
    m.seconds.labels(*labels).observe(time.perf_counter() - start)
    m.handled.labels(*labels, code).inc()
