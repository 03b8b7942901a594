from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from services.common import Timestamp, utcnow


class ProductRow(SQLModel, table=True):
    __tablename__ = "product_products"

    id: str = Field(primary_key=True, max_length=64)
    sku: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    price_cents: int = Field(sa_type=BigInteger)
    category: str = Field(default="", max_length=64, index=True)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
