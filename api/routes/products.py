"""/products: the catalogue (ProductService) with stock levels (InventoryService)."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Query, status

from api.auth import AdminDep
from api.deps import GRPC_TIMEOUT, IdempotencyKey, PathId, StubsDep, created_id_for
from api.models import NO_NUL_PATTERN, ProductCreate, ProductPublic, error_responses
from api.rate_limits import RateLimited
from core.messages import initial_stock_key
from proto.shop.v1 import inventory_pb2, product_pb2

router = APIRouter(prefix="/products", tags=["products"])


def _public(p: product_pb2.Product, stock: int) -> ProductPublic:
    return ProductPublic(
        id=p.id,
        sku=p.sku,
        name=p.name,
        description=p.description,
        price_cents=p.price_cents,
        stock=stock,
        category=p.category,
        active=p.active,
    )


async def _stock(stubs: StubsDep, product_ids: Iterable[str]) -> dict[str, int]:
    ids = list(product_ids)
    if not ids:
        return {}
    resp = await stubs.inventory.ListStock(
        inventory_pb2.ListStockRequest(product_ids=ids), timeout=GRPC_TIMEOUT
    )
    return {lvl.product_id: lvl.available for lvl in resp.levels}


@router.get("", response_model=list[ProductPublic], responses=error_responses(422, 502, 503))
async def list_products(
    stubs: StubsDep,
    category: str | None = Query(default=None, max_length=64, pattern=NO_NUL_PATTERN),
) -> list[ProductPublic]:
    """The catalogue, optionally one category; `stock` is what can be sold now."""
    resp = await stubs.product.ListProducts(
        product_pb2.ListProductsRequest(category=category or ""), timeout=GRPC_TIMEOUT
    )
    stock = await _stock(stubs, (p.id for p in resp.products))
    return [_public(p, stock.get(p.id, 0)) for p in resp.products]


@router.get(
    "/{product_id}", response_model=ProductPublic, responses=error_responses(404, 422, 502, 503)
)
async def get_product(product_id: PathId, stubs: StubsDep) -> ProductPublic:
    p = await stubs.product.GetProduct(
        product_pb2.GetProductRequest(id=product_id), timeout=GRPC_TIMEOUT
    )
    stock = await _stock(stubs, [p.id])
    return _public(p, stock.get(p.id, 0))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductPublic,
    responses=error_responses(401, 403, 409, 422, 429, 502, 503),
    dependencies=[RateLimited],
)
async def create_product(
    body: ProductCreate, _admin: AdminDep, stubs: StubsDep, idempotency_key: IdempotencyKey = None
) -> ProductPublic:
    """Creates a product and its initial stock; 409 when the SKU is taken (or the key was
    used for another SKU). With an `Idempotency-Key`, a retry answers 201 with the same
    product and its stock added once."""
    p = await stubs.product.CreateProduct(
        product_pb2.CreateProductRequest(
            id=created_id_for("product", idempotency_key),
            sku=body.sku,
            name=body.name,
            description=body.description,
            price_cents=body.price_cents,
            category=body.category,
        ),
        timeout=GRPC_TIMEOUT,
    )
    stock = 0
    if body.stock > 0:
        # Keyed on the product, so a retried initial stocking adds the units only once.
        level = await stubs.inventory.AdjustStock(
            inventory_pb2.AdjustStockRequest(
                product_id=p.id, delta=body.stock, idempotency_key=initial_stock_key(p.id)
            ),
            timeout=GRPC_TIMEOUT,
        )
        stock = level.available
    return _public(p, stock)
