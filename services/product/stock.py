"""How the product service sets a new product's initial stock, which inventory owns.

Served in one process with inventory, the product servicer calls the inventory servicer's
`adjust` directly; served alone, it calls InventoryService.AdjustStock at GRPC_TARGET.
Both take (product_id, delta, idempotency_key), return the level, raise DomainErrors.
"""

from __future__ import annotations

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
from core.grpc_client import Stubs
from proto.shop.v1 import inventory_pb2

StockAdder = Callable[[str, int, str], Awaitable[int]]

_ERRORS: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.NOT_FOUND: NotFound,
}
_TIMEOUT = 10.0


class RemoteInventory:
    """A StockAdder calling InventoryService at `target` (over TLS with `credentials`,
    core.grpc_client.channel_credentials). The channel's retry policy
    (core.grpc_client) repeats AdjustStock on UNAVAILABLE with the same idempotency key,
    so a retry never adds twice.

    The channel is opened on first use, inside the server's event loop.
    """

    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None = None) -> None:
        self.target = target
        self.credentials = credentials
        self._stubs: Stubs | None = None

    async def __call__(self, product_id: str, delta: int, idempotency_key: str) -> int:
        if self._stubs is None:
            self._stubs = Stubs.open(self.target, self.credentials)
        request = inventory_pb2.AdjustStockRequest(
            product_id=product_id, delta=delta, idempotency_key=idempotency_key
        )
        try:
            level: inventory_pb2.StockLevel = await self._stubs.inventory.AdjustStock(
                request, timeout=_TIMEOUT
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise Unavailable(
                    f"no InventoryService at {self.target} (set GRPC_TARGET)",
                    reason="INVENTORY_UNAVAILABLE",
                ) from None
            kind = _ERRORS.get(err.code())
            if kind is not None:
                raise kind(err.details() or str(err.code()), reason_of(err)) from None
            raise Unavailable(
                f"inventory at {self.target}: {err.code().name} {err.details()}",
                reason="INVENTORY_UNAVAILABLE",
            ) from None
        return level.available

    async def close(self) -> None:
        if self._stubs is not None:
            await self._stubs.close()
            self._stubs = None
