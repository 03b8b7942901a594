"""Alembic's environment: migrates over the connection that `core.migrations.config` carries
(its caller holds the transaction and the lock)."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlalchemy import TypeDecorator

from core.migrations import metadata


def render_item(kind: str, obj: Any, _context: Any) -> str | Literal[False]:
    # SQLModel's column types (AutoString, UTCDateTime) only wrap SQLAlchemy's: a migration
    # names what the database holds, so it need not import sqlmodel.
    if (
        kind == "type"
        and isinstance(obj, TypeDecorator)
        and type(obj).__module__.startswith("sqlmodel.")
    ):
        return f"sa.{obj.impl!r}"
    return False


context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata(),
    render_item=render_item,
    # SQLite alters a table by copying it: autogenerate writes future changes that way.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
