from __future__ import annotations

import grpc
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.grpc_errors import translate
from core.messages import FailureReason, GetProductInput, ProductInfo
from proto.shop.v1 import product_pb2, product_pb2_grpc

RPC_TIMEOUT = 5.0


class ProductActivities:
    def __init__(self, stub: product_pb2_grpc.ProductServiceStub) -> None:
        self._stub = stub

    @activity.defn(name="get_product")
    async def get_product(self, inp: GetProductInput) -> ProductInfo:
        """Looks a product and its price up; PRODUCT_NOT_FOUND for unknown or inactive ones."""
        not_found = FailureReason.PRODUCT_NOT_FOUND.value
        try:
            p = await self._stub.GetProduct(
                product_pb2.GetProductRequest(id=inp.product_id), timeout=RPC_TIMEOUT
            )
        except grpc.aio.AioRpcError as err:
            raise translate(err, {grpc.StatusCode.NOT_FOUND: not_found}) from None
        if not p.active:
            raise ApplicationError(
                f"product {inp.product_id} is not for sale", type=not_found, non_retryable=True
            )
        return ProductInfo(id=p.id, sku=p.sku, name=p.name, price_cents=p.price_cents)
