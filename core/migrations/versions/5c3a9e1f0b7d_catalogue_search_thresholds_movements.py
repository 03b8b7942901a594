"""The catalogue: low-stock thresholds (product and inventory's copy), the reason and actor
of stock adjustments, and the indexes of catalogue search (keyset by sku per filter; on
PostgreSQL a GIN trigram index over name, description and sku for `q`).

Revision ID: 5c3a9e1f0b7d
Revises: 74d7d0147e56
Create Date: 2026-11-30 14:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c3a9e1f0b7d"
down_revision: str | Sequence[str] | None = "74d7d0147e56"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCHED = ("name", "description", "sku")


def _search_index(column: str) -> str:
    return f"ix_product_products_{column}_trgm"


def _create_search_indexes() -> None:
    """PostgreSQL: pg_trgm's GIN index on each column serves ILIKE '%q%' on it.

    The extension is database-wide (installed in `public` if missing); its operator class
    is named with the schema it lives in, so a schema whose search_path lacks that one (the
    tests' per-schema databases) still finds it.
    """
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
    schema = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT n.nspname FROM pg_extension e "
                "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
            )
        )
        .scalar_one()
    )
    for column in SEARCHED:
        op.execute(
            f"CREATE INDEX {_search_index(column)} ON product_products "
            f'USING gin ({column} "{schema}".gin_trgm_ops)'
        )


def upgrade() -> None:
    with op.batch_alter_table("product_products", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("low_stock_threshold", sa.BigInteger(), server_default="5", nullable=False)
        )
        batch_op.create_index("ix_product_products_active_sku", ["active", "sku"], unique=False)
        batch_op.create_index(
            "ix_product_products_category_active_sku", ["category", "active", "sku"], unique=False
        )
        # The composite index serves category alone too.
        batch_op.drop_index("ix_product_products_category")
    if op.get_bind().dialect.name == "postgresql":
        _create_search_indexes()
    else:
        # No index serves LIKE '%q%' on SQLite: empty partial ones keep the names alike.
        with op.batch_alter_table("product_products", schema=None) as batch_op:
            for column in SEARCHED:
                batch_op.create_index(_search_index(column), [column], sqlite_where=sa.text("0"))

    with op.batch_alter_table("inventory_adjustments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reason", sa.String(length=200), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("actor", sa.String(length=128), server_default="", nullable=False)
        )

    op.create_table(
        "inventory_low_stock_thresholds",
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("low_stock_threshold", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("product_id"),
    )


def downgrade() -> None:
    op.drop_table("inventory_low_stock_thresholds")
    with op.batch_alter_table("inventory_adjustments", schema=None) as batch_op:
        batch_op.drop_column("actor")
        batch_op.drop_column("reason")
    with op.batch_alter_table("product_products", schema=None) as batch_op:
        for column in SEARCHED:
            batch_op.drop_index(_search_index(column))
        batch_op.create_index("ix_product_products_category", ["category"], unique=False)
        batch_op.drop_index("ix_product_products_category_active_sku")
        batch_op.drop_index("ix_product_products_active_sku")
        batch_op.drop_column("low_stock_threshold")
