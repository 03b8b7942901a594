"""Reads and writes of the order read model.

SQL expressions (Core) on a plain `Connection` (core.db.run_sql), not ORM objects: the
workflow writes a row on every status change and order streams read them, so these are hot
paths.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    TEXT,
    ColumnElement,
    Connection,
    Executable,
    RowMapping,
    Select,
    Table,
    bindparam,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.messages import OrderSnapshot
from orders.models import OrderRecord, utcnow

ORDERS: Table = OrderRecord.__table__  # type: ignore[attr-defined]  # set by SQLModel at run time
SNAPSHOT_COLUMNS = (
    "order_id",
    "user_id",
    "status",
    "items",
    "total_cents",
    "payment_status",
    "failure_reason",
    "cancel_reason",
    "card_last4",
    "shipping_address",
    "history",
    "version",
)
_SNAPSHOTS = select(*(ORDERS.c[name] for name in SNAPSHOT_COLUMNS))
# Built once, executed with parameters: building a statement costs SQLAlchemy more than
# SQLite takes to run it (the upsert: 1.8 ms of CPU a save, 0.54 ms prebuilt;
# docs/benchmarks.md).
_BY_ID = _SNAPSHOTS.where(ORDERS.c.order_id == bindparam("order_id"))
_WRITTEN = (*SNAPSHOT_COLUMNS, "updated_at")
_BY_IDS = ORDERS.c.order_id.in_(bindparam("ids", expanding=True))
_VERSIONS = select(ORDERS.c.order_id, ORDERS.c.version).where(_BY_IDS)
CHUNK = 500  # ids per IN (...), well within SQLite's and PostgreSQL's parameter limits
# On PostgreSQL every save that writes also NOTIFYs this channel with "<order id> <version>",
# delivered when its transaction commits: the API's OrderWatch LISTENs, so an order stream
# learns of a change at once instead of at its next read (api/watch.py).
CHANGES_CHANNEL = "shop_order_changes"


def apply_snapshot(db: Connection, snap: OrderSnapshot) -> bool:
    """Stores the snapshot unless the row already holds the same or a newer version.

    Activities may be retried and run out of order; the version makes the write idempotent
    and keeps a late retry from overwriting a newer state. One statement (an upsert whose
    update applies only to an older row), atomic on SQLite and PostgreSQL alike, and no
    read first. Returns whether it wrote.
    """
    data = snap.model_dump(mode="json")
    values = {name: data[name] for name in SNAPSHOT_COLUMNS} | {"updated_at": utcnow()}
    # A row comes back only when it was inserted or updated (rowcount is not reliable here).
    return db.execute(_upsert(db.dialect.name), values).first() is not None


@functools.cache
def _upsert(dialect: str) -> Executable:
    """apply_snapshot's statement for the dialect, its values bound by name. On PostgreSQL
    the written row is announced on CHANGES_CHANNEL in the same statement (one round trip;
    nothing is announced when the version was not newer, or if the transaction rolls back)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    bound = {name: bindparam(name, type_=ORDERS.c[name].type) for name in _WRITTEN}
    row = insert(ORDERS).values(bound | {"created_at": bound["updated_at"]})
    upsert = row.on_conflict_do_update(
        index_elements=[ORDERS.c.order_id],
        set_={name: row.excluded[name] for name in _WRITTEN if name != "order_id"},
        where=ORDERS.c.version < row.excluded.version,
    )
    if dialect != "postgresql":
        return upsert.returning(ORDERS.c.order_id)
    written = upsert.returning(ORDERS.c.order_id, ORDERS.c.version).cte("written")
    payload = written.c.order_id + literal(" ") + cast(written.c.version, TEXT)
    return _notify(payload)


def _notify(payload: ColumnElement[str]) -> Select[tuple[None]]:
    """SELECT pg_notify(CHANGES_CHANNEL, payload): sent when the transaction commits."""
    return select(func.pg_notify(literal(CHANGES_CHANNEL), payload))


def announce(db: Connection, payload: str) -> None:
    """NOTIFYs CHANGES_CHANNEL with `payload` when the transaction commits (PostgreSQL)."""
    db.execute(_notify(literal(payload)))


def parse_change(payload: str) -> tuple[str, int] | None:
    """(order id, version) from a CHANGES_CHANNEL notification; None if it is not one."""
    order_id, _, version = payload.partition(" ")
    return (order_id, int(version)) if order_id and version.isdigit() else None


def to_snapshot(row: RowMapping | Mapping[str, Any]) -> OrderSnapshot:
    return OrderSnapshot.model_validate({name: row[name] for name in SNAPSHOT_COLUMNS})


def get_order(db: Connection, order_id: str) -> OrderSnapshot | None:
    row = db.execute(_BY_ID, {"order_id": order_id}).mappings().first()
    return to_snapshot(row) if row else None


def get_orders(db: Connection, ids: Sequence[str]) -> dict[str, OrderSnapshot]:
    """The stored orders among `ids`, by id."""
    found: dict[str, OrderSnapshot] = {}
    for chunk in _chunks(ids):
        for row in db.execute(_SNAPSHOTS.where(_BY_IDS), {"ids": chunk}).mappings():
            found[row["order_id"]] = to_snapshot(row)
    return found


def versions(db: Connection, ids: Sequence[str]) -> dict[str, int]:
    """The stored version of each order among `ids` (absent when not stored yet)."""
    found: dict[str, int] = {}
    for chunk in _chunks(ids):
        for order_id, version in db.execute(_VERSIONS, {"ids": chunk}):
            found[order_id] = version
    return found


def list_orders(
    db: Connection, user_id: str | None = None, status: str | None = None, limit: int = 100
) -> list[OrderSnapshot]:
    stmt = _SNAPSHOTS.order_by(ORDERS.c.created_at.desc()).limit(limit)
    if user_id:
        stmt = stmt.where(ORDERS.c.user_id == user_id)
    if status:
        stmt = stmt.where(ORDERS.c.status == status)
    return [to_snapshot(row) for row in db.execute(stmt).mappings()]


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])
