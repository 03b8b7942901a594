from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from services.common import Timestamp, utcnow


class UserRow(SQLModel, table=True):
    __tablename__ = "user_users"

    id: str = Field(primary_key=True, max_length=64)
    email: str = Field(max_length=254)
    # Lower-cased email: uniqueness is case-insensitive on every backend.
    email_key: str = Field(max_length=254, unique=True)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
