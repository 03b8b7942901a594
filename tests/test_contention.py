"""Contention end to end: many concurrent checkouts for the last units sell exactly the stock,
through the API, the workflows and the services, on SQLite and on PostgreSQL.

(tests/test_services_inventory.py races ReserveStock directly; this one goes through the
whole stack, so the saga's compensations and the read model are part of the answer. Half
of the orders also take a plentiful product: a reservation is all or nothing, so an order
that misses the scarce one takes none of the other.)
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlmodel import Session, col, select

from core.db import run_db
from services.payment.models import LedgerRow
from tests.api_fixtures import Stack

pytestmark = pytest.mark.timeout(120)

ORDERS = 30
LAST_UNITS = 3


async def test_concurrent_orders_for_the_last_units_sell_exactly_the_stock(stack: Stack) -> None:
    product = await stack.create_product(stock=10, price_cents=700)
    plenty = await stack.create_product(stock=100, price_cents=50)
    users = [(await stack.create_user())["id"] for _ in range(3)]
    # Down to the last units, then everyone wants one at once.
    first = await stack.place(users[0], [(product["id"], 10 - LAST_UNITS)])
    assert (await stack.wait_for(first, "PAID"))["status"] == "PAID"
    assert (await stack.http.get(f"/products/{product['id']}")).json()["stock"] == LAST_UNITS

    lines = [
        [(product["id"], 1), (plenty["id"], 2)] if i % 2 else [(product["id"], 1)]
        for i in range(ORDERS)
    ]
    ids = await asyncio.gather(
        *(stack.place(users[i % len(users)], lines[i]) for i in range(ORDERS))
    )
    assert len(set(ids)) == ORDERS
    orders = await asyncio.gather(*(stack.wait_for(i, "PAID", timeout=90) for i in ids))

    outcomes = Counter(o["status"] for o in orders)
    assert outcomes == {"PAID": LAST_UNITS, "FAILED": ORDERS - LAST_UNITS}, outcomes
    assert {o["failure_reason"] for o in orders if o["status"] == "FAILED"} == {"OUT_OF_STOCK"}
    r = await stack.http.get(f"/products/{product['id']}")
    assert r.json()["stock"] == 0
    paid = {o["order_id"] for o in orders if o["status"] == "PAID"}
    plenty_sold = sum(
        q for i, o in enumerate(ids) if o in paid for p, q in lines[i] if p == plenty["id"]
    )
    r = await stack.http.get(f"/products/{plenty['id']}")
    assert r.json()["stock"] == 100 - plenty_sold

    # Money moved for the winners only: one capture each, nothing for the losers.
    totals = {o["order_id"]: o["total_cents"] for o in orders}
    ledgers = await asyncio.gather(*(stack.http.get(f"/orders/{i}/payments") for i in ids))
    for order_id, r in zip(ids, ledgers, strict=True):
        assert r.status_code == 200, r.text
        want = [("CAPTURE", totals[order_id])] if order_id in paid else []
        assert [(e["type"], e["amount_cents"]) for e in r.json()] == want, order_id

    # And in the payment service's own table, whatever the backend.
    def ledger(session: Session) -> list[LedgerRow]:
        return list(session.exec(select(LedgerRow).where(col(LedgerRow.order_id).in_(ids))))

    rows = await run_db(stack.engine, ledger)
    assert sorted(r.order_id for r in rows) == sorted(paid)
