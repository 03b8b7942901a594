"""Catalogue search: each filter's query is served by an index (EXPLAIN; on PostgreSQL with
sequential scans priced out), and on both backends each returns exactly the products a
plain filter in Python finds; `benchmarks/catalogue.py` runs end to end on a tiny count."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine
from sqlmodel import Session, select

from benchmarks import catalogue as bench
from core.db import make_engine, migrate
from services.product.models import SEARCH_INDEXES, ProductRow
from services.product.search import Filters, category_counts, list_page, page_query
from tests.db_urls import fresh_database_url

COUNT = 3000


@pytest.fixture(scope="module")
def loaded(db_url: str) -> Iterator[Engine]:
    """A database of its own with COUNT products (ANALYZEd on PostgreSQL)."""
    engine = make_engine(fresh_database_url(db_url))
    migrate(engine)
    bench.load(engine, COUNT)
    yield engine
    engine.dispose()


def expected(rows: list[ProductRow], case: bench.Case, limit: int) -> list[str]:
    f, q = case.filters, case.filters.q.lower()
    found = sorted(
        r.sku
        for r in rows
        if (not f.category or r.category == f.category)
        and (f.active is None or r.active == f.active)
        and (not q or any(q in v.lower() for v in (r.name, r.description, r.sku)))
        and r.sku > case.after
    )
    return found[:limit]


def test_each_filter_finds_what_it_should(loaded: Engine) -> None:
    with Session(loaded) as session:
        rows = list(session.exec(select(ProductRow)).all())
        for case in bench.cases(COUNT):
            page, last = list_page(session, case.filters, 50, case.after)
            assert [r.sku for r in page] == expected(rows, case, 50), case.name
            assert last == (page[-1].sku if len(expected(rows, case, 51)) > 50 else "")
        counts = dict(category_counts(session))
        assert sum(counts.values()) == sum(r.active for r in rows)


def plan_of(conn: Connection, filters: Filters, after: str = "") -> str:
    compiled = page_query(filters, 50, after).compile(conn.engine)
    explain = "EXPLAIN " if conn.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    params: Any = (
        tuple(compiled.params[name] for name in compiled.positiontup or ())
        if compiled.positional
        else compiled.params
    )
    rows = conn.exec_driver_sql(explain + str(compiled), params).all()
    return "\n".join(str(row[-1]) for row in rows)


def test_each_filter_uses_an_index(loaded: Engine) -> None:
    """PostgreSQL: no filter needs a sequential scan, and `q` is served by the trigram
    indexes (which one the planner prefers among usable indexes depends on the data: at
    100,000 products `benchmarks/catalogue.py` shows the trigram indexes chosen for `q`).
    SQLite: every filter but `q` (LIKE '%q%' has no index there) searches an index."""
    with loaded.connect() as conn:
        if loaded.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
        for case in bench.cases(COUNT):
            plan = plan_of(conn, case.filters, case.after)
            if loaded.dialect.name == "postgresql":
                assert "Seq Scan" not in plan, (case.name, plan)
            elif not case.filters.q:
                assert re.search(r"(SEARCH|SCAN) product_products USING .*INDEX", plan), (
                    case.name,
                    plan,
                )
        if loaded.dialect.name == "postgresql":
            plan = plan_of(conn, Filters.of(bench.RARE, "", None))
            assert all(index in plan for index in SEARCH_INDEXES.values()), plan


def test_the_benchmark_runs_on_a_tiny_count(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--count", "120", "--database-url", fresh_database_url(db_url)]) == 0
    out = capsys.readouterr().out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["count"] == 120
    assert {c.name for c in bench.cases(120)} | {"categories"} <= figures.keys()
    assert "== q:" in out
