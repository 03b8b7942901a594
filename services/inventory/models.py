from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, String
from sqlmodel import Field, SQLModel

from services.common import Timestamp, utcnow

RESERVED = "RESERVED"
RELEASED = "RELEASED"
# A product's low-stock threshold until the product service sets another (its default too).
DEFAULT_LOW_STOCK_THRESHOLD = 5
REASON_MAX = 200
ACTOR_MAX = 128


class StockRow(SQLModel, table=True):
    __tablename__ = "inventory_stock"
    __table_args__ = (CheckConstraint("available >= 0", name="inventory_stock_available_nonneg"),)

    product_id: str = Field(primary_key=True, max_length=64)
    available: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class AdjustmentRow(SQLModel, table=True):
    """One applied AdjustStock (a stock movement: who, why, when): its key's uniqueness is
    what makes a retry a no-op."""

    __tablename__ = "inventory_adjustments"

    idempotency_key: str = Field(primary_key=True, max_length=128)
    product_id: str = Field(max_length=64, index=True)
    delta: int = Field(sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    reason: str = Field(default="", max_length=REASON_MAX, sa_column_kwargs={"server_default": ""})
    actor: str = Field(default="", max_length=ACTOR_MAX, sa_column_kwargs={"server_default": ""})


class ThresholdRow(SQLModel, table=True):
    """Inventory's copy of a product's low_stock_threshold (the product service sets it)."""

    __tablename__ = "inventory_low_stock_thresholds"

    product_id: str = Field(primary_key=True, max_length=64)
    low_stock_threshold: int = Field(default=DEFAULT_LOW_STOCK_THRESHOLD, sa_type=BigInteger)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class ReservationRow(SQLModel, table=True):
    """An order's reservation; RELEASED with no lines is the tombstone of a release-first."""

    __tablename__ = "inventory_reservations"

    order_id: str = Field(primary_key=True, max_length=64)
    status: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class ReservationLineRow(SQLModel, table=True):
    __tablename__ = "inventory_reservation_lines"

    order_id: str = Field(
        sa_column=Column(
            String(64), ForeignKey("inventory_reservations.order_id"), primary_key=True
        )
    )
    product_id: str = Field(primary_key=True, max_length=64)
    quantity: int = Field(sa_type=BigInteger)
