"""The order read model's lists use indexes: by customer, by status, and all, newest first.

The composite (user_id, created_at) replaces the index on user_id alone (its prefix).

Revision ID: b3c9e1f0a2d4
Revises: 5c3a9e1f0b7d
Create Date: 2026-11-30 14:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "b3c9e1f0a2d4"
down_revision: str | Sequence[str] | None = "5c3a9e1f0b7d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_orders_orders_user_id_created_at", "orders_orders", ["user_id", "created_at"]
    )
    op.create_index("ix_orders_orders_status_created_at", "orders_orders", ["status", "created_at"])
    op.create_index("ix_orders_orders_created_at", "orders_orders", ["created_at"])
    op.drop_index("ix_orders_orders_user_id", table_name="orders_orders")


def downgrade() -> None:
    op.create_index("ix_orders_orders_user_id", "orders_orders", ["user_id"])
    op.drop_index("ix_orders_orders_created_at", table_name="orders_orders")
    op.drop_index("ix_orders_orders_status_created_at", table_name="orders_orders")
    op.drop_index("ix_orders_orders_user_id_created_at", table_name="orders_orders")
