from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from proto.shop.v1 import product_pb2
from tests.harness import uid

if TYPE_CHECKING:
    from core.grpc_client import Stubs
from tests.services_fixtures import ExpectError


def new_product(category: str = "", **kw: object) -> product_pb2.CreateProductRequest:
    fields: dict[str, object] = {
        "sku": uid("SKU-"),
        "name": "Espresso",
        "description": "Dark",
        "price_cents": 450,
        "category": category,
    }
    fields.update(kw)
    return product_pb2.CreateProductRequest(**fields)  # type: ignore[arg-type]


async def test_create_get_list(stubs: Stubs) -> None:
    category = uid("cat-")
    made = [
        await stubs.product.CreateProduct(new_product(category, sku=f"{category}-b")),
        await stubs.product.CreateProduct(new_product(category, sku=f"{category}-a")),
    ]
    await stubs.product.CreateProduct(new_product(uid("other-")))
    got = await stubs.product.GetProduct(product_pb2.GetProductRequest(id=made[0].id))
    assert got == made[0]
    assert (got.price_cents, got.active, got.category) == (450, True, category)
    listed = await stubs.product.ListProducts(product_pb2.ListProductsRequest(category=category))
    assert [p.sku for p in listed.products] == [f"{category}-a", f"{category}-b"]
    everything = await stubs.product.ListProducts(product_pb2.ListProductsRequest())
    skus = [p.sku for p in everything.products]
    assert skus == sorted(skus) and len(skus) >= 3


async def test_duplicate_sku(stubs: Stubs, expect_error: ExpectError) -> None:
    req = new_product()
    await stubs.product.CreateProduct(req)
    await expect_error(
        stubs.product.CreateProduct(new_product(sku=req.sku)),
        grpc.StatusCode.ALREADY_EXISTS,
        "SKU_TAKEN",
    )


async def test_seeding_with_an_id_is_idempotent(stubs: Stubs, expect_error: ExpectError) -> None:
    req = new_product(id=uid("prod-"), price_cents=1)
    first = await stubs.product.CreateProduct(req)
    assert first.id == req.id and first.price_cents == 1
    assert await stubs.product.CreateProduct(req) == first
    await expect_error(
        stubs.product.CreateProduct(new_product(id=req.id)), grpc.StatusCode.ALREADY_EXISTS
    )


async def test_not_found(stubs: Stubs, expect_error: ExpectError) -> None:
    await expect_error(
        stubs.product.GetProduct(product_pb2.GetProductRequest(id=uid())),
        grpc.StatusCode.NOT_FOUND,
        "PRODUCT_NOT_FOUND",
    )


async def test_invalid_products(stubs: Stubs, expect_error: ExpectError) -> None:
    for req in [
        new_product(sku=""),
        new_product(name=""),
        new_product(price_cents=-1),
        new_product(price_cents=100_000_000_001),
        new_product(sku="s" * 65),
        new_product(description="d" * 2001),
        new_product(id="i" * 65),
    ]:
        await expect_error(stubs.product.CreateProduct(req), grpc.StatusCode.INVALID_ARGUMENT)
    await expect_error(
        stubs.product.GetProduct(product_pb2.GetProductRequest(id="")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_a_product_costs_at_least_a_cent(stubs: Stubs, expect_error: ExpectError) -> None:
    # The payment service charges no zero amount: an order of free products could never pay.
    err = await expect_error(
        stubs.product.CreateProduct(new_product(price_cents=0)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "price_cents" in (err.details() or "")
    # The bulk import (and the CSV import through it) validates each row the same way.
    free, cheap = uid("FREE-"), uid("CHEAP-")
    summary = await stubs.product.BulkCreateProducts(
        iter(
            [
                product_pb2.BulkCreateProductRow(sku=free, name="Free", price_cents=0),
                product_pb2.BulkCreateProductRow(sku=cheap, name="Cheap", price_cents=1),
            ]
        )
    )
    assert (summary.created, summary.failed) == (1, 1)
    assert [(e.row, e.sku) for e in summary.errors] == [(1, free)]
    assert "price_cents" in summary.errors[0].message
