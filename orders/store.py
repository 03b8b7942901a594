"""Reads and writes of the order read model."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from core.types import OrderSnapshot
from orders.models import OrderRecord, utcnow


def apply_snapshot(session: Session, snap: OrderSnapshot) -> bool:
    """Stores the snapshot unless the row already holds the same or a newer version.

    Activities may be retried and run out of order; the version makes the write idempotent
    and keeps a late retry from overwriting a newer state. One statement (an upsert whose
    update applies only to an older row), atomic on SQLite and PostgreSQL alike, and no
    read first. Returns whether it wrote.
    """
    data = snap.model_dump(mode="json")
    values = {
        "order_id": snap.order_id,
        "user_id": snap.user_id,
        "status": snap.status.value,
        "total_cents": snap.total_cents,
        "payment_status": snap.payment_status.value,
        "failure_reason": snap.failure_reason,
        "card_last4": snap.card_last4,
        "items": data["items"],
        "history": data["history"],
        "version": snap.version,
        "updated_at": utcnow(),
    }
    table = OrderRecord.__table__
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(table).values(created_at=values["updated_at"], **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.order_id],
        set_={name: stmt.excluded[name] for name in values if name != "order_id"},
        where=table.c.version < stmt.excluded.version,
    ).returning(table.c.order_id)
    # A row comes back only when it was inserted or updated (rowcount is not reliable here).
    return session.execute(stmt).first() is not None


def to_snapshot(row: OrderRecord) -> OrderSnapshot:
    return OrderSnapshot.model_validate(
        {
            "order_id": row.order_id,
            "user_id": row.user_id,
            "status": row.status,
            "items": row.items,
            "total_cents": row.total_cents,
            "payment_status": row.payment_status,
            "failure_reason": row.failure_reason,
            "card_last4": row.card_last4,
            "history": row.history,
            "version": row.version,
        }
    )


def get_order(session: Session, order_id: str) -> OrderSnapshot | None:
    row = session.get(OrderRecord, order_id)
    return to_snapshot(row) if row else None


def list_orders(
    session: Session, user_id: str | None = None, status: str | None = None, limit: int = 100
) -> list[OrderSnapshot]:
    stmt = select(OrderRecord).order_by(col(OrderRecord.created_at).desc()).limit(limit)
    if user_id:
        stmt = stmt.where(OrderRecord.user_id == user_id)
    if status:
        stmt = stmt.where(OrderRecord.status == status)
    return [to_snapshot(r) for r in session.exec(stmt)]
