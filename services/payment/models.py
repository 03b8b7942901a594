from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Enum
from sqlmodel import Field, SQLModel

from core.messages import PaymentStatus
from services.common import Timestamp, utcnow

CAPTURE = "CAPTURE"
REFUND = "REFUND"
DECLINE = "DECLINE"


class PaymentRow(SQLModel, table=True):
    """An order's payment state. Only the card's last four digits are ever stored."""

    __tablename__ = "payment_orders"

    order_id: str = Field(primary_key=True, max_length=64)
    # VARCHAR(16) holding the member's name (= its value), read back as the enum.
    status: PaymentStatus = Field(
        default=PaymentStatus.NONE, sa_type=Enum(PaymentStatus, native_enum=False, length=16)
    )
    amount_cents: int = Field(default=0, sa_type=BigInteger)
    card_last4: str = Field(default="", max_length=4)
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class LedgerRow(SQLModel, table=True):
    __tablename__ = "payment_ledger"

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(max_length=64, index=True)
    type: str = Field(max_length=16)
    amount_cents: int = Field(sa_type=BigInteger)
    idempotency_key: str = Field(max_length=128, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
