from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc

from proto.shop.v1 import inventory_pb2 as inv
from tests.harness import uid

if TYPE_CHECKING:
    from core.grpc_client import Stubs
from tests.services_fixtures import ExpectError

RESERVED = inv.RESERVATION_STATUS_RESERVED
RELEASED = inv.RESERVATION_STATUS_RELEASED


async def stock(stubs: Stubs, units: int) -> str:
    product_id = uid("p-")
    await stubs.inventory.AdjustStock(
        inv.AdjustStockRequest(product_id=product_id, delta=units, idempotency_key=uid())
    )
    return product_id


async def available(stubs: Stubs, product_id: str) -> int:
    level = await stubs.inventory.GetStock(inv.GetStockRequest(product_id=product_id))
    return level.available


def reserve(order_id: str, *lines: tuple[str, int]) -> inv.ReserveStockRequest:
    return inv.ReserveStockRequest(
        order_id=order_id,
        lines=[inv.ReservationLine(product_id=p, quantity=q) for p, q in lines],
    )


async def test_adjust_is_idempotent_and_never_negative(
    stubs: Stubs, expect_error: ExpectError
) -> None:
    product_id, key = uid("p-"), uid("k-")
    req = inv.AdjustStockRequest(product_id=product_id, delta=10, idempotency_key=key)
    assert (await stubs.inventory.AdjustStock(req)).available == 10
    assert (await stubs.inventory.AdjustStock(req)).available == 10
    minus = inv.AdjustStockRequest(product_id=product_id, delta=-4, idempotency_key=uid())
    assert (await stubs.inventory.AdjustStock(minus)).available == 6
    too_many = inv.AdjustStockRequest(product_id=product_id, delta=-7, idempotency_key=uid())
    await expect_error(stubs.inventory.AdjustStock(too_many), grpc.StatusCode.FAILED_PRECONDITION)
    assert await available(stubs, product_id) == 6
    listed = await stubs.inventory.ListStock(inv.ListStockRequest(product_ids=[product_id]))
    assert [(s.product_id, s.available) for s in listed.levels] == [(product_id, 6)]
    await expect_error(
        stubs.inventory.GetStock(inv.GetStockRequest(product_id=uid())),
        grpc.StatusCode.NOT_FOUND,
        "STOCK_NOT_FOUND",
    )


async def test_concurrent_adjustments_with_one_key_apply_once(stubs: Stubs) -> None:
    product_id, key = uid("p-"), uid("k-")
    req = inv.AdjustStockRequest(product_id=product_id, delta=3, idempotency_key=key)
    await asyncio.gather(*(stubs.inventory.AdjustStock(req) for _ in range(10)))
    assert await available(stubs, product_id) == 3


async def test_reserve_is_all_or_nothing(stubs: Stubs, expect_error: ExpectError) -> None:
    a, b = await stock(stubs, 5), await stock(stubs, 1)
    order_id = uid("o-")
    err = await expect_error(
        stubs.inventory.ReserveStock(reserve(order_id, (a, 2), (b, 2))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "OUT_OF_STOCK",
    )
    assert b in (err.details() or "")
    assert (await available(stubs, a), await available(stubs, b)) == (5, 1)
    await expect_error(
        stubs.inventory.GetReservation(inv.GetReservationRequest(order_id=order_id)),
        grpc.StatusCode.NOT_FOUND,
        "RESERVATION_NOT_FOUND",
    )
    # A product with no stock record at all is out of stock too.
    await expect_error(
        stubs.inventory.ReserveStock(reserve(uid("o-"), (uid("p-"), 1))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "OUT_OF_STOCK",
    )


async def test_reserve_is_idempotent_and_merges_lines(stubs: Stubs) -> None:
    a, b = await stock(stubs, 5), await stock(stubs, 5)
    order_id = uid("o-")
    req = reserve(order_id, (a, 1), (b, 2), (a, 2))
    first = await stubs.inventory.ReserveStock(req)
    assert first.status == RESERVED
    assert sorted((ln.product_id, ln.quantity) for ln in first.lines) == sorted([(a, 3), (b, 2)])
    again = await stubs.inventory.ReserveStock(req)
    assert again.status == RESERVED and sorted(again.lines, key=str) == sorted(first.lines, key=str)
    assert (await available(stubs, a), await available(stubs, b)) == (2, 3)
    got = await stubs.inventory.GetReservation(inv.GetReservationRequest(order_id=order_id))
    assert got.status == RESERVED and len(got.lines) == 2


async def test_release_is_idempotent(stubs: Stubs, expect_error: ExpectError) -> None:
    a = await stock(stubs, 4)
    order_id = uid("o-")
    await stubs.inventory.ReserveStock(reserve(order_id, (a, 3)))
    assert await available(stubs, a) == 1
    release = inv.ReleaseStockRequest(order_id=order_id)
    first = await stubs.inventory.ReleaseStock(release)
    assert first.status == RELEASED and [(ln.product_id, ln.quantity) for ln in first.lines] == [
        (a, 3)
    ]
    await stubs.inventory.ReleaseStock(release)
    assert await available(stubs, a) == 4
    # A late retry of the reservation takes nothing: refused, the order no longer holds any.
    await expect_error(
        stubs.inventory.ReserveStock(reserve(order_id, (a, 3))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RESERVATION_RELEASED",
    )
    assert await available(stubs, a) == 4


async def test_release_before_reserve_leaves_a_tombstone(
    stubs: Stubs, expect_error: ExpectError
) -> None:
    a = await stock(stubs, 2)
    order_id = uid("o-")
    tomb = await stubs.inventory.ReleaseStock(inv.ReleaseStockRequest(order_id=order_id))
    assert tomb.status == RELEASED and not tomb.lines
    # The reserve that comes after is refused (the saga must not go on to charge for stock
    # it does not hold), and takes nothing.
    await expect_error(
        stubs.inventory.ReserveStock(reserve(order_id, (a, 1))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RESERVATION_RELEASED",
    )
    assert await available(stubs, a) == 2
    got = await stubs.inventory.GetReservation(inv.GetReservationRequest(order_id=order_id))
    assert got.status == RELEASED and not got.lines


async def test_concurrent_orders_never_oversell(stubs: Stubs) -> None:
    a = await stock(stubs, 5)
    results = await asyncio.gather(
        *(stubs.inventory.ReserveStock(reserve(uid("o-"), (a, 1))) for _ in range(20)),
        return_exceptions=True,
    )
    ok = [r for r in results if isinstance(r, inv.Reservation)]
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 5 and len(failed) == 15, results
    assert all(e.code() == grpc.StatusCode.FAILED_PRECONDITION for e in failed)
    assert await available(stubs, a) == 0


async def test_concurrent_reserve_and_release_of_one_order(stubs: Stubs) -> None:
    a = await stock(stubs, 10)
    order_id = uid("o-")
    req = reserve(order_id, (a, 2))
    answers = await asyncio.gather(
        *(stubs.inventory.ReserveStock(req) for _ in range(5)),
        *(
            stubs.inventory.ReleaseStock(inv.ReleaseStockRequest(order_id=order_id))
            for _ in range(3)
        ),
        return_exceptions=True,
    )
    # A reserve that comes after a release is refused; nothing else fails.
    for answer in answers:
        if isinstance(answer, grpc.aio.AioRpcError):
            assert answer.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "released" in (answer.details() or "")
        else:
            assert not isinstance(answer, BaseException), answer
    await stubs.inventory.ReleaseStock(inv.ReleaseStockRequest(order_id=order_id))
    assert await available(stubs, a) == 10


async def test_invalid_inventory_requests(stubs: Stubs, expect_error: ExpectError) -> None:
    a = await stock(stubs, 5)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    for req in [
        reserve("", (a, 1)),
        reserve(uid("o-")),
        reserve(uid("o-"), (a, 0)),
        reserve(uid("o-"), (a, -1)),
        reserve(uid("o-"), ("", 1)),
        reserve("o" * 65, (a, 1)),
    ]:
        await expect_error(stubs.inventory.ReserveStock(req), invalid)
    for adj in [
        inv.AdjustStockRequest(product_id=a, delta=1, idempotency_key=""),
        inv.AdjustStockRequest(product_id="", delta=1, idempotency_key=uid()),
        inv.AdjustStockRequest(product_id=a, delta=10**12, idempotency_key=uid()),
    ]:
        await expect_error(stubs.inventory.AdjustStock(adj), invalid)
    await expect_error(stubs.inventory.ReleaseStock(inv.ReleaseStockRequest()), invalid)
    await expect_error(stubs.inventory.GetReservation(inv.GetReservationRequest()), invalid)
    assert await available(stubs, a) == 5
