from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, text
from sqlmodel import Field, SQLModel

from services.common import Timestamp, utcnow
from services.inventory.models import DEFAULT_LOW_STOCK_THRESHOLD

# GIN trigram indexes that serve `q` (ILIKE '%...%' on each column) on PostgreSQL; the
# migration creates them with pg_trgm's operator class qualified by its schema. SQLite has
# no index for LIKE '%q%': there each is partial and empty (no write costs anything), so
# both schemas name the same indexes.
SEARCHED = ("name", "description", "sku")
SEARCH_INDEXES = {column: f"ix_product_products_{column}_trgm" for column in SEARCHED}


def _search_index(column: str) -> Index:
    return Index(
        SEARCH_INDEXES[column],
        column,
        postgresql_using="gin",
        postgresql_ops={column: "gin_trgm_ops"},
        sqlite_where=text("0"),
    )


class ProductRow(SQLModel, table=True):
    __tablename__ = "product_products"
    # The keyset order is sku (unique); each filter has an index that ends in it, so a
    # page is an index range scan: active alone, and category (with active).
    __table_args__ = (
        Index("ix_product_products_active_sku", "active", "sku"),
        Index("ix_product_products_category_active_sku", "category", "active", "sku"),
        *(_search_index(column) for column in SEARCHED),
    )

    id: str = Field(primary_key=True, max_length=64)
    sku: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    price_cents: int = Field(sa_type=BigInteger)
    category: str = Field(default="", max_length=64)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    low_stock_threshold: int = Field(
        default=DEFAULT_LOW_STOCK_THRESHOLD,
        sa_type=BigInteger,
        sa_column_kwargs={"server_default": str(DEFAULT_LOW_STOCK_THRESHOLD)},
    )
