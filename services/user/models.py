from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from core.tokens import CUSTOMER_ROLE
from services.common import Timestamp, utcnow


class UserRow(SQLModel, table=True):
    __tablename__ = "user_users"

    id: str = Field(primary_key=True, max_length=64)
    email: str = Field(max_length=254)
    # Lower-cased email: uniqueness is case-insensitive on every backend.
    email_key: str = Field(max_length=254, unique=True)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    # Argon2 (PHC string); None: the user cannot log in (created before passwords).
    password_hash: str | None = Field(default=None, max_length=255)
    role: str = Field(
        default=CUSTOMER_ROLE, max_length=16, sa_column_kwargs={"server_default": CUSTOMER_ROLE}
    )
