from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from core.errors import AlreadyExists, DomainError, InvalidArgument, NotFound, Reason, Unavailable
from core.messages import INITIAL_STOCK_REASON, initial_stock_key
from proto.shop.v1 import product_pb2, product_pb2_grpc
from services.common import (
    DELTA_MAX,
    MONEY_MAX,
    TEXT_MAX,
    Context,
    as_domain_error,
    get_row,
    grpc_method,
    ident,
    in_range,
    new_id,
    read,
    rfc3339,
    text,
    transact,
)
from services.inventory.models import DEFAULT_LOW_STOCK_THRESHOLD
from services.product.models import ProductRow
from services.product.search import (
    LIMIT_MAX,
    Filters,
    category_counts,
    decode_token,
    encode_token,
    list_page,
)
from services.product.stock import IMPORT_ACTOR, Inventory

log = logging.getLogger(__name__)

# A summary carries at most this many RowErrors, so it stays far below gRPC's 4 MB limit.
MAX_ROW_ERRORS = 1000
PRICE_MIN = 1  # cents
THRESHOLD_MAX = 1_000_000_000
# The catalogue fields an import row or an update sets.
_FIELDS = ("name", "description", "price_cents", "category")


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
        low_stock_threshold=row.low_stock_threshold,
    )


def _name(value: str) -> str:
    return text("name", value.strip())


def _description(value: str) -> str:
    return text("description", value, TEXT_MAX, required=False)


def _price(value: int) -> int:
    # At least a cent: the payment service charges no zero amount, so an order of free
    # products could never be paid.
    return in_range("price_cents", value, PRICE_MIN, MONEY_MAX)


def _category(value: str) -> str:
    return text("category", value.strip(), 64, required=False)


def _threshold(value: int) -> int:
    return in_range("low_stock_threshold", value, 0, THRESHOLD_MAX)


@dataclass(frozen=True)
class _New:
    """A validated product to create; `id` is empty when the caller chose none."""

    id: str
    sku: str
    name: str
    description: str
    price_cents: int
    category: str
    low_stock_threshold: int = DEFAULT_LOW_STOCK_THRESHOLD

    @classmethod
    def of(cls, r: product_pb2.CreateProductRequest | product_pb2.BulkCreateProductRow) -> _New:
        threshold = DEFAULT_LOW_STOCK_THRESHOLD
        if isinstance(r, product_pb2.CreateProductRequest) and r.HasField("low_stock_threshold"):
            threshold = _threshold(r.low_stock_threshold)
        return cls(
            id=ident("id", r.id) if r.id else "",
            sku=ident("sku", r.sku.strip()),
            name=_name(r.name),
            description=_description(r.description),
            price_cents=_price(r.price_cents),
            category=_category(r.category),
            low_stock_threshold=threshold,
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
        low_stock_threshold=new.low_stock_threshold,
    )
    session.add(row)
    session.flush()
    return row, True


def _upsert(session: Session, new: _New, product_id: str) -> tuple[ProductRow, str]:
    """An import row: "created", or the sku's product (same id, or none asked for) brought
    to the row's fields: "updated", or "skipped" when they are the same already."""
    row, created = _insert(session, new, product_id, sku_taken_ok=True)
    if created:
        return row, "created"
    changes = {f: getattr(new, f) for f in _FIELDS if getattr(row, f) != getattr(new, f)}
    if not changes:
        return row, "skipped"
    for field, value in changes.items():
        setattr(row, field, value)
    session.add(row)
    session.flush()
    return row, "updated"


def _update(session: Session, request: product_pb2.UpdateProductRequest) -> ProductRow:
    row = session.get(ProductRow, request.id, with_for_update=True)
    if row is None:
        raise NotFound(f"product {request.id} not found", reason=Reason.PRODUCT_NOT_FOUND)
    if request.HasField("name"):
        row.name = _name(request.name)
    if request.HasField("description"):
        row.description = _description(request.description)
    if request.HasField("price_cents"):
        row.price_cents = _price(request.price_cents)
    if request.HasField("category"):
        row.category = _category(request.category)
    if request.HasField("active"):
        row.active = request.active
    if request.HasField("low_stock_threshold"):
        row.low_stock_threshold = _threshold(request.low_stock_threshold)
    session.add(row)
    session.flush()
    return row


class ProductServicer(product_pb2_grpc.ProductServiceServicer):
    """The catalogue: what is sold and at what price (stock lives in inventory).

    `inventory` sets an imported product's initial stock and keeps inventory's copy of
    each threshold: the inventory servicer in the same process, or a RemoteInventory (see
    services.product.stock).
    """

    def __init__(self, engine: Engine, inventory: Inventory | None = None) -> None:
        self._engine = engine
        self._inventory = inventory

    async def _copy_threshold(self, product_id: str, threshold: int) -> None:
        """Gives inventory its copy of the threshold (it owns the low-stock events)."""
        if self._inventory is None:
            raise Unavailable(
                f"product {product_id} saved, but no inventory is configured for its "
                "low_stock_threshold",
                reason=Reason.INVENTORY_UNAVAILABLE,
            )
        await self._inventory.set_threshold(product_id, threshold)

    @grpc_method
    async def CreateProduct(
        self, request: product_pb2.CreateProductRequest, context: Context
    ) -> product_pb2.Product:
        """Creates a product; the same id with the same sku again returns it (seeding).

        A threshold other than the default is copied to inventory; a retry copies it again.
        """
        new = _New.of(request)
        product_id = new.id or new_id()
        row, _ = await transact(
            self._engine, lambda s: _insert(s, new, product_id, sku_taken_ok=False)
        )
        if row.low_stock_threshold != DEFAULT_LOW_STOCK_THRESHOLD:
            await self._copy_threshold(row.id, row.low_stock_threshold)
        return _to_pb(row)

    @grpc_method
    async def UpdateProduct(
        self, request: product_pb2.UpdateProductRequest, context: Context
    ) -> product_pb2.Product:
        """Changes the fields that are set; NOT_FOUND (PRODUCT_NOT_FOUND) for an unknown id.

        A new price applies to orders that look the product up afterwards; a new
        low_stock_threshold is copied to inventory (a retry copies it again).
        """
        ident("id", request.id)
        row = await transact(self._engine, lambda s: _update(s, request))
        if request.HasField("low_stock_threshold"):
            await self._copy_threshold(row.id, row.low_stock_threshold)
        return _to_pb(row)

    @grpc_method
    async def GetProduct(
        self, request: product_pb2.GetProductRequest, context: Context
    ) -> product_pb2.Product:
        """Reads a product; NOT_FOUND (PRODUCT_NOT_FOUND) when no product has this id."""
        product_id = ident("id", request.id)
        row = await get_row(self._engine, ProductRow, product_id)
        if row is None:
            raise NotFound(f"product {product_id} not found", reason=Reason.PRODUCT_NOT_FOUND)
        return _to_pb(row)

    @grpc_method
    async def ListProducts(
        self, request: product_pb2.ListProductsRequest, context: Context
    ) -> product_pb2.ListProductsResponse:
        """The products matching q, category and active, in sku order, a page at a time."""
        active = request.active if request.HasField("active") else None
        filters = Filters.of(request.q, request.category, active)
        limit = in_range("limit", request.limit, 0, LIMIT_MAX)
        after = decode_token(request.page_token, filters) if request.page_token else ""
        rows, last = await read(self._engine, lambda s: list_page(s, filters, limit, after))
        return product_pb2.ListProductsResponse(
            products=[_to_pb(r) for r in rows],
            next_page_token=encode_token(last, filters) if last else "",
        )

    @grpc_method
    async def ListCategories(
        self, request: product_pb2.ListCategoriesRequest, context: Context
    ) -> product_pb2.ListCategoriesResponse:
        """The categories of active products with their counts, by name."""
        counts = await read(self._engine, category_counts)
        return product_pb2.ListCategoriesResponse(
            categories=[product_pb2.CategoryCount(name=n, products=c) for n, c in counts]
        )

    @grpc_method
    async def BulkCreateProducts(
        self,
        request_iterator: AsyncIterator[product_pb2.BulkCreateProductRow],
        context: Context,
    ) -> product_pb2.BulkCreateProductsSummary:
        """Upserts a stream of rows by sku, each committed on its own; per-row errors in
        the summary.

        A row whose sku exists already (same id or none given) updates its product's name,
        description, price and category. A row's stock (> 0) is the product's initial
        stock, added under the key "initial-stock:{id}": once per product, however often
        the file is imported.
        """
        summary = product_pb2.BulkCreateProductsSummary()
        first_row: dict[str, int] = {}  # sku or id -> the row that used it in this stream
        async for row in request_iterator:
            summary.received += 1
            number = summary.received
            try:
                outcome = await self._import_row(row, number, first_row)
            except (DomainError, OperationalError) as err:
                message = as_domain_error(err, "BulkCreateProducts").message
            else:
                setattr(summary, outcome, getattr(summary, outcome) + 1)
                continue
            summary.failed += 1
            if len(summary.errors) < MAX_ROW_ERRORS:
                summary.errors.append(
                    product_pb2.RowError(row=number, sku=row.sku, message=message, line=row.line)
                )
        log.info(
            "bulk import: %d rows, %d created, %d updated, %d skipped, %d failed",
            summary.received,
            summary.created,
            summary.updated,
            summary.skipped,
            summary.failed,
        )
        return summary

    async def _import_row(
        self, row: product_pb2.BulkCreateProductRow, number: int, first_row: dict[str, int]
    ) -> str:
        """Upserts one row's product and its initial stock: "created", "updated" or
        "skipped" (the summary's counter)."""
        new = _New.of(row)
        stock = in_range("stock", row.stock, 0, DELTA_MAX)
        used = [f"sku:{new.sku}", *([f"id:{new.id}"] if new.id else [])]
        for key in used:
            if key in first_row:
                kind, value = key.split(":", 1)
                raise InvalidArgument(f"duplicate {kind} {value} (already in row {first_row[key]})")
        product_id = new.id or new_id()
        saved, outcome = await transact(self._engine, lambda s: _upsert(s, new, product_id))
        first_row.update(dict.fromkeys(used, number))
        if stock > 0:
            # Under the product's one initial-stock key: a new product gets its units, and
            # a product whose initial stock was never set (created with none, or an earlier
            # import that failed at this step) gets them now; any other repeat adds nothing.
            if self._inventory is None:
                raise Unavailable(
                    f"product {saved.id} {outcome}, but no inventory is configured for its stock"
                )
            try:
                await self._inventory.adjust(
                    saved.id,
                    stock,
                    initial_stock_key(saved.id),
                    reason=INITIAL_STOCK_REASON,
                    actor=IMPORT_ACTOR,
                )
            except DomainError as err:
                raise type(err)(
                    f"product {saved.id} {outcome}, but its initial stock was not set "
                    f"({err.message}); import the row again (it adds the stock under "
                    f"idempotency_key {initial_stock_key(saved.id)}, once)",
                    err.reason,
                ) from None
        return outcome
