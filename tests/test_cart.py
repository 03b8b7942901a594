"""/cart against the real stack (services, worker, dev server): the Cart workflow reached
with update-with-start, its validators, and the checkout from it.

The cart lives in Temporal, not in the database: one backend (SQLite) is enough here; the
order it places is the one of POST /checkout, tested on both in test_api.py.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from core.messages import (
    CartCheckedOut,
    CartRefusal,
    CartState,
    OrderItem,
    PlaceOrderInput,
    ProductInfo,
    SetCartItem,
    ShippingAddress,
    cart_workflow_id_for,
)
from services.product.models import ProductRow
from tests.api_fixtures import GOOD_CARD, SHIPPING_ADDRESS, Stack
from workflows.place_order import PlaceOrder

pytestmark = pytest.mark.timeout(60)

CHECKOUT = {"payment": {"card_number": GOOD_CARD}, "shipping_address": SHIPPING_ADDRESS}


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only (see the module's doc): overrides the session's two backends."""
    return f"sqlite:///{tmp_path_factory.mktemp('cart')}/shop.db"


def assert_error(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and r.json()["error"]["code"] == code, r.text
    assert r.json()["error"]["message"]


async def customer(stack: Stack) -> dict[str, str]:
    user = await stack.create_user("Carter")
    return stack.as_user(user["id"])


def user_of(stack: Stack, headers: dict[str, str]) -> str:
    return next(
        uid for uid, token in stack.tokens.items() if headers["Authorization"].endswith(token)
    )


def change_product(stack: Stack, product_id: str, **values: Any) -> None:
    # The catalogue's own routes for it land with the catalogue's work; the row is the truth.
    with stack.engine.begin() as conn:
        conn.execute(update(ProductRow).where(col(ProductRow.id) == product_id).values(**values))


def deactivate(stack: Stack, product_id: str) -> None:
    change_product(stack, product_id, active=False)


async def put(stack: Stack, who: dict[str, str], product_id: str, quantity: Any) -> Any:
    return await stack.http.put(
        f"/cart/items/{product_id}", json={"quantity": quantity}, headers=who
    )


async def accepted_updates(stack: Stack, user_id: str) -> int:
    """The updates the cart's history holds: a refused one never enters it."""
    history = await stack.client.get_workflow_handle(cart_workflow_id_for(user_id)).fetch_history()
    kind = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    return sum(e.event_type == kind for e in history.events)


async def test_fill_change_empty_the_cart(stack: Stack) -> None:
    who = await customer(stack)
    book = await stack.create_product(stock=10, price_cents=1500)
    pen = await stack.create_product(stock=3, price_cents=700)
    empty = await stack.http.get("/cart", headers=who)
    assert empty.json() == {"items": [], "total_cents": 0, "version": 0}

    r = await put(stack, who, book["id"], 2)
    assert r.status_code == 200, r.text
    assert r.json()["total_cents"] == 3000
    await put(stack, who, pen["id"], 1)
    await put(stack, who, book["id"], 3)
    r = await put(stack, who, pen["id"], 0)
    assert r.status_code == 200, r.text

    cart = (await stack.http.get("/cart", headers=who)).json()
    assert cart["items"] == [
        {
            "product_id": book["id"],
            "name": book["name"],
            "quantity": 3,
            "unit_price_cents": 1500,
            "active": True,
            "stock": 10,
        }
    ]
    assert (cart["total_cents"], cart["version"]) == (4500, 4)
    # At the current price, whatever it was when the product went in.
    change_product(stack, book["id"], price_cents=1200)
    repriced = (await stack.http.get("/cart", headers=who)).json()
    assert (repriced["items"][0]["unit_price_cents"], repriced["total_cents"]) == (1200, 3600)

    r = await stack.http.delete("/cart", headers=who)
    assert r.status_code == 204, r.text
    after = (await stack.http.get("/cart", headers=who)).json()
    assert (after["items"], after["total_cents"]) == ([], 0)


async def test_bad_changes_are_refused_and_change_nothing(stack: Stack) -> None:
    who = await customer(stack)
    user_id = user_of(stack, who)
    book = await stack.create_product()
    gone = await stack.create_product()
    deactivate(stack, gone["id"])
    assert (await put(stack, who, book["id"], 1)).status_code == 200
    before = (await stack.http.get("/cart", headers=who)).json()

    assert_error(await put(stack, who, "no-such-product", 1), 404, "NOT_FOUND")
    assert_error(await put(stack, who, gone["id"], 1), 404, "NOT_FOUND")
    assert_error(await put(stack, who, "no-such-product", 0), 404, "NOT_FOUND")
    for bad in (-1, 100, "two", None, False, 1.5):
        assert_error(await put(stack, who, book["id"], bad), 422, "VALIDATION_ERROR")
    assert_error(await put(stack, who, "bad id!", 1), 422, "VALIDATION_ERROR")
    no_token = await stack.http.put(
        f"/cart/items/{book['id']}", json={"quantity": 5}, headers={"Authorization": ""}
    )
    assert_error(no_token, 401, "UNAUTHORIZED")
    assert no_token.headers["WWW-Authenticate"] == "Bearer"

    assert (await stack.http.get("/cart", headers=who)).json() == before
    assert await accepted_updates(stack, user_id) == 1

    # The validator itself refuses what the API's own checks would stop first.
    handle = stack.client.get_workflow_handle(cart_workflow_id_for(user_id))
    product = ProductInfo(id=book["id"], sku=book["sku"], name="A book", price_cents=1500)
    for req, refusal in (
        (SetCartItem(product_id=book["id"], quantity=100, product=product), "INVALID_QUANTITY"),
        (SetCartItem(product_id=book["id"], quantity=-1, product=product), "INVALID_QUANTITY"),
        (SetCartItem(product_id="other", quantity=1, product=product), "PRODUCT_NOT_FOUND"),
        (SetCartItem(product_id="other", quantity=1), "PRODUCT_NOT_FOUND"),
    ):
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update("set_item", req, result_type=CartState)
        assert isinstance(info.value.cause, ApplicationError)
        assert info.value.cause.type == refusal
    assert await accepted_updates(stack, user_id) == 1


async def test_empty_or_unsellable_carts_are_not_checked_out(stack: Stack) -> None:
    who = await customer(stack)
    r = await stack.http.post("/cart/checkout", json=CHECKOUT, headers=who)
    assert_error(r, 409, "CART_EMPTY")
    bad = await stack.http.post(
        "/cart/checkout", json={**CHECKOUT, "payment": {"card_number": "12"}}, headers=who
    )
    assert_error(bad, 422, "VALIDATION_ERROR")
    assert GOOD_CARD not in bad.text

    book = await stack.create_product()
    await put(stack, who, book["id"], 1)
    deactivate(stack, book["id"])
    cart = (await stack.http.get("/cart", headers=who)).json()
    assert (cart["items"][0]["active"], cart["total_cents"]) == (False, 0)
    r = await stack.http.post("/cart/checkout", json=CHECKOUT, headers=who)
    assert_error(r, 409, "CART_UNAVAILABLE_ITEMS")
    assert r.json()["error"]["details"] == [book["id"]]
    # What is no longer sold can still be taken out.
    r = await put(stack, who, book["id"], 0)
    assert r.status_code == 200 and r.json()["items"] == [], r.text
    assert (await stack.http.get("/orders", headers=who)).json() == []


async def test_checkout_places_the_cart_once_per_key_and_empties_it(stack: Stack) -> None:
    who = await customer(stack)
    user_id = user_of(stack, who)
    book = await stack.create_product(stock=10, price_cents=1500)
    pen = await stack.create_product(stock=10, price_cents=700)
    await put(stack, who, book["id"], 2)
    await put(stack, who, pen["id"], 1)
    key = {"Idempotency-Key": f"cart-{uuid.uuid4().hex}"}

    r = await stack.http.post("/cart/checkout", json=CHECKOUT, headers=who | key)
    assert r.status_code == 202, r.text
    order_id = r.json()["order_id"]
    assert (await stack.http.get("/cart", headers=who)).json()["items"] == []
    order = await stack.wait_for(order_id, "PAID")
    assert order["status"] == "PAID" and order["user_id"] == user_id
    assert [(i["product_id"], i["quantity"]) for i in order["items"]] == [
        (book["id"], 2),
        (pen["id"], 1),
    ]
    assert order["total_cents"] == 3700

    # The same key: the same order, nothing started, the cart (refilled since) untouched.
    await put(stack, who, pen["id"], 4)
    again = await stack.http.post("/cart/checkout", json=CHECKOUT, headers=who | key)
    assert again.status_code == 202, again.text
    assert again.json()["order_id"] == order_id
    assert [o["order_id"] for o in (await stack.http.get("/orders", headers=who)).json()] == [
        order_id
    ]
    assert [
        i["quantity"] for i in (await stack.http.get("/cart", headers=who)).json()["items"]
    ] == [4]
    # The same key for another request (another address) is refused.
    other = {**CHECKOUT, "shipping_address": {**SHIPPING_ADDRESS, "city": "Paris"}}
    reused = await stack.http.post("/cart/checkout", json=other, headers=who | key)
    assert_error(reused, 409, "IDEMPOTENCY_KEY_REUSED")


async def test_a_line_changed_after_the_cart_was_read_survives_its_checkout(
    stack: Stack,
) -> None:
    who = await customer(stack)
    user_id = user_of(stack, who)
    book = await stack.create_product()
    pen = await stack.create_product()
    await put(stack, who, book["id"], 1)
    read = (await stack.http.get("/cart", headers=who)).json()
    # Another device adds a pen after the checkout read the cart, before it emptied it.
    await put(stack, who, pen["id"], 2)
    handle = stack.client.get_workflow_handle(cart_workflow_id_for(user_id))
    done = CartCheckedOut(order_id="order-x", version=read["version"])
    state = await handle.execute_update("checked_out", done, result_type=CartState)
    assert [(li.product_id, li.quantity) for li in state.items] == [(pen["id"], 2)]
    assert state.last_order_id == "order-x"
    # A repeat takes nothing more; a version the cart never had is refused.
    again = await handle.execute_update("checked_out", done, result_type=CartState)
    assert again.items == state.items
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update(
            "checked_out", CartCheckedOut(order_id="y", version=99), result_type=CartState
        )
    assert isinstance(info.value.cause, ApplicationError)
    assert info.value.cause.type == CartRefusal.STALE_VERSION


async def test_concurrent_changes_from_two_devices_all_land(stack: Stack) -> None:
    who = await customer(stack)
    products = [await stack.create_product() for _ in range(8)]
    phone, laptop = dict(who), dict(who)
    results = await asyncio.gather(
        *(put(stack, phone if n % 2 else laptop, p["id"], n + 1) for n, p in enumerate(products))
    )
    assert [r.status_code for r in results] == [200] * len(products), [r.text for r in results]
    cart = (await stack.http.get("/cart", headers=who)).json()
    got = {i["product_id"]: i["quantity"] for i in cart["items"]}
    assert got == {p["id"]: n + 1 for n, p in enumerate(products)}
    assert cart["version"] == len(products)


async def test_a_cart_whose_query_fails_answers_503_not_500(stack: Stack) -> None:
    """The workflow at the cart's id cannot answer the cart's query (here: an order's
    workflow holds it; after a bad deploy, a cart whose workflow task fails): reading the
    cart answers 503, not a 500."""
    who = await customer(stack)
    user_id = user_of(stack, who)
    handle = await stack.client.start_workflow(
        PlaceOrder.run,
        PlaceOrderInput(
            order_id=uuid.uuid4().hex,
            user_id=user_id,
            items=[OrderItem(product_id="no-such-product", quantity=1)],
            card_token="tok_none",
            shipping_address=ShippingAddress(**SHIPPING_ADDRESS),
        ),
        id=cart_workflow_id_for(user_id),
        task_queue=stack.settings.temporal_task_queue,
    )
    try:
        r = await stack.http.get("/cart", headers=who)
        assert_error(r, 503, "TEMPORAL_UNAVAILABLE")
        assert "cart" in r.json()["error"]["message"]
    finally:
        await handle.terminate("test over")
