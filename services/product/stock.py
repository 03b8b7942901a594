"""How the product service sets a new product's initial stock, which inventory owns.

Served in one process with inventory, the product servicer calls the inventory servicer's
`adjust` directly; served alone, it calls InventoryService.AdjustStock at GRPC_TARGET.
Both take (product_id, delta, idempotency_key), return the level, raise DomainErrors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc

from core.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    reason_of,
)
from proto.shop.v1 import inventory_pb2, inventory_pb2_grpc

log = logging.getLogger(__name__)

StockAdder = Callable[[str, int, str], Awaitable[int]]

_ERRORS: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.NOT_FOUND: NotFound,
}
_ATTEMPTS = 4
_TIMEOUT = 10.0


class RemoteInventory:
    """A StockAdder calling InventoryService at `target`; retries transient failures.

    The channel is opened on first use, inside the server's event loop.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self._channel: grpc.aio.Channel | None = None
        self._stub: inventory_pb2_grpc.InventoryServiceStub | None = None

    async def __call__(self, product_id: str, delta: int, idempotency_key: str) -> int:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.target)
            self._stub = inventory_pb2_grpc.InventoryServiceStub(self._channel)
        request = inventory_pb2.AdjustStockRequest(
            product_id=product_id, delta=delta, idempotency_key=idempotency_key
        )
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                level = await self._stub.AdjustStock(request, timeout=_TIMEOUT)
                return level.available
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                    raise Unavailable(
                        f"no InventoryService at {self.target} (set GRPC_TARGET)",
                        reason="INVENTORY_UNAVAILABLE",
                    ) from None
                kind = _ERRORS.get(err.code())
                if kind is not None:
                    raise kind(err.details() or str(err.code()), reason_of(err)) from None
                if attempt == _ATTEMPTS:
                    raise Unavailable(
                        f"inventory at {self.target}: {err.code().name} {err.details()}",
                        reason="INVENTORY_UNAVAILABLE",
                    ) from None
                # Same idempotency key on every attempt: a retry never adds twice.
                log.info("AdjustStock at %s failed (%s), retrying", self.target, err.code().name)
                await asyncio.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None
