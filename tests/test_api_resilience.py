"""The API when a part of the system misbehaves: the database unreachable, an order's
workflow ended from outside (`temporal workflow terminate`)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client

from api.deps import TemporalConnector
from api.errors import ApiError
from api.routes.orders import QUERY_EVERY
from core.config import Settings
from core.db import make_engine, run_sql
from core.messages import OrderLine, OrderSnapshot, OrderStatus, StatusChange
from orders import store
from tests.api_fixtures import Stack

pytestmark = pytest.mark.timeout(60)

# Nothing listens on port 1: every connection is refused at once.
UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/none"


async def test_an_unreachable_database_answers_503_not_500(stack: Stack) -> None:
    user = await stack.create_user()
    p = await stack.create_product(stock=5)
    order_id = await stack.place(user["id"], [(p["id"], 1)])
    await stack.wait_for(order_id, "PAID")
    working = stack.app.state.engine
    broken = make_engine(UNREACHABLE)
    stack.app.state.engine = broken
    try:
        # (A stream of this order would start from what this API process remembers of it.)
        other = uuid.uuid4().hex
        for path in (f"/orders/{order_id}", "/orders", f"/orders/{other}/events"):
            r = await stack.http.get(path, params={"user_id": user["id"]})
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.json()["error"]["code"] == "DATABASE_UNAVAILABLE", r.text
    finally:
        stack.app.state.engine = working
        broken.dispose()
    assert (await stack.http.get(f"/orders/{order_id}")).status_code == 200


async def test_a_stream_ends_when_its_workflow_ended_without_a_final_status(
    stack: Stack,
) -> None:
    user = await stack.create_user()
    p = await stack.create_product(stock=5)
    order_id = await stack.place(user["id"], [(p["id"], 1)])
    await stack.wait_for(order_id, "PAID")
    # Terminated: the workflow saves nothing more, and the order stays PAID for ever.
    await stack.client.get_workflow_handle(f"order-{order_id}").terminate(f"test {uuid.uuid4()}")
    r = await asyncio.wait_for(
        stack.http.get(f"/orders/{order_id}/events"), timeout=QUERY_EVERY + 10
    )
    assert r.status_code == 200
    statuses = [
        line.removeprefix("data:").split('"status":"')[1].split('"')[0]
        for line in r.text.splitlines()
        if line.startswith("data:")
    ]
    assert statuses == ["PENDING", "RESERVED", "PAID"]


async def test_requests_share_one_failed_connection_attempt_to_temporal() -> None:
    # Temporal down when the API started: a burst of requests must not queue up behind one
    # connection attempt each (up to 4 s apiece); one attempt, and the rest answer at once.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts, never answers: each attempt runs into its timeout
    attempts = 0

    class Counting(TemporalConnector):
        async def _connect(self) -> Client:
            nonlocal attempts
            attempts += 1
            return await super()._connect()

    host, port = listener.getsockname()
    connector = Counting(Settings(temporal_address=f"{host}:{port}"))
    try:
        got = await asyncio.gather(*(connector.get_or_none() for _ in range(5)))
    finally:
        listener.close()
    assert got == [None] * 5
    assert attempts == 1
    with pytest.raises(ApiError) as err:
        await connector.get()
    assert err.value.status == 503 and attempts == 1  # within TEMPORAL_RETRY_AFTER


async def test_a_stream_ends_when_its_workflow_is_gone(stack: Stack) -> None:
    # A PAID order in the read model whose workflow the server no longer has (past the
    # namespace's retention after a terminate, say): nothing will ever change it.
    order_id = uuid.uuid4().hex
    long_ago = datetime.now(UTC) - timedelta(days=40)
    paid = OrderSnapshot(
        order_id=order_id,
        user_id="someone",
        status=OrderStatus.PAID,
        items=[OrderLine(product_id="p", quantity=1, unit_price_cents=100)],
        total_cents=100,
        history=[StatusChange(status=OrderStatus.PAID, at=long_ago)],
        version=1,
    )
    await run_sql(stack.engine, lambda c: store.apply_snapshot(c, paid))
    r = await asyncio.wait_for(
        stack.http.get(f"/orders/{order_id}/events"), timeout=QUERY_EVERY + 10
    )
    assert r.status_code == 200
    assert r.text.count("event: status") == 1 and '"status":"PAID"' in r.text
