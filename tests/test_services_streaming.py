"""The streaming RPCs: WatchStock, StreamNotifications, BulkCreateProducts, SyncInventory,
and the catalogue import CLI, against real servers on port 0 (SQLite and PostgreSQL).

Over 400 lines: four streams, each with its ordering, back-pressure and error cases, share
the helpers at the top.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from sqlalchemy import Engine

from core.errors import Unavailable
from proto.shop.v1 import inventory_pb2 as inv
from proto.shop.v1 import inventory_pb2_grpc, product_pb2_grpc
from proto.shop.v1 import notification_pb2 as notif
from proto.shop.v1 import product_pb2 as prod
from services.broadcast import Broadcaster
from services.faults import INJECTED
from services.server import create_server
from tests.harness import free_port, uid

if TYPE_CHECKING:
    from core.grpc_client import Stubs
from tests.services_fixtures import ExpectError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CSV = ROOT / "services" / "product" / "example_catalogue.csv"
WAIT = 10.0  # seconds for one streamed message: nothing may hang


EOF = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs


async def next_of(call: Any) -> Any:
    """The next message of a response stream, failing instead of hanging."""
    message = await asyncio.wait_for(call.read(), WAIT)
    assert message is not EOF, "stream ended"
    return message


async def adjust(stubs: Stubs, product_id: str, delta: int, key: str | None = None) -> int:
    level = await stubs.inventory.AdjustStock(
        inv.AdjustStockRequest(product_id=product_id, delta=delta, idempotency_key=key or uid())
    )
    return level.available


def as_pair(level: inv.StockLevel) -> tuple[str, int]:
    return (level.product_id, level.available)


# --- WatchStock -------------------------------------------------------------------------


async def test_watch_stock_sends_levels_then_each_change(stubs: Stubs) -> None:
    stocked, unstocked, other = uid("p-"), uid("p-"), uid("p-")
    await adjust(stubs, stocked, 5)
    call = stubs.inventory.WatchStock(inv.WatchStockRequest(product_ids=[stocked, unstocked]))
    try:
        first = {as_pair(await next_of(call)), as_pair(await next_of(call))}
        assert first == {(stocked, 5), (unstocked, 0)}

        await adjust(stubs, stocked, 3)
        assert as_pair(await next_of(call)) == (stocked, 8)

        order_id = uid("o-")
        await stubs.inventory.ReserveStock(
            inv.ReserveStockRequest(
                order_id=order_id, lines=[inv.ReservationLine(product_id=stocked, quantity=2)]
            )
        )
        assert as_pair(await next_of(call)) == (stocked, 6)
        await stubs.inventory.ReleaseStock(inv.ReleaseStockRequest(order_id=order_id))
        assert as_pair(await next_of(call)) == (stocked, 8)

        # Not watched, a repeated key and a failed adjustment change nothing watched: the
        # next message is the next real change.
        key = uid()
        await adjust(stubs, unstocked, 4, key)
        assert as_pair(await next_of(call)) == (unstocked, 4)
        await adjust(stubs, unstocked, 4, key)
        await adjust(stubs, other, 9)
        try:
            await adjust(stubs, stocked, -100)
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        sync = stubs.inventory.SyncInventory(
            iter([inv.StockAdjustment(product_id=stocked, delta=-1, idempotency_key=uid())])
        )
        assert [a.ok async for a in sync] == [True]
        assert as_pair(await next_of(call)) == (stocked, 7)
    finally:
        call.cancel()
    assert call.cancelled() or (await call.code()) == grpc.StatusCode.CANCELLED


async def test_watch_stock_of_every_product_sees_new_products(stubs: Stubs) -> None:
    call = stubs.inventory.WatchStock(inv.WatchStockRequest())
    try:
        await asyncio.wait_for(call.initial_metadata(), WAIT)  # subscribed
        fresh = uid("p-")
        await adjust(stubs, fresh, 11)
        # The snapshot of every stocked product comes first; then the new product's level.
        while as_pair(level := await next_of(call)) != (fresh, 11):
            assert level.product_id != fresh, level
    finally:
        call.cancel()


async def test_watch_stock_ends_on_the_last_of_concurrent_changes(stubs: Stubs) -> None:
    product_id = uid("p-")
    await adjust(stubs, product_id, 100)
    call = stubs.inventory.WatchStock(inv.WatchStockRequest(product_ids=[product_id]))
    try:
        assert as_pair(await next_of(call)) == (product_id, 100)
        line = [inv.ReservationLine(product_id=product_id, quantity=1)]
        await asyncio.gather(
            *(adjust(stubs, product_id, -1) for _ in range(15)),
            *(
                stubs.inventory.ReserveStock(inv.ReserveStockRequest(order_id=uid(), lines=line))
                for _ in range(15)
            ),
        )
        while (await next_of(call)).available != 70:
            pass
        # Nothing older than 70 may follow it: the next message is the next change.
        await adjust(stubs, product_id, 1000)
        assert as_pair(await next_of(call)) == (product_id, 1070)
    finally:
        call.cancel()


async def test_a_slow_watcher_is_cut_off_not_silently_behind() -> None:
    changes: Broadcaster[int] = Broadcaster(limit=3)
    with changes.subscribe() as slow, changes.subscribe(lambda n: n % 2 == 0) as even:
        for n in range(5):
            changes.publish(n)
        assert [await even.get() for _ in range(3)] == [0, 2, 4]
        with pytest.raises(Unavailable) as info:
            await slow.get()
        assert info.value.reason == "WATCHER_TOO_SLOW"
        assert changes.subscribers == 2
    assert changes.subscribers == 0


async def test_watch_stock_validates(stubs: Stubs, expect_error: ExpectError) -> None:
    too_many = [f"p-{i}" for i in range(1001)]
    await expect_error(
        stubs.inventory.WatchStock(inv.WatchStockRequest(product_ids=too_many)).read(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    await expect_error(
        stubs.inventory.WatchStock(inv.WatchStockRequest(product_ids=[" spaced "])).read(),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


# --- StreamNotifications ----------------------------------------------------------------


def note(user_id: str, key: str, kind: str = "ORDER_CONFIRMED") -> notif.SendNotificationRequest:
    return notif.SendNotificationRequest(
        user_id=user_id, order_id=uid("o-"), kind=kind, message="hi", idempotency_key=key
    )


async def test_stream_notifications_existing_then_new_never_repeated(stubs: Stubs) -> None:
    user_id = uid("u-")
    old = await stubs.notification.SendNotification(note(user_id, uid()))
    call = stubs.notification.StreamNotifications(
        notif.StreamNotificationsRequest(user_id=user_id, include_existing=True)
    )
    try:
        assert (await next_of(call)).id == old.id
        key = uid()
        new = await stubs.notification.SendNotification(note(user_id, key, "ORDER_SHIPPED"))
        got = await next_of(call)
        assert (got.id, got.kind, got.user_id) == (new.id, "ORDER_SHIPPED", user_id)

        repeat = await stubs.notification.SendNotification(note(user_id, key, "ORDER_SHIPPED"))
        assert repeat.id == new.id
        await stubs.notification.SendNotification(note(uid("u-"), uid()))  # someone else's
        last = await stubs.notification.SendNotification(note(user_id, uid(), "ORDER_DELIVERED"))
        assert (await next_of(call)).id == last.id  # not the repeat, not the other user's
    finally:
        call.cancel()


async def test_stream_notifications_without_existing(stubs: Stubs) -> None:
    user_id = uid("u-")
    await stubs.notification.SendNotification(note(user_id, uid()))
    call = stubs.notification.StreamNotifications(notif.StreamNotificationsRequest(user_id=user_id))
    try:
        await asyncio.wait_for(call.initial_metadata(), WAIT)  # subscribed
        new = await stubs.notification.SendNotification(note(user_id, uid(), "ORDER_FAILED"))
        assert (await next_of(call)).id == new.id
    finally:
        call.cancel()


async def test_stream_notifications_validates(stubs: Stubs, expect_error: ExpectError) -> None:
    await expect_error(
        stubs.notification.StreamNotifications(notif.StreamNotificationsRequest()).read(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )


# --- BulkCreateProducts -----------------------------------------------------------------


def row(sku: str, **fields: Any) -> prod.BulkCreateProductRow:
    values: dict[str, Any] = {"name": f"Name {sku}", "price_cents": 1000, "category": "bulk"}
    return prod.BulkCreateProductRow(sku=sku, **{**values, **fields})


async def product_by_sku(stubs: Stubs, sku: str, category: str) -> prod.Product:
    listed = await stubs.product.ListProducts(prod.ListProductsRequest(category=category))
    (found,) = [p for p in listed.products if p.sku == sku]
    return found


async def test_bulk_create_products_counts_rows_and_sets_stock(
    stubs: Stubs, expect_error: ExpectError
) -> None:
    tag = uuid.uuid4().hex[:10]
    category = f"bulk-{tag}"
    existing = await stubs.product.CreateProduct(
        prod.CreateProductRequest(sku=f"OLD-{tag}", name="Old", price_cents=5, category=category)
    )
    given_id = uid("id-")
    rows = [
        row(f"A-{tag}", stock=7, category=category),  # 1 created
        row(f"B-{tag}", price_cents=-1, category=category),  # 2 bad price
        row(f"C-{tag}", name="  ", category=category),  # 3 empty name
        row(f"A-{tag}", stock=1, category=category),  # 4 duplicate sku in the stream
        row(f"D-{tag}", category=category),  # 5 created, no stock
        row("", category=category),  # 6 empty sku
        row(f"OLD-{tag}", stock=50, category=category),  # 7 exists: updated
        row(f"E-{tag}", id=given_id, stock=3, category=category),  # 8 created with its id
        row(f"F-{tag}", stock=-2, category=category),  # 9 negative stock
        row(f"G-{tag}", id=existing.id, category=category),  # 10 id taken by another sku
    ]
    summary = await stubs.product.BulkCreateProducts(iter(rows))
    counts = (summary.received, summary.created, summary.updated, summary.skipped, summary.failed)
    assert counts == (10, 3, 1, 0, 6)
    assert [(e.row, e.sku) for e in summary.errors] == [
        (2, f"B-{tag}"),
        (3, f"C-{tag}"),
        (4, f"A-{tag}"),
        (6, ""),
        (9, f"F-{tag}"),
        (10, f"G-{tag}"),
    ]
    messages = {e.row: e.message for e in summary.errors}
    assert "price_cents" in messages[2] and "name" in messages[3]
    assert "duplicate sku" in messages[4] and "row 1" in messages[4]
    assert "stock" in messages[9] and "taken" in messages[10]

    a = await product_by_sku(stubs, f"A-{tag}", category)
    assert (a.name, a.price_cents) == (f"Name A-{tag}", 1000)
    assert await adjust(stubs, a.id, 0) == 7
    assert await adjust(stubs, given_id, 0) == 3
    d = await product_by_sku(stubs, f"D-{tag}", category)
    await expect_error(
        stubs.inventory.GetStock(inv.GetStockRequest(product_id=d.id)),
        grpc.StatusCode.NOT_FOUND,
        "STOCK_NOT_FOUND",
    )
    # The existing product took the row's fields, and its initial stock, never set before.
    old = await product_by_sku(stubs, f"OLD-{tag}", category)
    assert (old.id, old.name, old.price_cents) == (existing.id, f"Name OLD-{tag}", 1000)
    assert await adjust(stubs, existing.id, 0) == 50
    # Importing again changes nothing and adds no stock (key initial-stock:{id}).
    again = await stubs.product.BulkCreateProducts(iter([rows[0], rows[6], rows[7]]))
    assert (again.created, again.updated, again.skipped, again.failed) == (0, 0, 3, 0)
    assert await adjust(stubs, a.id, 0) == 7
    assert await adjust(stubs, existing.id, 0) == 50
    # The same key as the REST API's initial stocking: a retry of it is a no-op.
    assert await adjust(stubs, a.id, 7, f"initial-stock:{a.id}") == 7


async def test_bulk_create_products_with_no_rows(stubs: Stubs) -> None:
    summary = await stubs.product.BulkCreateProducts(iter([]))
    assert summary == prod.BulkCreateProductsSummary()


async def test_product_served_alone_sets_stock_through_inventory(
    stubs: Stubs, engine: Engine
) -> None:
    inventory, inventory_port = create_server("127.0.0.1:0", engine, ("inventory",), fault_rate=0)
    product, product_port = create_server(
        "127.0.0.1:0",
        engine,
        ("product",),
        fault_rate=0,
        inventory_target=f"127.0.0.1:{inventory_port}",
    )
    nowhere, nowhere_port = create_server(
        "127.0.0.1:0",
        engine,
        ("product",),
        fault_rate=0,
        inventory_target=f"127.0.0.1:{free_port()}",
    )
    for server in (inventory, product, nowhere):
        await server.start()
    tag = uuid.uuid4().hex[:10]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{product_port}") as channel:
            summary = await product_pb2_grpc.ProductServiceStub(channel).BulkCreateProducts(
                iter([row(f"R-{tag}", id=f"r-{tag}", stock=4)])
            )
        assert (summary.created, summary.failed) == (1, 0)
        assert await adjust(stubs, f"r-{tag}", 0) == 4

        async with grpc.aio.insecure_channel(f"127.0.0.1:{nowhere_port}") as channel:
            summary = await product_pb2_grpc.ProductServiceStub(channel).BulkCreateProducts(
                iter([row(f"N-{tag}", id=f"n-{tag}", stock=4)])
            )
        assert (summary.created, summary.failed) == (0, 1)
        (error,) = summary.errors
        assert "initial stock was not set" in error.message
        assert f"initial-stock:n-{tag}" in error.message
    finally:
        for server in (inventory, product, nowhere):
            await server.stop(None)


# --- SyncInventory ----------------------------------------------------------------------


def adjustment(product_id: str, delta: int, key: str) -> inv.StockAdjustment:
    return inv.StockAdjustment(product_id=product_id, delta=delta, idempotency_key=key)


async def test_sync_inventory_acks_each_adjustment_in_order(stubs: Stubs) -> None:
    products = [uid("p-") for _ in range(3)]
    batch = [adjustment(p, d, f"{p}:{d}") for d in (5, 2, 1) for p in products]

    async def slowly() -> AsyncIterator[inv.StockAdjustment]:
        for item in batch:
            yield item
            await asyncio.sleep(0)

    acks = [a async for a in stubs.inventory.SyncInventory(slowly())]
    assert [(a.idempotency_key, a.product_id, a.ok) for a in acks] == [
        (b.idempotency_key, b.product_id, True) for b in batch
    ]
    assert [a.available for a in acks] == [5, 5, 5, 7, 7, 7, 8, 8, 8]


async def test_sync_inventory_reports_errors_per_message_and_goes_on(stubs: Stubs) -> None:
    product_id, key = uid("p-"), uid()
    # A bidirectional call driven with write() and read(): no request iterator.
    call = stubs.inventory.SyncInventory()  # type: ignore[call-arg]

    async def send(item: inv.StockAdjustment) -> inv.StockAdjustmentAck:
        await call.write(item)
        ack: inv.StockAdjustmentAck = await next_of(call)
        assert (ack.idempotency_key, ack.product_id) == (item.idempotency_key, item.product_id)
        return ack

    first = await send(adjustment(product_id, 10, key))
    assert (first.ok, first.available, first.error) == (True, 10, "")
    repeat = await send(adjustment(product_id, 10, key))
    assert (repeat.ok, repeat.available) == (True, 10)  # not applied twice
    below = await send(adjustment(product_id, -50, uid()))
    assert (below.ok, below.reason) == (False, "INSUFFICIENT_STOCK")
    assert "below zero" in below.error
    invalid = await send(adjustment("", 1, uid()))
    assert (invalid.ok, invalid.reason) == (False, "INVALID_ARGUMENT")
    no_key = await send(adjustment(product_id, 1, ""))
    assert (no_key.ok, no_key.reason) == (False, "INVALID_ARGUMENT")
    last = await send(adjustment(product_id, -4, uid()))
    assert (last.ok, last.available) == (True, 6)
    await call.done_writing()
    assert await asyncio.wait_for(call.read(), WAIT) is EOF
    assert await call.code() == grpc.StatusCode.OK
    level = await stubs.inventory.GetStock(inv.GetStockRequest(product_id=product_id))
    assert level.available == 6


# --- Fault injection --------------------------------------------------------------------


async def test_fault_injection_faults_unary_and_passes_streams_through(engine: Engine) -> None:
    server, port = create_server(
        "127.0.0.1:0", engine, ("inventory", "product"), fault_rate=1.0, fault_seed=3
    )
    await server.start()
    before = sum(INJECTED.values())
    product_id = uid("p-")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            inventory = inventory_pb2_grpc.InventoryServiceStub(channel)
            try:
                await inventory.AdjustStock(
                    inv.AdjustStockRequest(product_id=product_id, delta=1, idempotency_key=uid())
                )
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE
            else:
                raise AssertionError("no fault injected at rate 1.0")
            assert sum(INJECTED.values()) == before + 1

            acks = [
                a
                async for a in inventory.SyncInventory(
                    iter([adjustment(product_id, 3, uid()), adjustment(product_id, 2, uid())])
                )
            ]
            assert [a.ok for a in acks] == [True, True]
            assert acks[-1].available in (5, 6)  # 6 when the faulted call committed first

            watch = inventory.WatchStock(inv.WatchStockRequest(product_ids=[product_id]))
            assert (await next_of(watch)).available == acks[-1].available
            watch.cancel()

            tag = uuid.uuid4().hex[:10]
            summary = await product_pb2_grpc.ProductServiceStub(channel).BulkCreateProducts(
                iter([row(f"F-{tag}", stock=2)])
            )
            assert (summary.created, summary.failed) == (1, 0)
    finally:
        await server.stop(None)
    assert sum(INJECTED.values()) == before + 1  # the streams were never faulted


# --- The import CLI ---------------------------------------------------------------------


async def run_import(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.product.import_csv",
        *args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_import_csv_cli(stubs: Stubs, engine: Engine, tmp_path: Path) -> None:
    server, port = create_server("127.0.0.1:0", engine, fault_rate=0)
    await server.start()
    target = f"127.0.0.1:{port}"
    try:
        code, out, err = await run_import(str(EXAMPLE_CSV), "--target", target)
        assert code == 0, out + err
        assert "10 rows: 10 created, 0 updated, 0 unchanged, 0 failed" in out
        assert "sent 10/10 rows" in err
        mug = await product_by_sku(stubs, "EX-MUG-001", "kitchen")
        assert (mug.name, mug.price_cents) == ("Enamel camp mug", 1450)
        assert await adjust(stubs, mug.id, 0) == 120

        # Again, with the target from GRPC_TARGET: everything exists, nothing changes.
        code, out, err = await run_import(str(EXAMPLE_CSV), env={"GRPC_TARGET": target})
        assert code == 0, out + err
        assert "10 rows: 0 created, 0 updated, 10 unchanged, 0 failed" in out
        assert await adjust(stubs, mug.id, 0) == 120

        tag = uuid.uuid4().hex[:10]
        bad = tmp_path / "bad.csv"
        lines = ["sku,name,description,price_cents,category,stock"]
        lines += [f"OK{i}-{tag},Fine {i},,{100 + i},cli,{i}" for i in range(149)]
        lines += [f"P-{tag},Bad price,,abc,cli,1", f"N-{tag},,,100,cli,1"]
        bad.write_text("\n".join(lines) + "\n")
        code, out, err = await run_import(str(bad), "--target", target)
        assert code == 1, out + err
        assert "151 rows: 149 created, 0 updated, 0 unchanged, 2 failed" in out
        assert f"row 150 (sku P-{tag}): price_cents is not an integer" in out
        assert f"row 151 (sku N-{tag}): name is required" in out
        assert "sent 100/150 rows" in err and "sent 150/150 rows" in err

        code, _, err = await run_import(str(tmp_path / "missing.csv"), "--target", target)
        assert code == 2 and "missing.csv" in err
        no_price = tmp_path / "no_price.csv"
        no_price.write_text("sku,name\nX,Y\n")
        code, _, err = await run_import(str(no_price), "--target", target)
        assert code == 2 and "price_cents" in err
    finally:
        await server.stop(None)
    code, _, err = await run_import(
        str(EXAMPLE_CSV), "--target", f"127.0.0.1:{free_port()}", "--timeout", "10"
    )
    assert code == 3 and "UNAVAILABLE" in err
