"""The catalogue through REST (SQLite and PostgreSQL): search and pages, categories,
change and deactivate, stock adjustments, CSV import; bad input answered by a 4xx that
changes nothing; prices as the saga sees them."""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.api_fixtures import FLAKY_CARD, Stack

LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


def tag() -> str:
    return uuid.uuid4().hex[:10]


async def make(stack: Stack, category: str, sku: str, **fields: Any) -> dict[str, Any]:
    body = {"sku": sku, "name": f"Name {sku}", "price_cents": 700, "category": category}
    r = await stack.http.post("/products", json={**body, **fields})
    assert r.status_code == 201, r.text
    product: dict[str, Any] = r.json()
    return product


async def follow(stack: Stack, url: str, headers: dict[str, str] | None = None) -> list[list[str]]:
    """The skus of each page, following the Link headers."""
    pages: list[list[str]] = []
    next_url: str | None = url
    while next_url:
        r = await stack.http.get(next_url, headers=headers or {})
        assert r.status_code == 200, r.text
        pages.append([p["sku"] for p in r.json()])
        match = LINK.match(r.headers.get("Link", ""))
        next_url = match["url"] if match else None
    return pages


async def test_search_pages_and_categories(stack: Stack) -> None:
    t = tag()
    category = f"cat-{t}"
    skus = [f"S-{t}-{i}" for i in range(5)]
    made = [
        await make(stack, category, sku, description=f"roast {i}") for i, sku in enumerate(skus)
    ]
    await stack.http.delete(f"/products/{made[4]['id']}")

    anonymous = {"Authorization": ""}
    pages = await follow(stack, f"/products?category={category}&limit=2", anonymous)
    assert pages == [skus[0:2], skus[2:4]]  # complete, in order, the inactive one left out
    assert await follow(stack, f"/products?q=s-{t}-3") == [[skus[3]]]
    assert await follow(stack, f"/products?q=ROAST%202&category={category}") == [[skus[2]]]
    # Inactive products: an admin's to list.
    assert await follow(stack, f"/products?category={category}&active=false") == [[skus[4]]]
    r = await stack.http.get(f"/products?category={category}&active=false", headers=anonymous)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "FORBIDDEN")

    r = await stack.http.get("/categories", headers=anonymous)
    assert r.status_code == 200
    assert {"name": category, "products": 4} in r.json()

    # A cursor is opaque and signed: forged, malformed or for other filters, it is a 422.
    r = await stack.http.get(f"/products?category={category}&limit=2")
    cursor = re.search(r"cursor=([^&>]+)", r.headers["Link"])
    assert cursor
    token, _, signature = cursor[1].partition(".")
    for bad in (
        f"{token}x.{signature}",
        f"{token}.{'A' * len(signature)}",
        "garbage",
        "a.b.c",
    ):
        r = await stack.http.get("/products", params={"category": category, "cursor": bad})
        assert r.status_code == 422, (bad, r.text)
        assert set(r.json()) == {"error"}
    r = await stack.http.get("/products", params={"category": "other", "cursor": cursor[1]})
    assert r.status_code == 422, r.text
    r = await stack.http.get("/products", params={"q": "q" * 101})
    assert r.status_code == 422
    r = await stack.http.get("/products", params={"limit": 0})
    assert r.status_code == 422


async def test_change_and_deactivate(stack: Stack) -> None:
    t = tag()
    product = await make(stack, f"cat-{t}", f"P-{t}", stock=3)
    url = f"/products/{product['id']}"
    assert product["low_stock"] is True  # 3 below the default 5
    r = await stack.http.patch(url, json={"price_cents": 990, "low_stock_threshold": 2})
    assert r.status_code == 200, r.text
    assert r.json()["low_stock"] is False
    assert (r.json()["price_cents"], r.json()["low_stock_threshold"], r.json()["stock"]) == (
        990,
        2,
        3,
    )
    for bad in ({"price_cents": 0}, {"name": " "}, {"sku": "NEW"}, {"active": "maybe"}):
        r = await stack.http.patch(url, json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert (await stack.http.get(url)).json()["price_cents"] == 990  # nothing changed
    missing = f"/products/{uuid.uuid4().hex}"
    assert (await stack.http.patch(missing, json={"name": "x"})).status_code == 404
    assert (await stack.http.delete(missing)).status_code == 404

    r = await stack.http.delete(url)
    assert r.status_code == 204 and r.content == b""
    r = await stack.http.get(url)
    assert r.status_code == 200 and r.json()["active"] is False  # kept for past orders
    listed = await stack.http.get("/products", params={"q": f"P-{t}"})
    assert listed.json() == []
    r = await stack.http.patch(url, json={"active": True})
    assert r.json()["active"] is True


async def test_stock_adjustments_are_idempotent_and_never_below_zero(stack: Stack) -> None:
    t = tag()
    product = await make(stack, f"cat-{t}", f"K-{t}", stock=5)
    url = f"/products/{product['id']}/stock"
    key = {"Idempotency-Key": f"delivery-{t}"}
    body = {"delta": 10, "reason": "delivery"}
    first = await stack.http.post(url, json=body, headers=key)
    again = await stack.http.post(url, json=body, headers=key)
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json()["stock"] == again.json()["stock"] == 15
    r = await stack.http.post(url, json={"delta": -16, "reason": "count"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "INSUFFICIENT_STOCK")
    r = await stack.http.post(url, json={"delta": -5, "reason": "breakage"})
    assert r.json()["stock"] == 10
    for bad in ({"delta": 1}, {"delta": "x", "reason": "r"}, {"delta": 10**10, "reason": "r"}):
        assert (await stack.http.post(url, json=bad)).status_code == 422
    r = await stack.http.post(f"/products/{uuid.uuid4().hex}/stock", json=body)
    assert r.status_code == 404
    assert (await stack.http.get(f"/products/{product['id']}")).json()["stock"] == 10

    r = await stack.http.get(f"/products/{product['id']}/stock/movements")
    assert r.status_code == 200
    moves = [(m["delta"], m["reason"]) for m in r.json()]
    assert moves == [(-5, "breakage"), (10, "delivery"), (5, "initial stock")]
    assert {m["actor"] for m in r.json()} == {r.json()[0]["actor"]}
    assert r.json()[0]["actor"].startswith("user:")
    r = await stack.http.get(f"/products/{uuid.uuid4().hex}/stock/movements")
    assert r.status_code == 404


def csv_file(text: str) -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("catalogue.csv", text.encode(), "text/csv")}


async def test_csv_import_upserts_and_refuses_a_malformed_file(stack: Stack) -> None:
    t = tag()
    category = f"imp-{t}"
    good = (
        "sku,name,description,price_cents,stock,category\n"
        f"A-{t},Beans,Dark,1200,7,{category}\n"
        f'B-{t},"Filter, paper",,0,1,{category}\n'
        f"C-{t},Kettle,,4500,,{category}\n"
    )
    r = await stack.http.post("/products/import", files=csv_file(good))
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["created"], result["updated"], result["unchanged"]) == (2, 0, 0)
    assert [(f["line"], f["sku"]) for f in result["failed"]] == [(3, f"B-{t}")]
    assert "price_cents" in result["failed"][0]["error"]

    again = good.replace("Kettle", "Gooseneck kettle")
    r = await stack.http.post("/products/import", files=csv_file(again))
    result = r.json()
    assert (result["created"], result["updated"], result["unchanged"]) == (0, 1, 1)
    listed = {p["sku"]: p for p in (await stack.http.get(f"/products?category={category}")).json()}
    assert listed[f"A-{t}"]["stock"] == 7  # imported twice, stocked once
    assert listed[f"C-{t}"]["name"] == "Gooseneck kettle"

    header = "sku,name,price_cents\n"
    for text, line in (
        (f"{header}D-{t},Ok,100\nE-{t},Bad,ten\n", 3),
        (f"{header}D-{t},Ok,100\nE-{t},Too,1,many\n", 3),
        ("sku,name\nD-x,No price\n", 1),
        (f'{header}D-{t},"unclosed,100\n', 2),
        ("", None),
    ):
        r = await stack.http.post("/products/import", files=csv_file(text))
        assert r.status_code == 422, (text, r.text)
        assert r.json()["error"]["code"] == "INVALID_CSV"
        if line is not None:
            assert f"line {line}" in r.json()["error"]["message"], r.text
    r = await stack.http.post(
        "/products/import", files={"file": ("x.csv", b"sku,name,price_cents\n\xff\n", "text/csv")}
    )
    assert r.status_code == 422
    # Nothing of the refused files was written.
    assert (await stack.http.get("/products", params={"q": f"D-{t}"})).json() == []
    assert (await stack.http.post("/products/import")).status_code == 422


async def test_prices_and_deactivation_as_the_saga_sees_them(stack: Stack) -> None:
    t = tag()
    product = await make(stack, f"cat-{t}", f"O-{t}", stock=10, price_cents=1000)
    user = await stack.create_user()
    # In flight: the card fails twice before it pays, so the saga is between its price
    # lookup and its payment (or past it) when the price changes. It charges the price it
    # looked up, which its history holds.
    in_flight = await stack.place(user["id"], [(product["id"], 1)], card=FLAKY_CARD)
    await stack.wait_for(in_flight, {"RESERVED", "PAID"})
    r = await stack.http.patch(f"/products/{product['id']}", json={"price_cents": 1500})
    assert r.status_code == 200
    after = await stack.place(user["id"], [(product["id"], 1)])
    kept, new = await stack.wait_for(in_flight, "PAID"), await stack.wait_for(after, "PAID")
    assert (kept["items"][0]["unit_price_cents"], kept["total_cents"]) == (1000, 1000)
    assert (new["items"][0]["unit_price_cents"], new["total_cents"]) == (1500, 1500)
    ledger = (await stack.http.get(f"/orders/{in_flight}/payments")).json()
    assert [(e["type"], e["amount_cents"]) for e in ledger] == [("CAPTURE", 1000)]

    # A deactivated product is not sold: the saga's lookup finds no product.
    await stack.http.delete(f"/products/{product['id']}")
    gone = await stack.place(user["id"], [(product["id"], 1)])
    failed = await stack.wait_for(gone, "FAILED")
    assert failed["failure_reason"] == "PRODUCT_NOT_FOUND"
