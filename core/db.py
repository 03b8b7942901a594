"""Database engines for SQLite (default) and PostgreSQL (psycopg), shared by every owner of tables.

Each service owns its tables (`<service>_*` names); `migrate` creates and upgrades them all,
with the order read model's. Servicers are async; SQLModel sessions are sync, so the
database work of one request runs in a worker thread through `run_db`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from alembic import command
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

from core import migrations, telemetry

T = TypeVar("T")

log = logging.getLogger(__name__)


def normalize_url(url: str) -> str:
    """Accepts `postgresql://` and `postgres://` for PostgreSQL and routes them to psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


WAL_ATTEMPTS = 600  # 30 s of 50 ms waits
READ_ONLY = "order_saga_read_only"  # execution option: see make_engine and run_db


def make_engine(url: str) -> Engine:
    """Creates an engine. SQLite gets WAL, a busy timeout and write-locking transactions.

    `BEGIN IMMEDIATE` takes SQLite's write lock when a transaction starts, so a
    read-then-write transaction (check an idempotency key, then insert) cannot interleave
    with another writer: SQLite's equivalent of `SELECT ... FOR UPDATE`.
    """
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=16,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions begin.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            _use_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Reads (run_db(..., read_only=True)) take no write lock: a deferred BEGIN reads
            # a consistent snapshot while a writer works (WAL), and never waits for one.
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return telemetry.traced(engine)
    return telemetry.traced(create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True))


def _use_wal(cur: sqlite3.Cursor) -> None:
    """Puts the database file in WAL mode, once: the mode is a property of the file.

    Switching needs the file to itself, and SQLite answers "database is locked" at once,
    without its busy timeout, while another connection holds it: processes opening a fresh
    database together (replicas starting at once) retry until one of them has switched it.
    """
    for _ in range(WAL_ATTEMPTS):
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err):
                raise
            time.sleep(0.05)
    raise sqlite3.OperationalError(f"database stayed locked for {WAL_ATTEMPTS} attempts")


# Key of the PostgreSQL advisory lock that serializes migrate ("ordrsaga" in ASCII).
MIGRATE_LOCK_KEY = 0x6F72647273616761
# Alembic's `context` and `op` are module-level proxies: one migration at a time per process.
_migrating = threading.Lock()


def migrate(engine: Engine) -> None:
    """Brings the database to the latest schema (the Alembic migrations in core/migrations).

    Every process runs this at start. On PostgreSQL the API, the workers and the services
    may all start at once on a fresh database, and concurrent CREATE TABLEs of one table
    fail in all but one (duplicate pg_type or relation): a transaction-scoped advisory lock
    makes them take turns, and each finds the schema its predecessor committed. SQLite's
    `BEGIN IMMEDIATE` (see make_engine) serializes them already.
    """
    with _migrating, engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK_KEY})
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(migrations.config(conn), "head")
        after = MigrationContext.configure(conn).get_current_revision()
    if after != before:
        log.info("database schema migrated from %s to %s", before or "nothing", after)


_read_only_engines: WeakKeyDictionary[Engine, Engine] = WeakKeyDictionary()


def _bind(engine: Engine, read_only: bool) -> Engine:
    """The engine, or its read-only variant (made once: options engines are not free)."""
    if not read_only:
        return engine
    bind = _read_only_engines.get(engine)
    if bind is None:
        bind = _read_only_engines[engine] = engine.execution_options(**{READ_ONLY: True})
    return bind


async def run_db(engine: Engine, fn: Callable[[Session], T], *, read_only: bool = False) -> T:
    """Runs `fn(session)` in a thread inside one transaction, committing when it returns.

    `read_only=True` for transactions that only read: on SQLite they then take no write lock.
    """
    bind = _bind(engine, read_only)

    def work() -> T:
        with Session(bind, expire_on_commit=False) as session:
            with session.begin():
                return fn(session)

    return await asyncio.to_thread(work)


async def run_sql(engine: Engine, fn: Callable[[Connection], T], *, read_only: bool = False) -> T:
    """`run_db` for SQL expression (Core) work: a plain connection in one transaction, without
    an ORM session's bookkeeping, for the hot paths (the order read model, the services'
    writes of every checkout: `services.common.transact_sql`)."""
    bind = _bind(engine, read_only)

    def work() -> T:
        with bind.begin() as conn:
            return fn(conn)

    return await asyncio.to_thread(work)
