from __future__ import annotations

from datetime import datetime

from sqlalchemy import Enum
from sqlmodel import Field, SQLModel

from core.messages import NotificationKind
from services.common import Timestamp, utcnow


class NotificationRow(SQLModel, table=True):
    __tablename__ = "notification_notifications"

    # Insertion order, so "oldest first" holds even for equal timestamps.
    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=64, unique=True)
    user_id: str = Field(max_length=64, index=True)
    order_id: str = Field(max_length=64, index=True)
    # VARCHAR(32) holding the member's name (= its value), read back as the enum.
    kind: NotificationKind = Field(sa_type=Enum(NotificationKind, native_enum=False, length=32))
    message: str = Field(default="", max_length=2000)
    idempotency_key: str = Field(max_length=128, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
