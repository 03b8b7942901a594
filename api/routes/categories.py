"""/categories: the catalogue's categories with how many active products each has."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import GRPC_TIMEOUT, StubsDep
from api.models import CategoryPublic, error_responses
from proto.shop.v1 import product_pb2

router = APIRouter(prefix="/categories", tags=["products"])


@router.get("", response_model=list[CategoryPublic], responses=error_responses(502, 503))
async def list_categories(stubs: StubsDep) -> list[CategoryPublic]:
    """Every category of an active product, by name, with its number of active products."""
    resp = await stubs.product.ListCategories(
        product_pb2.ListCategoriesRequest(), timeout=GRPC_TIMEOUT
    )
    return [CategoryPublic(name=c.name, products=c.products) for c in resp.categories]
