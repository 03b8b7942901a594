"""Reads and writes of the order read model."""

from __future__ import annotations

from sqlmodel import Session, col, select

from core.types import OrderSnapshot
from orders.models import OrderRecord, utcnow


def apply_snapshot(session: Session, snap: OrderSnapshot) -> bool:
    """Stores the snapshot unless the row already holds the same or a newer version.

    Activities may be retried and run out of order; the version makes the write idempotent
    and keeps a late retry from overwriting a newer state. Returns whether it wrote.
    """
    row = session.get(OrderRecord, snap.order_id, with_for_update=True)
    data = snap.model_dump(mode="json")
    if row is None:
        row = OrderRecord(order_id=snap.order_id, user_id=snap.user_id, status=snap.status)
    elif row.version >= snap.version:
        return False
    row.user_id = snap.user_id
    row.status = snap.status
    row.total_cents = snap.total_cents
    row.payment_status = snap.payment_status
    row.failure_reason = snap.failure_reason
    row.card_last4 = snap.card_last4
    row.items = data["items"]
    row.history = data["history"]
    row.version = snap.version
    row.updated_at = utcnow()
    session.add(row)
    return True


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
