from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from core.errors import AlreadyExists, DomainError, InvalidArgument, NotFound, Reason, Unavailable
from core.messages import initial_stock_key
from proto.shop.v1 import product_pb2, product_pb2_grpc
from services.common import (
    DELTA_MAX,
    MONEY_MAX,
    TEXT_MAX,
    Context,
    as_domain_error,
    grpc_method,
    ident,
    in_range,
    new_id,
    read,
    rfc3339,
    text,
    transact,
)
from services.product.models import ProductRow
from services.product.stock import StockAdder

log = logging.getLogger(__name__)

# A summary carries at most this many RowErrors, so it stays far below gRPC's 4 MB limit.
MAX_ROW_ERRORS = 1000
PRICE_MIN = 1  # cents


def _to_pb(row: ProductRow) -> product_pb2.Product:
    return product_pb2.Product(
        id=row.id,
        sku=row.sku,
        name=row.name,
        description=row.description,
        price_cents=row.price_cents,
        category=row.category,
        active=row.active,
        created_at=rfc3339(row.created_at),
    )


@dataclass(frozen=True)
class _New:
    """A validated product to create; `id` is empty when the caller chose none."""

    id: str
    sku: str
    name: str
    description: str
    price_cents: int
    category: str

    @classmethod
    def of(cls, r: product_pb2.CreateProductRequest | product_pb2.BulkCreateProductRow) -> _New:
        return cls(
            id=ident("id", r.id) if r.id else "",
            sku=ident("sku", r.sku.strip()),
            name=text("name", r.name.strip()),
            description=text("description", r.description, TEXT_MAX, required=False),
            # At least a cent: the payment service charges no zero amount, so an order of
            # free products could never be paid.
            price_cents=in_range("price_cents", r.price_cents, PRICE_MIN, MONEY_MAX),
            category=text("category", r.category.strip(), 64, required=False),
        )


def _insert(
    session: Session, new: _New, product_id: str, *, sku_taken_ok: bool
) -> tuple[ProductRow, bool]:
    """Inserts the product (True), or finds the existing one (False): same id and sku, or
    same sku and no id asked for when `sku_taken_ok`. AlreadyExists for any other clash.
    """
    same_id = session.get(ProductRow, product_id)
    if same_id is not None:
        if same_id.sku == new.sku:
            return same_id, False
        raise AlreadyExists(f"product id {product_id} is taken", reason=Reason.PRODUCT_ID_TAKEN)
    same_sku = session.exec(select(ProductRow).where(ProductRow.sku == new.sku)).first()
    if same_sku is not None:
        if sku_taken_ok and not new.id:
            return same_sku, False
        raise AlreadyExists(f"sku {new.sku} is taken", reason=Reason.SKU_TAKEN)
    row = ProductRow(
        id=product_id,
        sku=new.sku,
        name=new.name,
        description=new.description,
        price_cents=new.price_cents,
        category=new.category,
    )
    session.add(row)
    session.flush()
    return row, True


class ProductServicer(product_pb2_grpc.ProductServiceServicer):
    """The catalogue: what is sold and at what price (stock lives in inventory).

    `add_stock` sets an imported product's initial stock: the inventory servicer's
    `adjust` in the same process, or a RemoteInventory (see services.product.stock).
    """

    def __init__(self, engine: Engine, add_stock: StockAdder | None = None) -> None:
        self._engine = engine
        self._add_stock = add_stock

    @grpc_method
    async def CreateProduct(
        self, request: product_pb2.CreateProductRequest, context: Context
    ) -> product_pb2.Product:
        """Creates a product; the same id with the same sku again returns it (seeding)."""
        new = _New.of(request)
        product_id = new.id or new_id()
        row, _ = await transact(
            self._engine, lambda s: _insert(s, new, product_id, sku_taken_ok=False)
        )
        return _to_pb(row)

    @grpc_method
    async def GetProduct(
        self, request: product_pb2.GetProductRequest, context: Context
    ) -> product_pb2.Product:
        """Reads a product; NOT_FOUND (PRODUCT_NOT_FOUND) when no product has this id."""
        product_id = ident("id", request.id)
        row = await read(self._engine, lambda s: s.get(ProductRow, product_id))
        if row is None:
            raise NotFound(f"product {product_id} not found", reason=Reason.PRODUCT_NOT_FOUND)
        return _to_pb(row)

    @grpc_method
    async def ListProducts(
        self, request: product_pb2.ListProductsRequest, context: Context
    ) -> product_pb2.ListProductsResponse:
        """Every product, or one category's, ordered by sku."""
        category = text("category", request.category.strip(), 64, required=False)

        def work(session: Session) -> list[ProductRow]:
            query = select(ProductRow).order_by(col(ProductRow.sku))
            if category:
                query = query.where(ProductRow.category == category)
            return list(session.exec(query).all())

        rows = await read(self._engine, work)
        return product_pb2.ListProductsResponse(products=[_to_pb(r) for r in rows])

    @grpc_method
    async def BulkCreateProducts(
        self,
        request_iterator: AsyncIterator[product_pb2.BulkCreateProductRow],
        context: Context,
    ) -> product_pb2.BulkCreateProductsSummary:
        """Imports a stream of rows, each committed on its own; per-row errors in the summary.

        A row whose sku exists already (same id or none given) is skipped, untouched. A new
        product's stock (> 0) is added under the key "initial-stock:{id}".
        """
        summary = product_pb2.BulkCreateProductsSummary()
        first_row: dict[str, int] = {}  # sku or id -> the row that used it in this stream
        async for row in request_iterator:
            summary.received += 1
            number = summary.received
            try:
                created = await self._import_row(row, number, first_row)
            except (DomainError, OperationalError) as err:
                message = as_domain_error(err, "BulkCreateProducts").message
            else:
                if created:
                    summary.created += 1
                else:
                    summary.skipped += 1
                continue
            summary.failed += 1
            if len(summary.errors) < MAX_ROW_ERRORS:
                summary.errors.append(
                    product_pb2.RowError(row=number, sku=row.sku, message=message)
                )
        log.info(
            "bulk import: %d rows, %d created, %d skipped, %d failed",
            summary.received,
            summary.created,
            summary.skipped,
            summary.failed,
        )
        return summary

    async def _import_row(
        self, row: product_pb2.BulkCreateProductRow, number: int, first_row: dict[str, int]
    ) -> bool:
        """Creates one row's product and stock: True when created, False when skipped."""
        new = _New.of(row)
        stock = in_range("stock", row.stock, 0, DELTA_MAX)
        used = [f"sku:{new.sku}", *([f"id:{new.id}"] if new.id else [])]
        for key in used:
            if key in first_row:
                kind, value = key.split(":", 1)
                raise InvalidArgument(f"duplicate {kind} {value} (already in row {first_row[key]})")
        product_id = new.id or new_id()
        saved, created = await transact(
            self._engine, lambda s: _insert(s, new, product_id, sku_taken_ok=True)
        )
        first_row.update(dict.fromkeys(used, number))
        if not created:
            return False  # the sku's existing product: left as it is, stock included
        if stock > 0:
            if self._add_stock is None:
                raise Unavailable(
                    f"product {saved.id} created, but no inventory is configured for its stock"
                )
            try:
                await self._add_stock(saved.id, stock, initial_stock_key(saved.id))
            except DomainError as err:
                raise type(err)(
                    f"product {saved.id} created, but its initial stock was not set "
                    f"({err.message}); retry AdjustStock with idempotency_key "
                    f"{initial_stock_key(saved.id)}",
                    err.reason,
                ) from None
        return True
