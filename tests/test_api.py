"""The REST API against the real stack: services, worker, dev server, on SQLite and PostgreSQL.

Over 400 lines: one scenario per route and outcome, on the one shared stack fixture (who may
call what is in test_authz.py, the schema's truth in test_fuzz.py).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from core.messages import workflow_id_for
from tests.api_fixtures import (
    DECLINED_CARD,
    FLAKY_CARD,
    GOOD_CARD,
    PASSWORD,
    SHIPPING_ADDRESS,
    Stack,
)

pytestmark = pytest.mark.timeout(60)


def assert_error(body: dict[str, Any], code: str | None = None) -> None:
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body


def statuses(order: dict[str, Any]) -> list[str]:
    return [h["status"] for h in order["history"]]


# --- health, users, products -------------------------------------------------------------


async def test_creates_with_an_idempotency_key_are_safe_to_retry(stack: Stack) -> None:
    key = {"Idempotency-Key": f"signup-{uuid.uuid4().hex}"}
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    first = await stack.http.post(
        "/users", json={"email": email, "name": "Ada", "password": PASSWORD}, headers=key
    )
    again = await stack.http.post(
        "/users", json={"email": email, "name": "Ada", "password": PASSWORD}, headers=key
    )
    assert first.status_code == again.status_code == 201, again.text
    assert first.json() == again.json()
    # The same key for another user is a conflict, not a second user under that id.
    other = await stack.http.post(
        "/users", json={"email": f"x{email}", "name": "Bob", "password": PASSWORD}, headers=key
    )
    assert other.status_code == 409, other.text
    assert_error(other.json(), "IDEMPOTENCY_KEY_REUSED")

    pkey = {"Idempotency-Key": f"import-{uuid.uuid4().hex}"}
    body = {
        "sku": f"SKU-{uuid.uuid4().hex[:8]}",
        "name": "Kettle",
        "description": "",
        "price_cents": 2500,
        "stock": 7,
        "category": "kitchen",
    }
    made = [(await stack.http.post("/products", json=body, headers=pkey)) for _ in range(3)]
    assert [r.status_code for r in made] == [201, 201, 201], made[-1].text
    assert len({r.json()["id"] for r in made}) == 1
    # The initial stock was added once, however often the create was retried.
    r = await stack.http.get(f"/products/{made[0].json()['id']}")
    assert r.status_code == 200 and r.json()["stock"] == 7
    # Without a key, a second create of the same SKU is 409 as before.
    dup = await stack.http.post("/products", json=body)
    assert dup.status_code == 409, dup.text
    assert_error(dup.json(), "SKU_TAKEN")


async def test_health_ok(stack: Stack) -> None:
    r = await stack.http.get("/health")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "temporal": "ok", "services": "ok", "database": "ok"}


async def test_users(stack: Stack) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    # A role in the body is ignored: registration makes customers only.
    body = {"email": email, "name": "Grace", "password": PASSWORD, "role": "admin"}
    r = await stack.http.post("/users", json=body)
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["email"] == email and user["name"] == "Grace" and user["id"]
    assert user["role"] == "customer" and set(user) == {"id", "email", "name", "role"}

    r = await stack.http.get(f"/users/{user['id']}")
    assert r.status_code == 200 and r.json() == user

    r = await stack.http.get("/users/nobody-here")
    assert r.status_code == 404
    assert_error(r.json())

    r = await stack.http.post(
        "/users", json={"email": email, "name": "Other", "password": PASSWORD}
    )
    assert r.status_code == 409
    assert_error(r.json())

    for bad in (
        {"email": "no-at-sign", "name": "X", "password": PASSWORD},
        {"email": "a@b.c", "name": "", "password": PASSWORD},
        {"email": f"x{email}", "name": "X"},
        {"email": f"x{email}", "name": "X", "password": "7 chars"},
        {"email": f"x{email}", "name": "X", "password": "x" * 129},
        {},
    ):
        r = await stack.http.post("/users", json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert_error(r.json(), "VALIDATION_ERROR")
        assert r.json()["error"]["details"]

    r = await stack.http.get("/users/bad%20id!")
    assert r.status_code == 422
    assert_error(r.json(), "VALIDATION_ERROR")

    r = await stack.http.get("/users/nobody-here/notifications")
    assert r.status_code == 404
    r = await stack.http.get(f"/users/{user['id']}/notifications")
    assert r.status_code == 200 and r.json() == []


async def test_products(stack: Stack) -> None:
    category = f"cat-{uuid.uuid4().hex[:6]}"
    stocked = await stack.create_product(stock=7, price_cents=999, category=category)
    empty = await stack.create_product(stock=0, price_cents=1, category=category)
    assert stocked["stock"] == 7 and stocked["price_cents"] == 999 and stocked["active"]
    assert empty["stock"] == 0

    r = await stack.http.get(f"/products/{stocked['id']}")
    assert r.status_code == 200 and r.json() == stocked

    r = await stack.http.get("/products", params={"category": category})
    assert r.status_code == 200
    assert {p["id"]: p["stock"] for p in r.json()} == {stocked["id"]: 7, empty["id"]: 0}

    # Unfiltered, page by page: the tests before may have filled the first page.
    listed: set[str] = set()
    url: str | None = "/products"
    while url:
        r = await stack.http.get(url)
        assert r.status_code == 200
        listed |= {p["id"] for p in r.json()}
        url = r.links.get("next", {}).get("url")
    assert {stocked["id"], empty["id"]} <= listed

    r = await stack.http.get("/products/no-such-product")
    assert r.status_code == 404
    assert_error(r.json())

    dup = {"sku": stocked["sku"], "name": "Again", "price_cents": 1}
    r = await stack.http.post("/products", json=dup)
    assert r.status_code == 409
    assert_error(r.json())

    for bad in (
        {"sku": "s-neg", "name": "N", "price_cents": -1},
        {"sku": "s-neg", "name": "N", "price_cents": 1, "stock": -1},
        {"sku": "", "name": "N", "price_cents": 1},
        {"sku": "s-x", "name": "N", "price_cents": "lots"},
    ):
        r = await stack.http.post("/products", json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert_error(r.json(), "VALIDATION_ERROR")


async def test_one_error_policy(stack: Stack) -> None:
    # Whichever service found nothing, and whatever reason it gave, a 404 is NOT_FOUND.
    for path in ("/users/nobody-here", "/users/nobody-here/notifications", "/products/none"):
        r = await stack.http.get(path)
        assert r.status_code == 404, (path, r.text)
        assert_error(r.json(), "NOT_FOUND")
        assert r.json()["error"]["message"].endswith("not found")
    # A method a path lacks: 405, naming every method of the path, not only its first route's.
    for method in ("OPTIONS", "PUT", "DELETE"):
        r = await stack.http.request(method, "/products")
        assert r.status_code == 405, (method, r.text)
        assert r.headers["allow"] == "GET, POST"
        assert_error(r.json(), "METHOD_NOT_ALLOWED")


# --- checkout ---------------------------------------------------------------------------


async def test_checkout_pays(stack: Stack) -> None:
    user = await stack.create_user()
    a = await stack.create_product(stock=5, price_cents=1500)
    b = await stack.create_product(stock=5, price_cents=250)
    r = await stack.checkout(user["id"], [(a["id"], 2), (b["id"], 1)], card="4242 4242 4242 4242")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "PENDING"
    assert body["workflow_id"] == f"order-{body['order_id']}"

    order = await stack.wait_for(body["order_id"], "PAID")
    assert order["status"] == "PAID", order
    assert order["user_id"] == user["id"]
    assert order["total_cents"] == 2 * 1500 + 250
    assert order["payment_status"] == "CAPTURED"
    assert order["failure_reason"] is None
    assert statuses(order) == ["PENDING", "RESERVED", "PAID"]
    assert {(i["product_id"], i["quantity"], i["unit_price_cents"]) for i in order["items"]} == {
        (a["id"], 2, 1500),
        (b["id"], 1, 250),
    }
    assert (await stack.http.get(f"/products/{a['id']}")).json()["stock"] == 3

    r = await stack.http.get("/orders", params={"user_id": user["id"]})
    assert r.status_code == 200
    assert [o["order_id"] for o in r.json()] == [body["order_id"]]

    r = await stack.http.get(f"/orders/{body['order_id']}/payments")
    assert r.status_code == 200
    assert [(e["type"], e["amount_cents"]) for e in r.json()] == [("CAPTURE", 3250)]

    # The confirmation is the saga's next step after PAID: it may be a moment behind.
    for _ in range(50):
        r = await stack.http.get(f"/users/{user['id']}/notifications")
        if r.json():
            break
        await asyncio.sleep(0.1)
    assert [(n["kind"], n["order_id"]) for n in r.json()] == [("ORDER_CONFIRMED", body["order_id"])]


async def test_idempotency_key_same_request(stack: Stack) -> None:
    user = await stack.create_user()
    p = await stack.create_product(stock=5)
    key = f"key-{uuid.uuid4()}"
    first, second = [await stack.checkout(user["id"], [(p["id"], 2)], key=key) for _ in "12"]
    assert first.status_code == 202 and second.status_code == 202, second.text
    order_id = first.json()["order_id"]
    assert second.json()["order_id"] == order_id

    await stack.wait_for(order_id, "PAID")
    third = await stack.checkout(user["id"], [(p["id"], 2)], key=key)
    assert third.status_code == 202 and third.json() == {
        "order_id": order_id,
        "workflow_id": f"order-{order_id}",
        "status": "PAID",
    }
    runs = [wf async for wf in stack.client.list_workflows(f"WorkflowId = 'order-{order_id}'")]
    assert len(runs) == 1
    assert (await stack.http.get(f"/products/{p['id']}")).json()["stock"] == 3


async def test_idempotency_key_reused_for_another_request(stack: Stack) -> None:
    user = await stack.create_user()
    p = await stack.create_product(stock=5)
    key = f"key-{uuid.uuid4()}"
    r = await stack.checkout(user["id"], [(p["id"], 1)], key=key)
    assert r.status_code == 202
    r = await stack.checkout(user["id"], [(p["id"], 3)], key=key)
    assert r.status_code == 409
    assert_error(r.json(), "IDEMPOTENCY_KEY_REUSED")


async def test_checkout_failures(stack: Stack) -> None:
    user = await stack.create_user()
    p = await stack.create_product(stock=2)
    cases = {
        "PAYMENT_DECLINED": await stack.place(user["id"], [(p["id"], 1)], card=DECLINED_CARD),
        "OUT_OF_STOCK": await stack.place(user["id"], [(p["id"], 3)]),
        "USER_NOT_FOUND": await stack.place("no-such-user", [(p["id"], 1)]),
        "PRODUCT_NOT_FOUND": await stack.place(user["id"], [("no-such-product", 1)]),
    }
    orders = await asyncio.gather(*(stack.wait_for(o, "FAILED") for o in cases.values()))
    for reason, order in zip(cases, orders, strict=True):
        assert order["status"] == "FAILED", order
        assert order["failure_reason"] == reason, order
    declined = orders[0]
    assert declined["payment_status"] == "DECLINED"
    r = await stack.http.get(f"/orders/{declined['order_id']}/payments")
    assert [e["type"] for e in r.json()] == ["DECLINE"]
    # A failed order holds no stock.
    assert (await stack.http.get(f"/products/{p['id']}")).json()["stock"] == 2


async def test_checkout_transient_payment_errors_then_pays(stack: Stack) -> None:
    user = await stack.create_user()
    p = await stack.create_product(stock=1)
    order_id = await stack.place(user["id"], [(p["id"], 1)], card=FLAKY_CARD)
    order = await stack.wait_for(order_id, "PAID", timeout=25)
    assert order["status"] == "PAID" and order["payment_status"] == "CAPTURED"


@pytest.mark.parametrize(
    "body",
    [
        {
            "user_id": "u",
            "items": [],
            "payment": {"card_number": GOOD_CARD},
            "shipping_address": SHIPPING_ADDRESS,
        },
        {
            "user_id": "u",
            "items": [{"product_id": "p", "quantity": 0}],
            "payment": {"card_number": GOOD_CARD},
            "shipping_address": SHIPPING_ADDRESS,
        },
        {
            "user_id": "u",
            "items": [{"product_id": "p", "quantity": 1}],
            "payment": {"card_number": "4242-4242"},
            "shipping_address": SHIPPING_ADDRESS,
        },
        {
            "user_id": "u",
            "items": [{"product_id": "p", "quantity": 1}],
            "payment": {"card_number": "12345"},
            "shipping_address": SHIPPING_ADDRESS,
        },
        {
            "user_id": "u",
            "items": [{"product_id": "p", "quantity": 1}] * 51,
            "payment": {"card_number": GOOD_CARD},
            "shipping_address": SHIPPING_ADDRESS,
        },
        {
            "user_id": "bad id",
            "items": [{"product_id": "p", "quantity": 1}],
            "payment": {"card_number": GOOD_CARD},
            "shipping_address": SHIPPING_ADDRESS,
        },
        {
            "user_id": "u",
            "items": [{"product_id": "p", "quantity": 1}],
            "shipping_address": SHIPPING_ADDRESS,
        },
        # No address, or a bad one.
        {
            "user_id": "u",
            "items": [{"product_id": "p", "quantity": 1}],
            "payment": {"card_number": GOOD_CARD},
        },
        *(
            {
                "user_id": "u",
                "items": [{"product_id": "p", "quantity": 1}],
                "payment": {"card_number": GOOD_CARD},
                "shipping_address": SHIPPING_ADDRESS | bad,
            }
            for bad in (
                {"country": "XX"},
                {"country": "gb"},
                {"country": "GBR"},
                {"postal_code": ""},
                {"postal_code": "1" * 21},
                {"name": "   "},
                {"line1": None},
            )
        ),
    ],
)
async def test_checkout_rejects_malformed_body(stack: Stack, body: dict[str, Any]) -> None:
    r = await stack.http.post("/checkout", json=body)
    assert r.status_code == 422, r.text
    assert_error(r.json(), "VALIDATION_ERROR")
    # The rejected card number is never echoed back.
    assert "4242-4242" not in r.text and "12345" not in r.text


async def test_checkout_rejects_bad_idempotency_key(stack: Stack) -> None:
    r = await stack.checkout("u", [("p", 1)], key="x" * 201)
    assert r.status_code == 422
    assert_error(r.json(), "VALIDATION_ERROR")


async def test_checkout_rejects_invalid_json(stack: Stack) -> None:
    # Not JSON, and not even UTF-8 (FastAPI's own answer to that is a 400): one status.
    for body in (b"{not json", b"\xff\xfe{"):
        r = await stack.http.post(
            "/checkout", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == 422, (body, r.text)
        assert_error(r.json(), "VALIDATION_ERROR")


# --- cancel, ship, deliver ----------------------------------------------------------------


async def test_cancel_paid_order_refunds(stack: Stack) -> None:
    user = await stack.create_user()
    p = await stack.create_product(stock=4, price_cents=700)
    order_id = await stack.place(user["id"], [(p["id"], 2)])
    await stack.wait_for(order_id, "PAID")

    r = await stack.http.post(f"/orders/{order_id}/cancel", json={"reason": "changed my mind"})
    assert r.status_code == 200, r.text
    order = r.json()
    assert order["status"] == "CANCELLED"
    assert order["payment_status"] == "REFUNDED"
    assert (order["failure_reason"], order["cancel_reason"]) == (
        "CANCELLED_BY_CUSTOMER",
        "changed my mind",
    )
    assert statuses(order)[-1] == "CANCELLED"
    r = await stack.http.get(f"/users/{user['id']}/notifications")
    [told] = [n for n in r.json() if n["kind"] == "ORDER_CANCELLED"]
    assert told["message"] == f"Order {order_id} cancelled: changed my mind"

    r = await stack.http.get(f"/orders/{order_id}/payments")
    assert sorted((e["type"], e["amount_cents"]) for e in r.json()) == [
        ("CAPTURE", 1400),
        ("REFUND", 1400),
    ]
    assert (await stack.http.get(f"/products/{p['id']}")).json()["stock"] == 4

    # Cancelled is final: a second cancel is a conflict, as are ship and deliver.
    for action in ("cancel", "ship", "deliver"):
        r = await stack.http.post(f"/orders/{order_id}/{action}")
        assert r.status_code == 409, (action, r.text)
        assert_error(r.json(), "INVALID_STATE")


async def test_cancel_failed_order_conflicts(stack: Stack) -> None:
    user = await stack.create_user()
    p = await stack.create_product(stock=1)
    order_id = await stack.place(user["id"], [(p["id"], 1)], card=DECLINED_CARD)
    assert (await stack.wait_for(order_id, "FAILED"))["status"] == "FAILED"
    r = await stack.http.post(f"/orders/{order_id}/cancel", json={})
    assert r.status_code == 409, r.text
    assert_error(r.json(), "INVALID_STATE")
    assert "FAILED" in r.json()["error"]["message"]


async def test_ship_and_deliver(stack: Stack) -> None:
    user = await stack.create_user()
    p = await stack.create_product(stock=3)
    order_id = await stack.place(user["id"], [(p["id"], 1)])
    await stack.wait_for(order_id, "PAID")

    r = await stack.http.post(f"/orders/{order_id}/deliver")
    assert r.status_code == 409, r.text
    assert_error(r.json(), "INVALID_STATE")

    r = await stack.http.post(f"/orders/{order_id}/ship")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "SHIPPED"

    r = await stack.http.post(f"/orders/{order_id}/ship")
    assert r.status_code == 409
    r = await stack.http.post(f"/orders/{order_id}/cancel", json={"reason": "too late"})
    assert r.status_code == 409
    assert_error(r.json(), "INVALID_STATE")

    r = await stack.http.post(f"/orders/{order_id}/deliver")
    assert r.status_code == 200, r.text
    order = r.json()
    assert order["status"] == "DELIVERED"
    assert statuses(order) == ["PENDING", "RESERVED", "PAID", "SHIPPED", "DELIVERED"]

    r = await stack.http.get(f"/orders/{order_id}")
    assert r.json()["status"] == "DELIVERED"
    r = await stack.http.get("/orders", params={"user_id": user["id"], "status": "DELIVERED"})
    assert [o["order_id"] for o in r.json()] == [order_id]


async def test_unknown_order(stack: Stack) -> None:
    unknown = uuid.uuid4().hex
    for method, path in [
        ("GET", f"/orders/{unknown}"),
        ("GET", f"/orders/{unknown}/payments"),
        ("GET", f"/orders/{unknown}/events"),
        ("POST", f"/orders/{unknown}/cancel"),
        ("POST", f"/orders/{unknown}/ship"),
        ("POST", f"/orders/{unknown}/deliver"),
        ("GET", "/orders/unknown"),
    ]:
        r = await stack.http.request(method, path)
        assert r.status_code == 404, (method, path, r.text)
        assert_error(r.json(), "NOT_FOUND")
    r = await stack.http.get("/orders/" + "x" * 65)
    assert r.status_code == 422
    assert_error(r.json(), "VALIDATION_ERROR")


async def test_list_orders(stack: Stack) -> None:
    user = await stack.create_user()
    p = await stack.create_product(stock=5)
    first = await stack.place(user["id"], [(p["id"], 1)])
    await stack.wait_for(first, "PAID")
    second = await stack.place(user["id"], [(p["id"], 1)], card=DECLINED_CARD)
    await stack.wait_for(second, "FAILED")
    r = await stack.http.get("/orders", params={"user_id": user["id"]})
    assert [o["order_id"] for o in r.json()] == [second, first]
    r = await stack.http.get("/orders", params={"user_id": user["id"], "status": "FAILED"})
    assert [o["order_id"] for o in r.json()] == [second]
    r = await stack.http.get("/orders", params={"user_id": user["id"], "limit": 1})
    assert len(r.json()) == 1
    r = await stack.http.get("/orders", params={"status": "NOPE"})
    assert r.status_code == 422


# --- events -----------------------------------------------------------------------------


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = fields.get(name, "") + value.removeprefix(" ")
        if "data" in fields:
            events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


async def test_events_stream_until_final(stack: Stack) -> None:
    user = await stack.create_user()
    p = await stack.create_product(stock=2)
    order_id = await stack.place(user["id"], [(p["id"], 1)])
    # ASGITransport hands the body over once the stream ends: drive the order to its end.
    stream = asyncio.create_task(stack.http.get(f"/orders/{order_id}/events"))
    await stack.wait_for(order_id, "PAID")
    assert (await stack.http.post(f"/orders/{order_id}/ship")).status_code == 200
    assert (await stack.http.post(f"/orders/{order_id}/deliver")).status_code == 200
    r = await asyncio.wait_for(stream, 15)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    assert {name for name, _ in events} == {"status"}
    seen = [data["status"] for _, data in events]
    # One event per change, in order, none merged and none repeated.
    assert seen == ["PENDING", "RESERVED", "PAID", "SHIPPED", "DELIVERED"]
    last = events[-1][1]
    assert last["order_id"] == order_id
    assert statuses(last) == ["PENDING", "RESERVED", "PAID", "SHIPPED", "DELIVERED"]


async def test_events_of_final_order(stack: Stack) -> None:
    user = await stack.create_user()
    p = await stack.create_product(stock=1)
    order_id = await stack.place(user["id"], [(p["id"], 1)], card=DECLINED_CARD)
    await stack.wait_for(order_id, "FAILED")
    r = await stack.http.get(f"/orders/{order_id}/events")
    assert r.status_code == 200
    # The stream replays the order's changes, then ends at its final state.
    events = [(n, d["status"]) for n, d in parse_sse(r.text)]
    assert events == [("status", "PENDING"), ("status", "RESERVED"), ("status", "FAILED")]


# --- concurrency ------------------------------------------------------------------------


async def test_concurrent_checkouts_never_oversell(stack: Stack) -> None:
    p = await stack.create_product(stock=5, price_cents=100)
    users = await asyncio.gather(*(stack.create_user(f"u{i}") for i in range(4)))
    responses = await asyncio.gather(
        *(stack.checkout(users[i % 4]["id"], [(p["id"], 1)]) for i in range(20))
    )
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
    ids = [r.json()["order_id"] for r in responses]
    assert len(set(ids)) == 20
    orders = await asyncio.gather(*(stack.wait_for(o, {"PAID", "FAILED"}, timeout=40) for o in ids))
    outcome = sorted((o["status"], o["failure_reason"]) for o in orders)
    assert outcome == [("FAILED", "OUT_OF_STOCK")] * 15 + [("PAID", None)] * 5
    assert (await stack.http.get(f"/products/{p['id']}")).json()["stock"] == 0


async def test_products_are_never_free(stack: Stack) -> None:
    # Payment charges no zero amount: an order of free products could never be paid.
    for price in (0, -1):
        body = {"sku": f"s-{uuid.uuid4().hex[:10]}", "name": "Free", "price_cents": price}
        r = await stack.http.post("/products", json=body)
        assert r.status_code == 422, r.text
        assert_error(r.json(), "VALIDATION_ERROR")
        (detail,) = r.json()["error"]["details"]
        assert detail["loc"] == ["body", "price_cents"], detail
        assert "greater than or equal to 1" in detail["msg"], detail
    cheapest = await stack.create_product(price_cents=1)
    assert cheapest["price_cents"] == 1


async def test_a_cancel_signal_with_control_characters_still_cancels(stack: Stack) -> None:
    """`temporal workflow signal --name cancel` takes any text: a NUL (which the
    notification service and PostgreSQL refuse) no longer stops the cancel halfway, with
    the payment refunded and the order never told CANCELLED."""
    user = await stack.create_user()
    p = await stack.create_product(stock=1)
    order_id = await stack.place(user["id"], [(p["id"], 1)])
    await stack.wait_for(order_id, "PAID")
    handle = stack.client.get_workflow_handle(workflow_id_for(order_id))
    await handle.signal("cancel", {"reason": "wrong\x00size\x07"})
    await asyncio.wait_for(handle.result(), 30)  # its CancelOrder notifies, then it ends
    order = await stack.wait_for(order_id, "CANCELLED")
    assert (order["status"], order["cancel_reason"]) == ("CANCELLED", "wrong size")
    assert order["payment_status"] == "REFUNDED"
    r = await stack.http.get(f"/users/{user['id']}/notifications")
    assert (order_id, "ORDER_CANCELLED") in [(n["order_id"], n["kind"]) for n in r.json()]
