"""Nothing of ours that grows with the orders is scanned: every statement the API, the
activities and the services run for an order finds its rows through an index, on SQLite
(EXPLAIN QUERY PLAN) and PostgreSQL (EXPLAIN with sequential scans disabled, so a usable
index is used however few rows the tables hold)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, event

from core.messages import NotificationKind
from tests.api_fixtures import Stack

# The statements that read or change existing rows (inserts find nothing).
SEARCHING = re.compile(r"^\s*(SELECT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)
# The tables whose rows grow with the orders, and the per-order statements on them.
PER_ORDER_TABLES = {
    "orders_orders",
    "payment_orders",
    "payment_ledger",
    "payment_cards",
    "notification_notifications",
    "inventory_reservations",
    "inventory_reservation_lines",
    "inventory_adjustments",
}


@contextmanager
def captured(*engines: Engine) -> Iterator[list[tuple[Engine, str, Any]]]:
    """Every searching statement run on `engines` inside the block, with its parameters."""
    seen: list[tuple[Engine, str, Any]] = []

    def listener(engine: Engine) -> Any:
        def before(conn: Connection, cursor: Any, statement: str, params: Any, *_: Any) -> None:
            if SEARCHING.match(statement):
                seen.append((engine, statement, params))

        return before

    listeners = [(e, listener(e)) for e in engines]
    for engine, fn in listeners:
        event.listen(engine, "before_cursor_execute", fn)
    try:
        yield seen
    finally:
        for engine, fn in listeners:
            event.remove(engine, "before_cursor_execute", fn)


def plan(engine: Engine, statement: str, params: Any) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
            return "\n".join(str(row[-1]) for row in rows)
        with conn.begin():
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            rows = conn.exec_driver_sql(f"EXPLAIN {statement}", params)
            return "\n".join(str(row[0]) for row in rows)


def scans(engine: Engine, text: str) -> list[str]:
    """The tables of ours the plan reads whole, without an index."""
    if engine.dialect.name == "sqlite":
        found = re.findall(r"^SCAN (\w+)(?! USING (?:COVERING )?INDEX)", text, re.MULTILINE)
    else:
        found = re.findall(r"Seq Scan on (\w+)", text)
    return [t for t in found if t in PER_ORDER_TABLES]


def tables_of(statement: str) -> set[str]:
    return {t for t in PER_ORDER_TABLES if re.search(rf"\b{t}\b", statement)}


async def test_every_per_order_statement_uses_an_index(stack: Stack) -> None:
    user = await stack.create_user()
    p = await stack.create_product(stock=5)
    mine = stack.as_user(user["id"])
    api_engine: Engine = stack.app.state.engine
    with captured(stack.engine, api_engine) as seen:
        # An order's life: placed, followed, listed, paid, cancelled (refund, restock).
        order_id = await stack.place(user["id"], [(p["id"], 1)])
        await stack.wait_for(order_id, "PAID")
        for params in ({}, {"status": "PAID"}):
            r = await stack.http.get("/orders", params=params, headers=mine)
            assert order_id in [o["order_id"] for o in r.json()], r.text
        for params in ({}, {"status": "PAID"}, {"user_id": user["id"]}):
            assert (await stack.http.get("/orders", params=params)).status_code == 200
        assert (await stack.http.get(f"/orders/{order_id}/payments")).status_code == 200
        r = await stack.http.post(f"/orders/{order_id}/cancel", json={"reason": "plans"})
        assert r.status_code == 200 and r.json()["status"] == "CANCELLED", r.text
        r = await stack.http.get(f"/users/{user['id']}/notifications", headers=mine)
        kinds = {n["kind"] for n in r.json()}
        assert {NotificationKind.ORDER_CONFIRMED, NotificationKind.ORDER_CANCELLED} <= kinds
    statements = {(e, s): params for e, s, params in seen if tables_of(s)}
    touched = set().union(*(tables_of(s) for _, s in statements))
    # The order's life touched every table that grows with the orders.
    assert touched >= PER_ORDER_TABLES - {"inventory_adjustments"}, touched
    lists: list[str] = []
    for (engine, statement), params in statements.items():
        text = plan(engine, statement, params)
        assert scans(engine, text) == [], f"{statement}\n{params}\n--> {text}"
        if "FROM orders_orders" in statement and "ORDER BY" in statement:
            lists.append(text)
    # The lists of GET /orders: each by the index that matches its filter.
    indexes = {m for text in lists for m in re.findall(r"ix_orders_orders_\w+", text)}
    assert indexes == {
        "ix_orders_orders_user_id_created_at",
        "ix_orders_orders_status_created_at",
        "ix_orders_orders_created_at",
    }, lists
