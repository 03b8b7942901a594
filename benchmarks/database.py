"""The shop's database for one benchmark run: SQLite in the run's DATA_DIR, or a fresh
`bench_<random>` database on a PostgreSQL server, dropped after the run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url


def backend(url: str) -> str:
    """`sqlite` or `postgresql`."""
    return make_url(url).get_backend_name()


@contextmanager
def fresh_database(server_url: str | None, data_dir: Path) -> Iterator[str]:
    """The DATABASE_URL of an empty database: `shop.db` in `data_dir` without `server_url`
    (or with a SQLite one), else a new database on `server_url`'s PostgreSQL server (its
    database name is ignored), dropped, connections and all, when the block exits."""
    if server_url is None or backend(server_url) == "sqlite":
        yield f"sqlite:///{data_dir}/shop.db"
        return
    url = make_url(server_url)
    # Databases are created from the server's maintenance database, `postgres`.
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
