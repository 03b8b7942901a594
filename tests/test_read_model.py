"""The order read model: newest version wins, whatever order the saves arrive in, on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine

from core.db import create_tables, run_db
from core.types import OrderLine, OrderSnapshot, OrderStatus, PaymentStatus, StatusChange
from orders import store
from orders.models import TABLES


def snapshot(order_id: str, version: int, status: OrderStatus) -> OrderSnapshot:
    now = datetime.now(UTC)
    return OrderSnapshot(
        order_id=order_id,
        user_id="u-1",
        status=status,
        items=[OrderLine(product_id="p-1", quantity=2, unit_price_cents=150)],
        total_cents=300,
        payment_status=PaymentStatus.CAPTURED if version >= 3 else PaymentStatus.NONE,
        history=[StatusChange(status=status, at=now)] * version,
        version=version,
    )


async def save(engine: Engine, snap: OrderSnapshot) -> bool:
    return await run_db(engine, lambda s: store.apply_snapshot(s, snap))


async def stored(engine: Engine, order_id: str) -> OrderSnapshot | None:
    return await run_db(engine, lambda s: store.get_order(s, order_id), read_only=True)


async def test_newer_versions_win_and_late_or_repeated_saves_are_no_ops(engine: Engine) -> None:
    create_tables(engine, TABLES)
    order_id = uuid.uuid4().hex
    assert await stored(engine, order_id) is None
    assert await save(engine, snapshot(order_id, 2, OrderStatus.RESERVED)) is True
    # A late retry of an older save changes nothing.
    assert await save(engine, snapshot(order_id, 1, OrderStatus.PENDING)) is False
    got = await stored(engine, order_id)
    assert got is not None and got.status == OrderStatus.RESERVED and got.version == 2
    assert await save(engine, snapshot(order_id, 3, OrderStatus.PAID)) is True
    # The same save again (an activity retried after it committed) is a no-op.
    assert await save(engine, snapshot(order_id, 3, OrderStatus.PAID)) is False
    got = await stored(engine, order_id)
    assert got == snapshot(order_id, 3, OrderStatus.PAID).model_copy(
        update={"history": got.history}
    )
    assert got.payment_status == PaymentStatus.CAPTURED and len(got.history) == 3
    assert got.items[0].unit_price_cents == 150


async def test_concurrent_saves_keep_the_newest(engine: Engine) -> None:
    create_tables(engine, TABLES)
    order_id = uuid.uuid4().hex
    statuses = [OrderStatus.PENDING, OrderStatus.RESERVED, OrderStatus.PAID, OrderStatus.SHIPPED]
    snaps = [snapshot(order_id, v, statuses[(v - 1) % 4]) for v in range(1, 13)]
    random.Random(7).shuffle(snaps)
    wrote = await asyncio.gather(*(save(engine, s) for s in snaps))
    newest = snaps.index(max(snaps, key=lambda s: s.version))
    assert wrote[newest] is True  # nothing can be newer, so it always writes
    got = await stored(engine, order_id)
    assert got is not None and got.version == 12
