from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Connection, Engine, text
from sqlmodel import Field, SQLModel

from core.db import CREATE_TABLES_LOCK_KEY, create_tables
from core.messages import CANCEL_REASON_MAX


def utcnow() -> datetime:
    return datetime.now(UTC)


class OrderRecord(SQLModel, table=True):
    __tablename__ = "orders_orders"

    order_id: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(index=True, max_length=64)
    status: str = Field(max_length=16)
    # Up to a million units at up to $1bn each: far beyond a 32-bit INTEGER's $21M.
    total_cents: int = Field(default=0, sa_type=BigInteger)
    payment_status: str = Field(default="NONE", max_length=16)
    failure_reason: str | None = Field(default=None, max_length=32)
    cancel_reason: str | None = Field(default=None, max_length=CANCEL_REASON_MAX)
    card_last4: str = Field(default="", max_length=4)
    items: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    history: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    version: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


TABLES = [OrderRecord]


def create_order_tables(engine: Engine) -> None:
    """Creates the order tables and brings those of earlier releases up to date.

    Idempotent, and safe from processes starting at once: on PostgreSQL the upgrade takes
    create_tables' advisory lock, so each process finds what its predecessor committed.
    SQLite needs no upgrade (its integers are 64-bit whatever the declared type).
    """
    create_tables(engine, TABLES)
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CREATE_TABLES_LOCK_KEY})
        _widen_total_cents(conn)


_TOTAL_CENTS_TYPE = text(
    "SELECT data_type FROM information_schema.columns"
    " WHERE table_schema = current_schema() AND table_name = 'orders_orders'"
    " AND column_name = 'total_cents'"
)


def _widen_total_cents(conn: Connection) -> None:
    # Releases before BigInteger created a 32-bit column: orders above $21M failed to save.
    if conn.execute(_TOTAL_CENTS_TYPE).scalar_one_or_none() == "integer":
        conn.execute(text("ALTER TABLE orders_orders ALTER COLUMN total_cents TYPE BIGINT"))
