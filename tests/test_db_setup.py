"""create_tables from several processes at once on a fresh database, as at a compose start.

The API and every worker and service replica create their tables when they start; on a
fresh PostgreSQL database, concurrent CREATE TABLEs of the same table fail in all but one
(duplicate pg_type or relation) unless create_tables serializes them.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import inspect

from core.db import create_tables, make_engine
from orders.models import TABLES as ORDER_TABLES
from services.inventory.models import TABLES as INVENTORY_TABLES
from services.notification.models import TABLES as NOTIFICATION_TABLES
from services.payment.models import TABLES as PAYMENT_TABLES
from services.product.models import TABLES as PRODUCT_TABLES
from services.user.models import TABLES as USER_TABLES
from tests.db_urls import fresh_database_url

pytestmark = pytest.mark.timeout(120)

TABLES = [
    *USER_TABLES,
    *PRODUCT_TABLES,
    *INVENTORY_TABLES,
    *PAYMENT_TABLES,
    *NOTIFICATION_TABLES,
    *ORDER_TABLES,
]
NAMES = {t.__tablename__ for t in TABLES}
THREADS = 8
ROUNDS = 5


def _create_at_once(url: str) -> list[BaseException]:
    """Runs create_tables from THREADS threads, each with its own engine, released together."""
    engines = [make_engine(url) for _ in range(THREADS)]
    for engine in engines:  # connect first, so the threads race on DDL, not on connecting
        engine.connect().close()
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            create_tables(engines[i], TABLES)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert NAMES <= set(inspect(engines[0]).get_table_names())
    finally:
        for engine in engines:
            engine.dispose()
    return errors


def test_concurrent_create_tables_on_a_fresh_database(db_url: str) -> None:
    for _ in range(ROUNDS):
        errors = _create_at_once(fresh_database_url(db_url))
        assert errors == [], errors
