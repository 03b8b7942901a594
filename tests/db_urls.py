"""Empty databases of their own for tests that create, alter or race on tables."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from core.db import make_engine


def fresh_database_url(db_url: str) -> str:
    """An empty database at `db_url`'s place: a new SQLite file beside it, or a new
    PostgreSQL schema, first on every connection's search_path, in the same database (so
    altering its tables leaves the other tests' alone)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        assert url.database
        return str(url.set(database=str(Path(url.database).parent / f"{uuid.uuid4().hex}.db")))
    schema = f"s_{uuid.uuid4().hex[:16]}"
    admin = make_engine(db_url)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    finally:
        admin.dispose()
    url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)
