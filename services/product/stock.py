"""How the product service reaches inventory, which owns the stock and the low-stock events.

The product servicer sets a new product's initial stock and hands inventory its copy of each
product's low_stock_threshold through an `Inventory`: served in one process with inventory,
the inventory servicer itself; served alone, a RemoteInventory calling InventoryService at
GRPC_TARGET. Both raise DomainErrors.
"""

from __future__ import annotations

from typing import Protocol

import grpc

from core.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    reason_of,
)
from core.grpc_client import Stubs
from proto.shop.v1 import inventory_pb2

# Who, on the movements an import records.
IMPORT_ACTOR = "import"


class Inventory(Protocol):
    async def adjust(
        self,
        product_id: str,
        delta: int,
        idempotency_key: str,
        reason: str = "",
        actor: str = "",
    ) -> int:
        """Adds `delta` units once per `idempotency_key`; the level after it."""
        ...

    async def set_threshold(self, product_id: str, threshold: int) -> None:
        """Inventory's copy of the product's low_stock_threshold."""
        ...


_ERRORS: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.NOT_FOUND: NotFound,
}
_TIMEOUT = 10.0


class RemoteInventory:
    """An Inventory calling InventoryService at `target` (over TLS with `credentials`,
    core.grpc_client.channel_credentials). The channel's retry policy
    (core.grpc_client) repeats AdjustStock on UNAVAILABLE with the same idempotency key,
    so a retry never adds twice.

    The channel is opened on first use, inside the server's event loop.
    """

    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None = None) -> None:
        self.target = target
        self.credentials = credentials
        self._stubs: Stubs | None = None

    def _inventory(self) -> Stubs:
        if self._stubs is None:
            self._stubs = Stubs.open(self.target, self.credentials)
        return self._stubs

    async def adjust(
        self,
        product_id: str,
        delta: int,
        idempotency_key: str,
        reason: str = "",
        actor: str = "",
    ) -> int:
        request = inventory_pb2.AdjustStockRequest(
            product_id=product_id,
            delta=delta,
            idempotency_key=idempotency_key,
            reason=reason,
            actor=actor,
        )
        try:
            level: inventory_pb2.StockLevel = await self._inventory().inventory.AdjustStock(
                request, timeout=_TIMEOUT
            )
        except grpc.aio.AioRpcError as err:
            raise self._error(err) from None
        return level.available

    async def set_threshold(self, product_id: str, threshold: int) -> None:
        request = inventory_pb2.SetLowStockThresholdRequest(
            product_id=product_id, low_stock_threshold=threshold
        )
        try:
            await self._inventory().inventory.SetLowStockThreshold(request, timeout=_TIMEOUT)
        except grpc.aio.AioRpcError as err:
            raise self._error(err) from None

    def _error(self, err: grpc.aio.AioRpcError) -> DomainError:
        if err.code() == grpc.StatusCode.UNIMPLEMENTED:
            return Unavailable(
                f"no InventoryService at {self.target} (set GRPC_TARGET)",
                reason="INVENTORY_UNAVAILABLE",
            )
        kind = _ERRORS.get(err.code())
        if kind is not None:
            return kind(err.details() or str(err.code()), reason_of(err))
        return Unavailable(
            f"inventory at {self.target}: {err.code().name} {err.details()}",
            reason="INVENTORY_UNAVAILABLE",
        )

    async def close(self) -> None:
        if self._stubs is not None:
            await self._stubs.close()
            self._stubs = None
