"""Card tokens (payment_cards) and the order's shipping address.

Revision ID: 27e1d51eaff6
Revises: 853de2c40d28
Create Date: 2026-11-30 13:07:08.053400
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "27e1d51eaff6"
down_revision: str | Sequence[str] | None = "853de2c40d28"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_cards",
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("brand", sa.String(length=16), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("behaviour", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token"),
    )
    with op.batch_alter_table("payment_cards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payment_cards_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("orders_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shipping_address", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders_orders", schema=None) as batch_op:
        batch_op.drop_column("shipping_address")

    with op.batch_alter_table("payment_cards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_cards_user_id"))

    op.drop_table("payment_cards")
