"""migrate from several processes at once on a fresh database, as at a compose start.

The API and every worker and service replica migrate the database when they start; on a
fresh PostgreSQL database, concurrent CREATE TABLEs of the same table fail in all but one
(duplicate pg_type or relation) unless migrate serializes them. Processes, not threads:
Alembic runs one migration at a time per process anyway.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.synchronize import Barrier

import pytest
from sqlalchemy import inspect, text

from core import migrations
from core.db import make_engine, migrate
from tests.db_urls import fresh_database_url

pytestmark = pytest.mark.timeout(180)

PROCESSES = 8
ROUNDS = 5

_start: Barrier | None = None  # in each pool process: released when all are connected


def _init(start: Barrier) -> None:
    global _start
    _start = start


def _migrate(url: str) -> None:
    assert _start is not None
    engine = make_engine(url)
    try:
        engine.connect().close()  # connect first, so the processes race on DDL, not on connecting
        _start.wait(timeout=60)
        migrate(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    context = multiprocessing.get_context("spawn")  # no fork of the test process's threads
    start = context.Barrier(PROCESSES)
    with ProcessPoolExecutor(
        PROCESSES, mp_context=context, initializer=_init, initargs=(start,)
    ) as executor:
        yield executor


def test_concurrent_migrations_on_a_fresh_database(db_url: str, pool: ProcessPoolExecutor) -> None:
    tables = set(migrations.metadata().tables)
    for _ in range(ROUNDS):
        url = fresh_database_url(db_url)
        for done in [pool.submit(_migrate, url) for _ in range(PROCESSES)]:
            done.result(timeout=120)  # raises what a process raised
        engine = make_engine(url)
        try:
            assert tables <= set(inspect(engine).get_table_names())
            with engine.connect() as conn:
                versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            assert len(versions) == 1  # one process created the tables, the others found them
        finally:
            engine.dispose()
