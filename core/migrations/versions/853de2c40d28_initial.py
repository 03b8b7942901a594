"""The shop's tables: each service's and the order read model.

Revision ID: 853de2c40d28
Revises:
Create Date: 2026-11-30 12:23:01.982197
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "853de2c40d28"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inventory_adjustments",
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key"),
    )
    op.create_index(
        "ix_inventory_adjustments_product_id", "inventory_adjustments", ["product_id"], unique=False
    )
    op.create_table(
        "inventory_reservations",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_table(
        "inventory_stock",
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("available", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("available >= 0", name="inventory_stock_available_nonneg"),
        sa.PrimaryKeyConstraint("product_id"),
    )
    op.create_table(
        "notification_notifications",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.String(length=2000), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index(
        "ix_notification_notifications_order_id",
        "notification_notifications",
        ["order_id"],
        unique=False,
    )
    op.create_index(
        "ix_notification_notifications_user_id",
        "notification_notifications",
        ["user_id"],
        unique=False,
    )
    op.create_table(
        "orders_orders",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("payment_status", sa.String(length=16), nullable=False),
        sa.Column("failure_reason", sa.String(length=32), nullable=True),
        sa.Column("cancel_reason", sa.String(length=500), nullable=True),
        sa.Column("card_last4", sa.String(length=4), nullable=False),
        sa.Column("items", sa.JSON(), nullable=True),
        sa.Column("history", sa.JSON(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("ix_orders_orders_user_id", "orders_orders", ["user_id"], unique=False)
    op.create_table(
        "payment_ledger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index("ix_payment_ledger_order_id", "payment_ledger", ["order_id"], unique=False)
    op.create_table(
        "payment_orders",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("card_last4", sa.String(length=4), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_table(
        "product_products",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("price_cents", sa.BigInteger(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sku"),
    )
    op.create_index("ix_product_products_category", "product_products", ["category"], unique=False)
    op.create_table(
        "user_users",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("email_key", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email_key"),
    )
    op.create_table(
        "inventory_reservation_lines",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["inventory_reservations.order_id"],
        ),
        sa.PrimaryKeyConstraint("order_id", "product_id"),
    )


def downgrade() -> None:
    op.drop_table("inventory_reservation_lines")
    op.drop_table("user_users")
    op.drop_index("ix_product_products_category", table_name="product_products")
    op.drop_table("product_products")
    op.drop_table("payment_orders")
    op.drop_index("ix_payment_ledger_order_id", table_name="payment_ledger")
    op.drop_table("payment_ledger")
    op.drop_index("ix_orders_orders_user_id", table_name="orders_orders")
    op.drop_table("orders_orders")
    op.drop_index("ix_notification_notifications_user_id", table_name="notification_notifications")
    op.drop_index("ix_notification_notifications_order_id", table_name="notification_notifications")
    op.drop_table("notification_notifications")
    op.drop_table("inventory_stock")
    op.drop_table("inventory_reservations")
    op.drop_index("ix_inventory_adjustments_product_id", table_name="inventory_adjustments")
    op.drop_table("inventory_adjustments")
