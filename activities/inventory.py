from __future__ import annotations

import grpc
from temporalio import activity

from activities.rpc import RPC_TIMEOUT, to_application_error
from core.messages import ReleaseStockInput, ReserveStockInput
from proto.shop.v1 import inventory_pb2, inventory_pb2_grpc


class InventoryActivities:
    def __init__(self, stub: inventory_pb2_grpc.InventoryServiceAsyncStub) -> None:
        self._stub = stub

    @activity.defn(name="reserve_stock")
    async def reserve_stock(self, inp: ReserveStockInput) -> None:
        """Reserves every item of the order at once (idempotent per order); OUT_OF_STOCK if not."""
        req = inventory_pb2.ReserveStockRequest(
            order_id=inp.order_id,
            lines=[
                inventory_pb2.ReservationLine(product_id=i.product_id, quantity=i.quantity)
                for i in inp.items
            ],
        )
        try:
            await self._stub.ReserveStock(req, timeout=RPC_TIMEOUT)
        except grpc.aio.AioRpcError as err:
            raise to_application_error(err) from None

    @activity.defn(name="release_stock")
    async def release_stock(self, inp: ReleaseStockInput) -> None:
        """Compensation of reserve_stock: returns the order's units (a no-op when it holds none)."""
        try:
            await self._stub.ReleaseStock(
                inventory_pb2.ReleaseStockRequest(order_id=inp.order_id), timeout=RPC_TIMEOUT
            )
        except grpc.aio.AioRpcError as err:
            raise to_application_error(err) from None
