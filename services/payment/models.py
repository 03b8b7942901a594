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


class CardRow(SQLModel, table=True):
    """A card token, bound to the customer who made it. The number itself is not kept: the
    simulated provider notes at tokenization how the card will behave (the test cards)."""

    __tablename__ = "payment_cards"

    token: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(max_length=64, index=True)
    brand: str = Field(max_length=16)
    last4: str = Field(max_length=4)
    # PAYS, DECLINES or FAILS_TWICE: what charges with this card do.
    behaviour: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class LedgerRow(SQLModel, table=True):
    __tablename__ = "payment_ledger"

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(max_length=64, index=True)
    type: str = Field(max_length=16)
    amount_cents: int = Field(sa_type=BigInteger)
    idempotency_key: str = Field(max_length=128, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
