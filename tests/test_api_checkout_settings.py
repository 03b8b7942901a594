"""Checkout beyond the happy path: the configured fulfilment deadline, and a keyed retry
after the server has dropped the order's workflow (namespace retention)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.service import RPCError, RPCStatusCode

from api.routes.checkout import order_id_for
from core.db import run_sql
from core.messages import (
    OrderLine,
    OrderSnapshot,
    OrderStatus,
    PaymentStatus,
    StatusChange,
)
from orders import store
from tests.api_fixtures import GOOD_CARD, SHIPPING_ADDRESS, Stack

pytestmark = pytest.mark.timeout(60)

PRE_PAID = (OrderStatus.PENDING, OrderStatus.RESERVED, OrderStatus.PAID)


async def test_orders_get_the_configured_fulfilment_deadline(stack: Stack) -> None:
    user = await stack.create_user()
    p = await stack.create_product(stock=5)
    default = stack.settings.fulfilment_deadline_seconds
    stack.settings.fulfilment_deadline_seconds = 2  # FULFILMENT_DEADLINE_SECONDS=2
    try:
        order_id = await stack.place(user["id"], [(p["id"], 1)])
    finally:
        stack.settings.fulfilment_deadline_seconds = default
    # Never shipped: cancelled once its deadline passed, not after the 7-day default.
    order = await stack.wait_for(order_id, "CANCELLED", timeout=30)
    assert order["status"] == "CANCELLED", order
    assert order["failure_reason"] == "NOT_SHIPPED"
    assert order["payment_status"] == "REFUNDED"
    assert (await stack.http.get(f"/products/{p['id']}")).json()["stock"] == 5


async def _stored_past_retention(
    stack: Stack,
    key: str,
    user_id: str,
    line: OrderLine,
    statuses: tuple[OrderStatus, ...],
    **fields: object,
) -> str:
    """The read model's row of an order placed with `key` 40 days ago, whose workflow the
    server has dropped; its id."""
    order_id = order_id_for(user_id, key)
    at = datetime.now(UTC) - timedelta(days=40)
    stored = OrderSnapshot.model_validate(
        {
            "order_id": order_id,
            "user_id": user_id,
            "status": statuses[-1],
            "items": [line],
            "total_cents": line.unit_price_cents * line.quantity,
            "history": [StatusChange(status=s, at=at) for s in statuses],
            "version": len(statuses),
            "shipping_address": SHIPPING_ADDRESS,
            **fields,
        }
    )
    await run_sql(stack.engine, lambda c: store.apply_snapshot(c, stored))
    return order_id


async def test_a_keyed_retry_after_the_workflow_is_gone_starts_nothing(stack: Stack) -> None:
    # Past the namespace's retention the server has dropped a closed workflow; the read
    # model still holds its order. That is the state this builds: a stored PAID order, no
    # workflow. (The dev server takes DeleteWorkflowExecution but does not act on it soon.)
    user = await stack.create_user()
    p = await stack.create_product(stock=5)
    key = f"key-{uuid.uuid4()}"
    order_id = await _stored_past_retention(
        stack,
        key,
        user["id"],
        OrderLine(product_id=p["id"], quantity=2, unit_price_cents=1500),
        PRE_PAID,
        payment_status=PaymentStatus.CAPTURED,
        card_last4="4242",
    )

    again = await stack.checkout(user["id"], [(p["id"], 2)], card=GOOD_CARD, key=key)
    assert again.status_code == 202, again.text
    assert again.json() == {
        "order_id": order_id,
        "workflow_id": f"order-{order_id}",
        "status": "PAID",
    }
    other = await stack.checkout(user["id"], [(p["id"], 1)], key=key)
    assert other.status_code == 409, other.text
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    other_card = await stack.checkout(user["id"], [(p["id"], 2)], card="5555555555554444", key=key)
    assert other_card.status_code == 409, other_card.text

    # No workflow for the order: no second reservation or charge to be had for free.
    with pytest.raises(RPCError) as err:
        await stack.client.get_workflow_handle(f"order-{order_id}").describe()
    assert err.value.status == RPCStatusCode.NOT_FOUND
    assert (await stack.http.get(f"/products/{p['id']}")).json()["stock"] == 5


async def test_a_keyed_retry_of_a_failed_order_past_retention_gets_the_order(
    stack: Stack,
) -> None:
    # Failed before any charge: the order knows no card, and the retry is still the same.
    user = await stack.create_user()
    p = await stack.create_product(stock=1)
    key = f"key-{uuid.uuid4()}"
    order_id = await _stored_past_retention(
        stack,
        key,
        user["id"],
        OrderLine(product_id=p["id"], quantity=3, unit_price_cents=1500),
        (OrderStatus.PENDING, OrderStatus.FAILED),
        failure_reason="OUT_OF_STOCK",
    )
    again = await stack.checkout(user["id"], [(p["id"], 3)], key=key)
    assert again.status_code == 202, again.text
    assert again.json()["status"] == "FAILED"
    with pytest.raises(RPCError):
        await stack.client.get_workflow_handle(f"order-{order_id}").describe()
