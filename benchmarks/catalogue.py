"""Catalogue search at scale: loads N products into a database and prints, for each filter
of `GET /products`, the query's time and its plan (run by hand; a test runs it tiny).

    .venv/bin/python -m benchmarks.catalogue --count 100000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

The products go into a schema of their own (`catalogue_bench_<random>`, dropped at the end
unless --keep) of the given PostgreSQL database, migrated like the services' own, then
ANALYZEd. The queries are the product service's (services.product.search), so the plans
are those the service runs. Figures are printed, never asserted: the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from core.db import make_engine, migrate
from services.common import utcnow
from services.product.models import ProductRow
from services.product.search import Filters, category_counts, page_query

CATEGORIES = [f"category-{i:02d}" for i in range(40)]
RARE = "limited"  # in one product's description in a thousand
WORDS = ("espresso", "filter", "grinder", "kettle", "scale", "dripper", "mug", "beans")
BATCH = 5000
PAGE = 50
REPEAT = 5


@dataclass(frozen=True)
class Case:
    name: str
    filters: Filters
    after: str = ""


def cases(count: int) -> list[Case]:
    """One per filter; `q` matches about one product in a thousand (a rare word)."""
    middle = f"SKU-{count // 2:08d}"
    return [
        Case("active (first page)", Filters.of("", "", True)),
        Case("active (a middle page)", Filters.of("", "", True), after=middle),
        Case("category", Filters.of("", CATEGORIES[3], True)),
        Case("q", Filters.of(RARE, "", True)),
        Case("q + category", Filters.of("espresso", CATEGORIES[3], True)),
        Case("inactive (admin)", Filters.of("", "", False)),
    ]


def load(engine: Engine, count: int) -> None:
    """Inserts `count` products (1 in 50 inactive; 1 in 1000 with a rare word), ANALYZEd."""
    now = utcnow()
    with engine.begin() as conn:
        for start in range(0, count, BATCH):
            rows = [
                {
                    "id": f"bench-{i:08d}",
                    "sku": f"SKU-{i:08d}",
                    "name": f"{WORDS[i % len(WORDS)]} {i}",
                    "description": f"item {i} {RARE}" if i % 1000 == 17 else f"item {i}",
                    "price_cents": 100 + i % 5000,
                    "category": CATEGORIES[i % len(CATEGORIES)],
                    "active": i % 50 != 0,
                    "created_at": now,
                    "low_stock_threshold": 5,
                }
                for i in range(start, min(start + BATCH, count))
            ]
            conn.execute(insert(ProductRow), rows)
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE product_products"))


def explain(engine: Engine, case: Case) -> str:
    """The PostgreSQL plan of the case's query (EXPLAIN ANALYZE), or SQLite's query plan."""
    compiled = page_query(case.filters, PAGE, case.after).compile(engine)
    params: Any = (
        tuple(compiled.params[name] for name in compiled.positiontup or ())
        if compiled.positional
        else compiled.params
    )
    prefix = "EXPLAIN ANALYZE " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + str(compiled), params).all()
    return "\n".join(" ".join(str(c) for c in row) for row in rows)


def timed(engine: Engine, case: Case) -> tuple[float, int]:
    """The median milliseconds of REPEAT runs, and the rows of a page."""
    times, found = [], 0
    for _ in range(REPEAT):
        with Session(engine) as session:
            began = time.perf_counter()
            found = len(session.exec(page_query(case.filters, PAGE, case.after)).all())
            times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), found


@contextmanager
def bench_database(url: str, keep: bool) -> Iterator[Engine]:
    """An engine on a schema of its own in `url`'s PostgreSQL database (or `url` itself,
    an SQLite file), migrated."""
    if make_url(url).get_backend_name() != "postgresql":
        engine = make_engine(url)
        migrate(engine)
        yield engine
        engine.dispose()
        return
    schema = f"catalogue_bench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    engine = make_engine(scoped.render_as_string(hide_password=False))
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()
        if not keep:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def run(url: str, count: int, keep: bool = False) -> dict[str, object]:
    results: dict[str, object] = {"count": count}
    with bench_database(url, keep) as engine:
        began = time.perf_counter()
        load(engine, count)
        print(f"loaded {count} products in {time.perf_counter() - began:.1f} s")
        for case in cases(count):
            ms, found = timed(engine, case)
            results[case.name] = round(ms, 3)
            print(f"\n== {case.name}: {ms:.2f} ms (median of {REPEAT}), {found} rows")
            print(explain(engine, case))
        with Session(engine) as session:
            began = time.perf_counter()
            categories = category_counts(session)
            ms = (time.perf_counter() - began) * 1000
        results["categories"] = round(ms, 3)
        print(f"\n== categories: {ms:.2f} ms, {len(categories)} categories")
    print(json.dumps(results))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.catalogue", description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="products (100000)")
    parser.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL database (a schema of its own is used), or an SQLite URL",
    )
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    args = parser.parse_args(argv)
    run(args.database_url, args.count, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
