from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from services.common import Timestamp, utcnow


class NotificationRow(SQLModel, table=True):
    __tablename__ = "notification_notifications"

    # Insertion order, so "oldest first" holds even for equal timestamps.
    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=64, unique=True)
    user_id: str = Field(max_length=64, index=True)
    order_id: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=32)
    message: str = Field(default="", max_length=2000)
    idempotency_key: str = Field(max_length=128, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
