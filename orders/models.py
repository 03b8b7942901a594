from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class OrderRecord(SQLModel, table=True):
    __tablename__ = "orders_orders"

    order_id: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(index=True, max_length=64)
    status: str = Field(max_length=16)
    total_cents: int = 0
    payment_status: str = Field(default="NONE", max_length=16)
    failure_reason: str | None = Field(default=None, max_length=200)
    card_last4: str = Field(default="", max_length=4)
    items: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    history: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    version: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


TABLES = [OrderRecord]
