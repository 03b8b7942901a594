"""Reservations as the service reads and answers them, and the lines of a request."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from core.errors import InvalidArgument
from proto.shop.v1 import inventory_pb2
from services.common import QUANTITY_MAX, ident, in_range
from services.inventory.models import RELEASED, RESERVED, ReservationLineRow, ReservationRow

_STATUS = {
    RESERVED: inventory_pb2.RESERVATION_STATUS_RESERVED,
    RELEASED: inventory_pb2.RESERVATION_STATUS_RELEASED,
}
MAX_LINES = 100


@dataclass
class Reservation:
    order_id: str
    status: str
    lines: list[tuple[str, int]] = field(default_factory=list)

    def to_pb(self) -> inventory_pb2.Reservation:
        return inventory_pb2.Reservation(
            order_id=self.order_id,
            status=_STATUS[self.status],
            lines=[inventory_pb2.ReservationLine(product_id=p, quantity=q) for p, q in self.lines],
        )


def read_reservation(session: Session, row: ReservationRow) -> Reservation:
    lines = session.exec(
        select(ReservationLineRow)
        .where(ReservationLineRow.order_id == row.order_id)
        .order_by(col(ReservationLineRow.product_id))
    ).all()
    return Reservation(row.order_id, row.status, [(ln.product_id, ln.quantity) for ln in lines])


def merge_lines(lines: list[inventory_pb2.ReservationLine]) -> list[tuple[str, int]]:
    """Sums quantities per product; sorted so concurrent orders lock rows in one order."""
    if not lines:
        raise InvalidArgument("lines must not be empty")
    if len(lines) > MAX_LINES:
        raise InvalidArgument(f"at most {MAX_LINES} lines")
    merged: dict[str, int] = {}
    for line in lines:
        product_id = ident("product_id", line.product_id)
        if line.quantity < 1:
            raise InvalidArgument(f"quantity of {product_id} must be at least 1")
        merged[product_id] = merged.get(product_id, 0) + line.quantity
    for product_id, quantity in merged.items():
        in_range(f"quantity of {product_id}", quantity, 1, QUANTITY_MAX)
    return sorted(merged.items())
