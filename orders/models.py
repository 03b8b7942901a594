from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from core.messages import CANCEL_REASON_MAX


def utcnow() -> datetime:
    return datetime.now(UTC)


class OrderRecord(SQLModel, table=True):
    __tablename__ = "orders_orders"
    # The lists of GET /orders, newest first: a customer's (and by status), an admin's by
    # status, and everyone's; each walks its index and stops at the limit, however many
    # orders there are. Get by id and the watch's reads use the primary key.
    __table_args__ = (
        Index("ix_orders_orders_user_id_created_at", "user_id", "created_at"),
        Index("ix_orders_orders_status_created_at", "status", "created_at"),
        Index("ix_orders_orders_created_at", "created_at"),
    )

    order_id: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(max_length=64)
    status: str = Field(max_length=16)
    # Up to a million units at up to $1bn each: far beyond a 32-bit INTEGER's $21M.
    total_cents: int = Field(default=0, sa_type=BigInteger)
    payment_status: str = Field(default="NONE", max_length=16)
    failure_reason: str | None = Field(default=None, max_length=32)
    cancel_reason: str | None = Field(default=None, max_length=CANCEL_REASON_MAX)
    card_last4: str = Field(default="", max_length=4)
    shipping_address: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    items: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    history: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    version: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
