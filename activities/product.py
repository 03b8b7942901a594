from __future__ import annotations

import grpc
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.rpc import RPC_TIMEOUT, to_application_error
from core.errors import Reason
from core.messages import GetProductInput, ProductInfo
from proto.shop.v1 import product_pb2, product_pb2_grpc


class ProductActivities:
    def __init__(self, stub: product_pb2_grpc.ProductServiceAsyncStub) -> None:
        self._stub = stub

    @activity.defn(name="get_product")
    async def get_product(self, inp: GetProductInput) -> ProductInfo:
        """Looks a product and its price up; PRODUCT_NOT_FOUND for unknown or inactive ones."""
        try:
            p = await self._stub.GetProduct(
                product_pb2.GetProductRequest(id=inp.product_id), timeout=RPC_TIMEOUT
            )
        except grpc.aio.AioRpcError as err:
            raise to_application_error(err) from None
        if not p.active:
            raise ApplicationError(
                f"product {inp.product_id} is not for sale",
                type=Reason.PRODUCT_NOT_FOUND,
                non_retryable=True,
            )
        return ProductInfo(id=p.id, sku=p.sku, name=p.name, price_cents=p.price_cents)
