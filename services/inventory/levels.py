"""Stock levels as the service answers and streams them: with the low-stock flag."""

from __future__ import annotations

from sqlmodel import Session, col, select

from proto.shop.v1 import inventory_pb2
from services.inventory.models import DEFAULT_LOW_STOCK_THRESHOLD, ThresholdRow


def stock_level(
    product_id: str, available: int, threshold: int = DEFAULT_LOW_STOCK_THRESHOLD
) -> inventory_pb2.StockLevel:
    """A level with its low-stock flag: below the threshold is low (0: never low)."""
    return inventory_pb2.StockLevel(
        product_id=product_id,
        available=available,
        low_stock_threshold=threshold,
        low_stock=available < threshold,
    )


def threshold_of(session: Session, product_id: str) -> int:
    row = session.get(ThresholdRow, product_id)
    return DEFAULT_LOW_STOCK_THRESHOLD if row is None else row.low_stock_threshold


def thresholds_of(session: Session, ids: list[str]) -> dict[str, int]:
    """The thresholds set for `ids` (every one set when `ids` is empty)."""
    query = select(ThresholdRow)
    if ids:
        query = query.where(col(ThresholdRow.product_id).in_(ids))
    return {r.product_id: r.low_stock_threshold for r in session.exec(query).all()}
