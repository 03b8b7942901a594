"""/products: the catalogue (ProductService) with stock levels (InventoryService)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Annotated

from fastapi import APIRouter, File, Query, Request, Response, UploadFile, status

from api.auth import AdminDep, OptionalCallerDep
from api.deps import GRPC_TIMEOUT, IdempotencyKey, PathId, StubsDep, created_id_for
from api.errors import ApiError
from api.models import (
    NO_NUL_PATTERN,
    ImportFailurePublic,
    ImportResultPublic,
    ProductCreate,
    ProductPublic,
    ProductUpdate,
    StockAdjustmentCreate,
    StockMovementPublic,
    error_responses,
)
from api.product_csv import CsvRow, parse
from api.rate_limits import RateLimited
from core.messages import INITIAL_STOCK_REASON, initial_stock_key
from proto.shop.v1 import inventory_pb2, product_pb2

router = APIRouter(prefix="/products", tags=["products"])

Q_MAX_LENGTH = 100
LIMIT_DEFAULT = 50
LIMIT_MAX = 200
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
# An import of 100,000 rows streams for a while: its own deadline, not a request's.
IMPORT_TIMEOUT = 600.0


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
        low_stock_threshold=p.low_stock_threshold,
        low_stock=stock < p.low_stock_threshold,
    )


def _actor(caller: AdminDep) -> str:
    return f"user:{caller.sub}"


async def _stock(stubs: StubsDep, product_ids: Iterable[str]) -> dict[str, int]:
    ids = list(product_ids)
    if not ids:
        return {}
    resp = await stubs.inventory.ListStock(
        inventory_pb2.ListStockRequest(product_ids=ids), timeout=GRPC_TIMEOUT
    )
    return {lvl.product_id: lvl.available for lvl in resp.levels}


async def _product(stubs: StubsDep, product_id: str) -> ProductPublic:
    p = await stubs.product.GetProduct(
        product_pb2.GetProductRequest(id=product_id), timeout=GRPC_TIMEOUT
    )
    stock = await _stock(stubs, [p.id])
    return _public(p, stock.get(p.id, 0))


# --- the cursor: the service's page token, signed so that a forged one is refused --------


def _signature(secret: str, token: str) -> str:
    mac = hmac.new(secret.encode(), b"products-cursor:" + token.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:18]).decode()


def _cursor(secret: str, page_token: str) -> str:
    return f"{page_token}.{_signature(secret, page_token)}"


def _page_token(secret: str, cursor: str) -> str:
    token, _, signature = cursor.rpartition(".")
    if not hmac.compare_digest(signature, _signature(secret, token)):
        raise ApiError(422, "INVALID_CURSOR", "the cursor is malformed or was not made here")
    return token


@router.get(
    "",
    response_model=list[ProductPublic],
    responses={
        **error_responses(403, 422, 502, 503),
        200: {
            "description": 'A page; `Link: <...>; rel="next"` while more remain',
            "headers": {"Link": {"schema": {"type": "string"}}},
        },
    },
)
async def list_products(
    request: Request,
    response: Response,
    stubs: StubsDep,
    caller: OptionalCallerDep,
    q: Annotated[
        str | None,
        Query(
            max_length=Q_MAX_LENGTH,
            pattern=NO_NUL_PATTERN,
            description="a part of the name, description or sku (any case)",
        ),
    ] = None,
    category: Annotated[str | None, Query(max_length=64, pattern=NO_NUL_PATTERN)] = None,
    active: Annotated[
        bool | None,
        Query(description="default true; false (inactive products) only for an admin"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=LIMIT_MAX)] = LIMIT_DEFAULT,
    cursor: Annotated[
        str | None,
        Query(
            max_length=1000,
            pattern=CURSOR_PATTERN,
            description='opaque: from the `Link: <...>; rel="next"` header of the page before',
        ),
    ] = None,
) -> list[ProductPublic]:
    """Search the catalogue, a page at a time in sku order; `stock` is what can be sold now.
    Deactivated products are listed only for an admin who asks (`active=false`)."""
    if active is False and (caller is None or not caller.is_admin):
        raise ApiError(403, "FORBIDDEN", "only an admin may list inactive products")
    secret: str = request.app.state.jwt_secret
    resp = await stubs.product.ListProducts(
        product_pb2.ListProductsRequest(
            q=q or "",
            category=category or "",
            active=True if active is None else active,
            limit=limit,
            page_token=_page_token(secret, cursor) if cursor else "",
        ),
        timeout=GRPC_TIMEOUT,
    )
    if resp.next_page_token:
        url = request.url.include_query_params(cursor=_cursor(secret, resp.next_page_token))
        response.headers["Link"] = f'<{url}>; rel="next"'
    stock = await _stock(stubs, (p.id for p in resp.products))
    return [_public(p, stock.get(p.id, 0)) for p in resp.products]


# Before the /{product_id} routes: "import" would match {product_id}, and the first path
# that matches names the methods of a 405's Allow header.
async def _rows(rows: list[CsvRow]) -> AsyncIterator[product_pb2.BulkCreateProductRow]:
    for row in rows:
        yield row.message


@router.post(
    "/import",
    response_model=ImportResultPublic,
    responses=error_responses(401, 403, 422, 429, 502, 503),
    dependencies=[RateLimited],
)
async def import_products(
    file: Annotated[
        UploadFile,
        File(description="CSV: header sku,name,description,price_cents,stock,category"),
    ],
    _admin: AdminDep,
    stubs: StubsDep,
) -> ImportResultPublic:
    """Imports a catalogue CSV, an upsert by sku. The whole file is checked first: a
    malformed one gets 422 naming its first bad line, and nothing is written. Then each
    row is streamed to the product service: created, updated (same sku), or failed with
    its line and reason. `stock` is a product's initial stock, added once per product
    however often the file is imported."""
    rows = parse(await file.read())
    summary = await stubs.product.BulkCreateProducts(_rows(rows), timeout=IMPORT_TIMEOUT)
    return ImportResultPublic(
        created=summary.created,
        updated=summary.updated,
        unchanged=summary.skipped,
        failed=[
            ImportFailurePublic(line=e.line, sku=e.sku, error=e.message) for e in summary.errors
        ],
    )


@router.get(
    "/{product_id}", response_model=ProductPublic, responses=error_responses(404, 422, 502, 503)
)
async def get_product(product_id: PathId, stubs: StubsDep) -> ProductPublic:
    """A product, active or not (past orders name it); `stock` is what can be sold now."""
    return await _product(stubs, product_id)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductPublic,
    responses=error_responses(401, 403, 409, 422, 429, 502, 503),
    dependencies=[RateLimited],
)
async def create_product(
    body: ProductCreate, admin: AdminDep, stubs: StubsDep, idempotency_key: IdempotencyKey = None
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
            low_stock_threshold=body.low_stock_threshold,
        ),
        timeout=GRPC_TIMEOUT,
    )
    stock = 0
    if body.stock > 0:
        # Keyed on the product, so a retried initial stocking adds the units only once.
        level = await stubs.inventory.AdjustStock(
            inventory_pb2.AdjustStockRequest(
                product_id=p.id,
                delta=body.stock,
                idempotency_key=initial_stock_key(p.id),
                reason=INITIAL_STOCK_REASON,
                actor=_actor(admin),
            ),
            timeout=GRPC_TIMEOUT,
        )
        stock = level.available
    return _public(p, stock)


@router.patch(
    "/{product_id}",
    response_model=ProductPublic,
    responses=error_responses(401, 403, 404, 422, 429, 502, 503),
    dependencies=[RateLimited],
)
async def update_product(
    product_id: PathId, body: ProductUpdate, _admin: AdminDep, stubs: StubsDep
) -> ProductPublic:
    """Changes the fields sent. A new price applies to orders placed after it; an order
    already placed keeps the price it looked up."""
    fields = body.model_dump(exclude_none=True)
    p = await stubs.product.UpdateProduct(
        product_pb2.UpdateProductRequest(id=product_id, **fields), timeout=GRPC_TIMEOUT
    )
    stock = await _stock(stubs, [p.id])
    return _public(p, stock.get(p.id, 0))


@router.delete(
    "/{product_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(401, 403, 404, 422, 429, 502, 503),
    dependencies=[RateLimited],
)
async def deactivate_product(product_id: PathId, _admin: AdminDep, stubs: StubsDep) -> Response:
    """Deactivates the product: kept for past orders, no longer listed or sold."""
    await stubs.product.UpdateProduct(
        product_pb2.UpdateProductRequest(id=product_id, active=False), timeout=GRPC_TIMEOUT
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _stock_key(product_id: str, key: str | None) -> str:
    """Inventory's idempotency key of an admin's adjustment: per product, so one client key
    used for two products adjusts both (hashed: the key may be 200 characters)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32] if key else uuid.uuid4().hex
    return f"stock:{product_id}:{digest}"


@router.post(
    "/{product_id}/stock",
    response_model=ProductPublic,
    responses=error_responses(401, 403, 404, 409, 422, 429, 502, 503),
    dependencies=[RateLimited],
)
async def adjust_stock(
    product_id: PathId,
    body: StockAdjustmentCreate,
    admin: AdminDep,
    stubs: StubsDep,
    idempotency_key: IdempotencyKey = None,
) -> ProductPublic:
    """Adds (or removes, with a negative delta) units, recorded with the reason and the
    admin; 409 when the stock would go below zero. The same `Idempotency-Key` again
    applies the delta once and answers the product as it is."""
    p = await stubs.product.GetProduct(
        product_pb2.GetProductRequest(id=product_id), timeout=GRPC_TIMEOUT
    )
    level = await stubs.inventory.AdjustStock(
        inventory_pb2.AdjustStockRequest(
            product_id=p.id,
            delta=body.delta,
            idempotency_key=_stock_key(p.id, idempotency_key),
            reason=body.reason,
            actor=_actor(admin),
        ),
        timeout=GRPC_TIMEOUT,
    )
    return _public(p, level.available)


@router.get(
    "/{product_id}/stock/movements",
    response_model=list[StockMovementPublic],
    responses=error_responses(401, 403, 404, 422, 502, 503),
)
async def stock_movements(
    product_id: PathId,
    _admin: AdminDep,
    stubs: StubsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[StockMovementPublic]:
    """The product's stock movements, newest first: who, why, when."""
    p = await stubs.product.GetProduct(
        product_pb2.GetProductRequest(id=product_id), timeout=GRPC_TIMEOUT
    )
    resp = await stubs.inventory.ListStockMovements(
        inventory_pb2.ListStockMovementsRequest(product_id=p.id, limit=limit),
        timeout=GRPC_TIMEOUT,
    )
    return [
        StockMovementPublic(delta=m.delta, reason=m.reason, actor=m.actor, at=m.at)
        for m in resp.movements
    ]
