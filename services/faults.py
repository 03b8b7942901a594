"""Chaos testing: make mutating RPCs fail with UNAVAILABLE at a given rate (off by default).

Half of the injected faults happen before the handler runs (nothing changed), half after
it committed (the change is there, the caller still sees UNAVAILABLE): the case that
idempotency keys exist for. Callers must retry either way and end up with one effect.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import grpc

from core.errors import Reason, Unavailable, abort_with
from services.common import Context

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]

log = logging.getLogger(__name__)

MUTATING = frozenset(
    {
        "/shop.v1.UserService/CreateUser",
        "/shop.v1.ProductService/CreateProduct",
        "/shop.v1.InventoryService/AdjustStock",
        "/shop.v1.InventoryService/ReserveStock",
        "/shop.v1.InventoryService/ReleaseStock",
        "/shop.v1.PaymentService/Charge",
        "/shop.v1.PaymentService/Refund",
        "/shop.v1.NotificationService/SendNotification",
    }
)

# Injected faults in this process, by "before" / "after".
INJECTED: Counter[str] = Counter()


# grpc.aio.ServerInterceptor is generic only in the type stubs: not subscriptable at run time.
class FaultInjector(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Fails mutating unary RPCs with probability `rate`, seeded for reproducible runs.

    Streaming RPCs (WatchStock, SyncInventory, BulkCreateProducts, StreamNotifications)
    pass through untouched: they report failures per message or row, not by status.
    """

    def __init__(self, rate: float, seed: int | None = None) -> None:
        self.rate = rate
        self._rng = random.Random(seed)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method not in MUTATING or handler.unary_unary is None:
            return handler  # reads and streaming RPCs: not faulted
        # An asyncio server's handlers are coroutines taking the asyncio context.
        inner = cast(Callable[[Any, Context], Awaitable[Any]], handler.unary_unary)

        async def faulty(request: Any, context: Context) -> Any:
            if self._rng.random() >= self.rate:
                return await inner(request, context)
            when = "after" if self._rng.random() < 0.5 else "before"
            if when == "after":
                await inner(request, context)  # a real error from the handler wins
            INJECTED[when] += 1
            log.warning("injected fault %s %s (%d so far)", when, method, sum(INJECTED.values()))
            await abort_with(context, Unavailable("injected fault", reason=Reason.INJECTED_FAULT))

        return grpc.unary_unary_rpc_method_handler(
            faulty,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
