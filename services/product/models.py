from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, text
from sqlmodel import Field, SQLModel

from services.common import Timestamp, utcnow
from services.inventory.models import DEFAULT_LOW_STOCK_THRESHOLD

# A GIN trigram index over name, description and sku that serves `q` (ILIKE '%...%') on
# PostgreSQL (the migration creates it with the operator class qualified by its schema).
SEARCH_INDEX = "ix_product_products_search"
_TRGM = "gin_trgm_ops"


class ProductRow(SQLModel, table=True):
    __tablename__ = "product_products"
    # The keyset order is sku (unique); each filter has an index that ends in it, so a
    # page is an index range scan: active alone, and category (with active).
    __table_args__ = (
        Index("ix_product_products_active_sku", "active", "sku"),
        Index("ix_product_products_category_active_sku", "category", "active", "sku"),
        Index(
            SEARCH_INDEX,
            "name",
            "description",
            "sku",
            postgresql_using="gin",
            postgresql_ops={"name": _TRGM, "description": _TRGM, "sku": _TRGM},
            # SQLite has no index for LIKE '%q%': there the index is partial and empty (it
            # costs no write), so both schemas name the same indexes.
            sqlite_where=text("0"),
        ),
    )

    id: str = Field(primary_key=True, max_length=64)
    sku: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    price_cents: int = Field(sa_type=BigInteger)
    category: str = Field(default="", max_length=64, index=True)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    low_stock_threshold: int = Field(
        default=DEFAULT_LOW_STOCK_THRESHOLD,
        sa_type=BigInteger,
        sa_column_kwargs={"server_default": str(DEFAULT_LOW_STOCK_THRESHOLD)},
    )
