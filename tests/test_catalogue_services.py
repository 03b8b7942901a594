"""The catalogue through gRPC (SQLite and PostgreSQL): UpdateProduct, ListProducts' filters
and pages, ListCategories, the import's upsert, and inventory's side of it: thresholds,
low-stock events on WatchStock, movements with reason and actor."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import TYPE_CHECKING, Any

import grpc

from proto.shop.v1 import inventory_pb2 as inv
from proto.shop.v1 import product_pb2 as prod
from tests.harness import uid

if TYPE_CHECKING:
    from core.grpc_client import Stubs
from tests.services_fixtures import ExpectError

WAIT = 10.0


async def next_level(call: Any) -> inv.StockLevel:
    """The next StockLevel of a WatchStock stream, failing instead of hanging."""
    level: inv.StockLevel = await asyncio.wait_for(call.read(), WAIT)
    return level


async def create(stubs: Stubs, category: str, sku: str, **fields: Any) -> prod.Product:
    values: dict[str, Any] = {"name": f"Name {sku}", "price_cents": 500, "category": category}
    product: prod.Product = await stubs.product.CreateProduct(
        prod.CreateProductRequest(sku=sku, **{**values, **fields})
    )
    return product


async def all_pages(stubs: Stubs, request: prod.ListProductsRequest) -> list[list[str]]:
    """The skus of each page, following next_page_token to the end."""
    pages: list[list[str]] = []
    while True:
        resp = await stubs.product.ListProducts(request)
        pages.append([p.sku for p in resp.products])
        if not resp.next_page_token:
            return pages
        request.page_token = resp.next_page_token


async def test_update_product_changes_only_what_is_set(
    stubs: Stubs, expect_error: ExpectError
) -> None:
    tag = uid()
    made = await create(stubs, f"c-{tag}", f"U-{tag}", description="first")
    assert made.low_stock_threshold == 5
    changed = await stubs.product.UpdateProduct(
        prod.UpdateProductRequest(id=made.id, price_cents=777, name="  Renamed  ")
    )
    assert (changed.name, changed.price_cents, changed.description) == ("Renamed", 777, "first")
    assert (changed.category, changed.active, changed.sku) == (made.category, True, made.sku)
    # An explicit empty description is a change; an unset field is not.
    cleared = await stubs.product.UpdateProduct(
        prod.UpdateProductRequest(id=made.id, description="")
    )
    assert (cleared.description, cleared.name) == ("", "Renamed")
    off = await stubs.product.UpdateProduct(prod.UpdateProductRequest(id=made.id, active=False))
    assert not off.active
    got = await stubs.product.GetProduct(prod.GetProductRequest(id=made.id))
    assert got == off

    await expect_error(
        stubs.product.UpdateProduct(prod.UpdateProductRequest(id=uid(), name="x")),
        grpc.StatusCode.NOT_FOUND,
        "PRODUCT_NOT_FOUND",
    )
    for bad in (
        prod.UpdateProductRequest(id=made.id, price_cents=0),
        prod.UpdateProductRequest(id=made.id, name="  "),
        prod.UpdateProductRequest(id=made.id, category="c" * 65),
        prod.UpdateProductRequest(id=made.id, low_stock_threshold=-1),
        prod.UpdateProductRequest(id=""),
    ):
        await expect_error(stubs.product.UpdateProduct(bad), grpc.StatusCode.INVALID_ARGUMENT)
    # Nothing of the refused updates was written.
    assert await stubs.product.GetProduct(prod.GetProductRequest(id=made.id)) == off


async def test_list_products_filters_and_pages(stubs: Stubs, expect_error: ExpectError) -> None:
    tag = uid()
    category = f"c-{tag}"
    skus = [f"L-{tag}-{i:02d}" for i in range(7)]
    for i in range(len(skus)):
        # Unordered creation: the pages are in sku order whatever the insertion order.
        await create(stubs, category, skus[(i * 3) % 7], description=f"d {i}")
    odd = await create(stubs, category, f"L-{tag}-odd", name="100% Arabica_blend")
    await stubs.product.UpdateProduct(prod.UpdateProductRequest(id=odd.id, active=False))

    request = prod.ListProductsRequest(category=category, active=True, limit=3)
    pages = await all_pages(stubs, request)
    assert pages == [skus[0:3], skus[3:6], skus[6:7]]
    # Both kinds, no pagination (limit 0): what the callers before pagination got.
    everything = await stubs.product.ListProducts(prod.ListProductsRequest(category=category))
    assert [p.sku for p in everything.products] == [*skus, f"L-{tag}-odd"]
    assert everything.next_page_token == ""
    inactive = await stubs.product.ListProducts(
        prod.ListProductsRequest(category=category, active=False)
    )
    assert [p.sku for p in inactive.products] == [f"L-{tag}-odd"]

    async def q(text: str) -> list[str]:
        resp = await stubs.product.ListProducts(prod.ListProductsRequest(q=text))
        return [p.sku for p in resp.products]

    # Name, description and sku, in any case; % and _ are themselves, not wildcards.
    assert await q(f"l-{tag}-03") == [skus[3]]
    assert await q("ARABICA_BLEND") == [f"L-{tag}-odd"]
    assert await q("100% arabica") == [f"L-{tag}-odd"]
    assert await q(f"{tag}-0_") == []
    assert await q(f"{tag}%") == []
    assert set(await q(f"L-{tag}")) == {*skus, f"L-{tag}-odd"}

    # Tokens: malformed, forged for other filters, too long, or a bad limit.
    first = await stubs.product.ListProducts(prod.ListProductsRequest(category=category, limit=2))
    assert first.next_page_token
    forged = base64.urlsafe_b64encode(json.dumps({"after": "A", "filters": "x"}).encode())
    for bad in (
        prod.ListProductsRequest(category=category, limit=2, page_token="not base64!"),
        prod.ListProductsRequest(category=category, limit=2, page_token=forged.decode()),
        prod.ListProductsRequest(category="other", limit=2, page_token=first.next_page_token),
        prod.ListProductsRequest(limit=2, page_token="A" * 600),
        prod.ListProductsRequest(limit=1001),
        prod.ListProductsRequest(limit=-1),
        prod.ListProductsRequest(q="q" * 101),
    ):
        await expect_error(stubs.product.ListProducts(bad), grpc.StatusCode.INVALID_ARGUMENT)


async def test_list_categories_counts_active_products(stubs: Stubs) -> None:
    tag = uid()
    a, b = f"a-{tag}", f"b-{tag}"
    await create(stubs, a, f"A1-{tag}")
    await create(stubs, a, f"A2-{tag}")
    gone = await create(stubs, b, f"B1-{tag}")
    await stubs.product.UpdateProduct(prod.UpdateProductRequest(id=gone.id, active=False))
    resp = await stubs.product.ListCategories(prod.ListCategoriesRequest())
    counts = {c.name: c.products for c in resp.categories}
    assert counts[a] == 2 and b not in counts and "" not in counts
    names = [c.name for c in resp.categories]
    assert names == sorted(names)


async def test_thresholds_reach_inventory_and_watch_stock_flags_low_stock(
    stubs: Stubs, expect_error: ExpectError
) -> None:
    tag = uid()
    product = await create(stubs, f"c-{tag}", f"T-{tag}", low_stock_threshold=3)
    assert product.low_stock_threshold == 3
    await stubs.inventory.AdjustStock(
        inv.AdjustStockRequest(product_id=product.id, delta=4, idempotency_key=uid())
    )
    level = await stubs.inventory.GetStock(inv.GetStockRequest(product_id=product.id))
    assert (level.available, level.low_stock_threshold, level.low_stock) == (4, 3, False)

    call = stubs.inventory.WatchStock(inv.WatchStockRequest(product_ids=[product.id]))
    try:
        first = await next_level(call)
        assert (first.available, first.low_stock) == (4, False)
        order = inv.ReserveStockRequest(
            order_id=uid("o-"), lines=[inv.ReservationLine(product_id=product.id, quantity=2)]
        )
        await stubs.inventory.ReserveStock(order)  # 2 left: below 3
        low = await next_level(call)
        assert (low.available, low.low_stock_threshold, low.low_stock) == (2, 3, True)
        # Lowering the threshold through the product service ends the alert at once.
        await stubs.product.UpdateProduct(
            prod.UpdateProductRequest(id=product.id, low_stock_threshold=1)
        )
        fine = await next_level(call)
        assert (fine.available, fine.low_stock_threshold, fine.low_stock) == (2, 1, False)
    finally:
        call.cancel()
    listed = await stubs.inventory.ListStock(inv.ListStockRequest(product_ids=[product.id]))
    assert [(s.available, s.low_stock_threshold) for s in listed.levels] == [(2, 1)]
    await expect_error(
        stubs.inventory.SetLowStockThreshold(
            inv.SetLowStockThresholdRequest(product_id=product.id, low_stock_threshold=-1)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_movements_say_who_why_and_when(stubs: Stubs, expect_error: ExpectError) -> None:
    product_id = uid("p-")
    await stubs.inventory.AdjustStock(
        inv.AdjustStockRequest(
            product_id=product_id,
            delta=10,
            idempotency_key=uid(),
            reason="delivery",
            actor="user:admin-1",
        )
    )
    order_id = uid("o-")
    line = [inv.ReservationLine(product_id=product_id, quantity=3)]
    await stubs.inventory.ReserveStock(inv.ReserveStockRequest(order_id=order_id, lines=line))
    await stubs.inventory.ReleaseStock(inv.ReleaseStockRequest(order_id=order_id))
    too_many = inv.AdjustStockRequest(
        product_id=product_id, delta=-11, idempotency_key=uid(), reason="shrinkage", actor="x"
    )
    err = await expect_error(
        stubs.inventory.AdjustStock(too_many), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert "below zero" in (err.details() or "")
    resp = await stubs.inventory.ListStockMovements(
        inv.ListStockMovementsRequest(product_id=product_id)
    )
    moves = [(m.delta, m.reason, m.actor) for m in resp.movements]
    assert sorted(moves) == sorted(
        [
            (10, "delivery", "user:admin-1"),
            (-3, "reserved", f"order:{order_id}"),
            (3, "released", f"order:{order_id}"),
        ]
    )
    assert moves[-1] == (10, "delivery", "user:admin-1")  # the oldest last
    assert all(m.at.endswith("Z") for m in resp.movements)
    await expect_error(
        stubs.inventory.AdjustStock(
            inv.AdjustStockRequest(
                product_id=product_id, delta=1, idempotency_key=uid(), reason="r" * 201
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await expect_error(
        stubs.inventory.ListStockMovements(
            inv.ListStockMovementsRequest(product_id=product_id, limit=501)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_import_upserts_by_sku_and_never_adds_stock_twice(stubs: Stubs) -> None:
    tag = uid()
    category = f"imp-{tag}"

    def row(sku: str, line: int, **fields: Any) -> prod.BulkCreateProductRow:
        values: dict[str, Any] = {"name": f"N {sku}", "price_cents": 300, "category": category}
        return prod.BulkCreateProductRow(sku=sku, line=line, **{**values, **fields})

    rows = [row(f"I1-{tag}", 2, stock=5), row(f"I2-{tag}", 3, price_cents=0)]
    first = await stubs.product.BulkCreateProducts(iter(rows))
    assert (first.created, first.updated, first.skipped, first.failed) == (1, 0, 0, 1)
    assert [(e.line, e.sku) for e in first.errors] == [(3, f"I2-{tag}")]

    again = [row(f"I1-{tag}", 2, stock=5, price_cents=350), row(f"I2-{tag}", 3)]
    second = await stubs.product.BulkCreateProducts(iter(again))
    assert (second.created, second.updated, second.skipped, second.failed) == (1, 1, 0, 0)
    third = await stubs.product.BulkCreateProducts(iter(again))
    assert (third.created, third.updated, third.skipped, third.failed) == (0, 0, 2, 0)

    listed = await stubs.product.ListProducts(prod.ListProductsRequest(category=category))
    by_sku = {p.sku: p for p in listed.products}
    assert by_sku[f"I1-{tag}"].price_cents == 350
    level = await stubs.inventory.GetStock(inv.GetStockRequest(product_id=by_sku[f"I1-{tag}"].id))
    assert level.available == 5  # three imports, one initial stock
