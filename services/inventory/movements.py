"""A product's stock movements (who, why, when): the adjustments, and the reservations and
releases of orders, read from the tables that already record them."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from proto.shop.v1 import inventory_pb2
from services.common import rfc3339
from services.inventory.models import (
    RELEASED,
    AdjustmentRow,
    ReservationLineRow,
    ReservationRow,
)

RESERVED_REASON = "reserved"
RELEASED_REASON = "released"


def order_actor(order_id: str) -> str:
    return f"order:{order_id}"


def _sort_key(at: datetime) -> datetime:
    # SQLite hands back naive datetimes (UTC here); make them comparable with aware ones.
    return at.replace(tzinfo=None)


def list_movements(
    session: Session, product_id: str, limit: int
) -> list[inventory_pb2.StockMovement]:
    """The newest `limit` movements of a product, newest first."""
    found: list[tuple[datetime, inventory_pb2.StockMovement]] = []
    adjustments = session.exec(
        select(AdjustmentRow)
        .where(AdjustmentRow.product_id == product_id)
        .order_by(col(AdjustmentRow.created_at).desc())
        .limit(limit)
    ).all()
    for a in adjustments:
        movement = inventory_pb2.StockMovement(
            delta=a.delta, reason=a.reason, actor=a.actor, at=rfc3339(a.created_at)
        )
        found.append((a.created_at, movement))
    orders = session.exec(
        select(ReservationRow, ReservationLineRow)
        .join(ReservationLineRow, col(ReservationLineRow.order_id) == ReservationRow.order_id)
        .where(ReservationLineRow.product_id == product_id)
        .order_by(col(ReservationRow.updated_at).desc())
        .limit(limit)
    ).all()
    for reservation, line in orders:
        actor = order_actor(reservation.order_id)
        found.append(
            (
                reservation.created_at,
                inventory_pb2.StockMovement(
                    delta=-line.quantity,
                    reason=RESERVED_REASON,
                    actor=actor,
                    at=rfc3339(reservation.created_at),
                ),
            )
        )
        if reservation.status == RELEASED:
            found.append(
                (
                    reservation.updated_at,
                    inventory_pb2.StockMovement(
                        delta=line.quantity,
                        reason=RELEASED_REASON,
                        actor=actor,
                        at=rfc3339(reservation.updated_at),
                    ),
                )
            )
    found.sort(key=lambda pair: _sort_key(pair[0]), reverse=True)
    return [movement for _, movement in found[:limit]]
