"""Users get a password (its Argon2 hash) and a role (customer or admin).

Revision ID: 74d7d0147e56
Revises: 27e1d51eaff6
Create Date: 2026-11-30 13:06:25.910300
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "74d7d0147e56"
down_revision: str | Sequence[str] | None = "27e1d51eaff6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_hash", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("role", sa.String(length=16), server_default="customer", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("user_users", schema=None) as batch_op:
        batch_op.drop_column("role")
        batch_op.drop_column("password_hash")
