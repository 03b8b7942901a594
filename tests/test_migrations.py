"""The Alembic migrations build exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from core import migrations
from core.db import make_engine, migrate
from tests.db_urls import fresh_database_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_engine(db_url: str) -> Iterator[Engine]:
    """An engine on an empty database of its own (a SQLite file, or a PostgreSQL schema)."""
    engine = make_engine(fresh_database_url(db_url))
    yield engine
    engine.dispose()


def head() -> str:
    revision = ScriptDirectory(str(Path(migrations.__file__).parent)).get_current_head()
    assert revision is not None
    return revision


def test_the_migrated_schema_is_the_models(fresh_engine: Engine) -> None:
    migrate(fresh_engine)
    with fresh_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, migrations.metadata()) == []
        assert context.get_current_revision() == head()


def test_migrating_again_changes_nothing_and_keeps_the_rows(fresh_engine: Engine) -> None:
    migrate(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO user_users (id, email, email_key, name, created_at)"
                " VALUES ('u1', 'a@x.io', 'a@x.io', 'A', :at)"
            ),
            {"at": "2026-01-01T00:00:00+00:00"},
        )
    migrate(fresh_engine)
    with fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM user_users")).scalars().all() == ["u1"]
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            head()
        ]


def test_python_m_core_migrations_migrates_database_url(tmp_path: Path) -> None:
    """What `make migrate` runs, from another working directory."""
    url = f"sqlite:///{tmp_path}/shop.db"
    done = subprocess.run(
        [sys.executable, "-m", "core.migrations"],
        cwd=tmp_path,
        env={**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    engine = make_engine(url)
    try:
        assert set(migrations.metadata().tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
