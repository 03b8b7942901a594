"""Who may do what ("Who may do what" in the contract), against the real stack.

The matrix names, for every route of the OpenAPI schema, the answer to an anonymous caller,
the owner of the resources in its path, another customer and the admin; a route added
without an entry fails the test. Then: bad tokens, passwords kept out of answers and logs,
and the rate limits, in memory and in Redis. (Over 400 lines: the matrix is one table, and
it must name every route.)
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr

from api.main import _report_admin_failure, create_app
from core.secrets import resolved_admin_password, resolved_jwt_secret
from core.tokens import ADMIN_ROLE, CUSTOMER_ROLE, issue_access_token
from tests.api_fixtures import DECLINED_CARD, PASSWORD, SHIPPING_ADDRESS, Stack, bearer

pytestmark = pytest.mark.timeout(90)

CALLERS = ("anonymous", "owner", "other", "admin")


@dataclass(frozen=True)
class Cell:
    """What a route answers each caller: statuses in the order of CALLERS."""

    anonymous: int
    owner: int
    other: int
    admin: int

    def __getitem__(self, caller: str) -> int:
        status: int = getattr(self, caller)
        return status


def public(status: int) -> Cell:
    return Cell(status, status, status, status)


def own(ok: int) -> Cell:
    """The owner and admins reach it; another customer gets 404, as for a missing id."""
    return Cell(401, ok, 404, ok)


def admin_only(ok: int) -> Cell:
    return Cell(401, 403, 403, ok)


# (method, path as in the schema) -> answers. The order is FAILED (declined card): cancel,
# ship and deliver reach it and answer 409 (wrong state) where the caller may act on it.
MATRIX: dict[tuple[str, str], Cell] = {
    ("get", "/health"): public(200),
    ("get", "/metrics"): public(200),  # Prometheus text (core.telemetry)
    ("post", "/auth/token"): public(200),
    ("post", "/users"): public(201),
    ("get", "/users/me"): Cell(401, 200, 200, 200),
    ("get", "/users/{user_id}"): own(200),
    ("get", "/users/{user_id}/notifications"): own(200),
    ("get", "/products"): public(200),
    ("post", "/products"): admin_only(201),
    ("get", "/products/{product_id}"): public(200),
    # With the owner's user_id in the body: only the owner may order for the owner.
    ("post", "/checkout"): Cell(401, 202, 403, 403),
    # ?user_id=owner: another customer gets 200 with none of the owner's orders.
    ("get", "/orders"): Cell(401, 200, 200, 200),
    ("get", "/orders/{order_id}"): own(200),
    ("get", "/orders/{order_id}/events"): own(200),
    ("get", "/orders/{order_id}/payments"): own(200),
    ("post", "/orders/{order_id}/cancel"): own(409),
    ("post", "/orders/{order_id}/ship"): admin_only(409),
    ("post", "/orders/{order_id}/deliver"): admin_only(409),
    # The pages' session login (the cookie) and the back office's figures (docs/pages.md).
    ("post", "/auth/session"): public(200),
    ("delete", "/auth/session"): public(204),
    ("get", "/admin/figures"): admin_only(200),
    # The catalogue (DELETE deactivates a spare product, not the one the orders use).
    ("get", "/categories"): public(200),
    ("patch", "/products/{product_id}"): admin_only(200),
    ("delete", "/products/{product_id}"): admin_only(204),
    ("post", "/products/{product_id}/stock"): admin_only(200),
    ("get", "/products/{product_id}/stock/movements"): admin_only(200),
    ("post", "/products/import"): admin_only(200),
    # Everyone's own cart (admins have one too); the checkout runs first, on empty carts.
    ("get", "/cart"): Cell(401, 200, 200, 200),
    ("put", "/cart/items/{product_id}"): Cell(401, 200, 200, 200),
    ("delete", "/cart"): Cell(401, 204, 204, 204),
    ("post", "/cart/checkout"): Cell(401, 409, 409, 409),
}

# The pages' event streams, outside the schema (they never end): who may open them. The
# refusals are checked here; the 200s, which stream, in tests/test_pages.py on a real server.
FEEDS: dict[str, Cell] = {
    "/admin/feeds/orders": admin_only(200),
    "/admin/feeds/low-stock": admin_only(200),
    "/notifications/events": Cell(401, 200, 200, 200),
}


@dataclass
class World:
    owner: dict[str, Any]
    owner_email: str
    product: dict[str, Any]
    order_id: str
    headers: dict[str, dict[str, str]]
    spare_product: dict[str, Any]


@pytest.fixture(scope="module")
async def world(stack: Stack) -> World:
    owner = await stack.create_user("Owner")
    other = await stack.create_user("Other")
    product = await stack.create_product(stock=50)
    order_id = await stack.place(owner["id"], [(product["id"], 1)], card=DECLINED_CARD)
    await stack.wait_for(order_id, "FAILED")
    spare_product = await stack.create_product(stock=1)
    return World(
        spare_product=spare_product,
        owner=owner,
        owner_email=owner["email"],
        product=product,
        order_id=order_id,
        headers={
            "anonymous": {"Authorization": ""},  # overrides the admin's default header
            "owner": stack.as_user(owner["id"]),
            "other": stack.as_user(other["id"]),
            "admin": {},
        },
    )


def _request(world: World, method: str, path: str, ids: dict[str, str]) -> dict[str, Any]:
    """The keyword arguments of a well-formed request to the route."""
    url = path.format(**ids)
    kwargs: dict[str, Any] = {"method": method.upper(), "url": url}
    if path == "/auth/token" or (method, path) == ("post", "/auth/session"):
        kwargs["data"] = {"username": world.owner_email, "password": PASSWORD}
    elif path == "/users":
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        kwargs["json"] = {"email": email, "name": "New", "password": PASSWORD}
    elif (method, path) == ("post", "/products"):
        kwargs["json"] = {"sku": f"sku-{uuid.uuid4().hex[:10]}", "name": "N", "price_cents": 1}
    elif path == "/checkout":
        kwargs["json"] = {
            "user_id": world.owner["id"],
            "items": [{"product_id": world.product["id"], "quantity": 1}],
            "payment": {"card_number": DECLINED_CARD},
            "shipping_address": SHIPPING_ADDRESS,
        }
    elif path == "/orders":
        kwargs["params"] = {"user_id": world.owner["id"]}
    elif path.endswith("/cancel"):
        kwargs["json"] = {"reason": "authz matrix"}
    elif (method, path) == ("patch", "/products/{product_id}"):
        kwargs["json"] = {"description": "authz matrix"}
    elif (method, path) == ("delete", "/products/{product_id}") and ids[
        "product_id"
    ] == world.product["id"]:
        kwargs["url"] = path.format(product_id=world.spare_product["id"])
    elif path.endswith("/stock"):
        kwargs["json"] = {"delta": 1, "reason": "authz matrix"}
    elif path == "/products/import":
        csv = f"sku,name,price_cents\nsku-{uuid.uuid4().hex[:10]},Imported,100\n"
        kwargs["files"] = {"file": ("catalogue.csv", csv.encode(), "text/csv")}
    elif path == "/cart/items/{product_id}":
        kwargs["json"] = {"quantity": 1}
    elif path == "/cart/checkout":
        kwargs["json"] = {
            "payment": {"card_number": DECLINED_CARD},
            "shipping_address": SHIPPING_ADDRESS,
        }
    return kwargs


def _ids(world: World, missing: bool = False) -> dict[str, str]:
    if missing:
        return {"user_id": "no-such-user", "order_id": "no-such-order", "product_id": "nope"}
    return {
        "user_id": world.owner["id"],
        "order_id": world.order_id,
        "product_id": world.product["id"],
    }


def test_every_route_has_an_entry_in_the_matrix() -> None:
    routes = {
        (method, path)
        for path, operations in create_app().openapi()["paths"].items()
        for method in operations
    }
    assert routes - MATRIX.keys() == set(), "a route without an entry in MATRIX"
    assert MATRIX.keys() - routes == set(), "an entry in MATRIX for a route that is gone"


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX))
async def test_who_may_do_what(stack: Stack, world: World, method: str, path: str) -> None:
    for caller in CALLERS:
        want = MATRIX[method, path][caller]
        kwargs = _request(world, method, path, _ids(world))
        r = await stack.http.request(**kwargs, headers=world.headers[caller])
        stack.http.cookies.clear()  # POST /auth/session's cookie: the callers are the headers
        assert r.status_code == want, (caller, method, path, r.text)
        if want >= 400:
            assert set(r.json()) == {"error"}, r.text
        if want == 401:
            assert r.headers["WWW-Authenticate"] == "Bearer"
        if want == 404 and caller == "other":
            # Exactly what a missing id answers: nothing tells that it exists.
            missing = _request(world, method, path, _ids(world, missing=True))
            gone = await stack.http.request(**missing, headers=world.headers[caller])
            assert gone.status_code == 404
            assert gone.json()["error"]["code"] == r.json()["error"]["code"]
            mine = r.json()["error"]["message"]
            for key, value in _ids(world).items():
                mine = mine.replace(value, _ids(world, missing=True)[key])
            assert mine == gone.json()["error"]["message"]
        if path == "/orders" and r.status_code == 200:
            found = {o["order_id"] for o in r.json()}
            assert (world.order_id in found) == (caller != "other"), (caller, found)


@pytest.mark.parametrize("path", sorted(FEEDS))
async def test_who_may_open_the_feeds(stack: Stack, world: World, path: str) -> None:
    for caller in CALLERS:
        want = FEEDS[path][caller]
        if want == 200:
            continue
        r = await stack.http.get(path, headers=world.headers[caller])
        assert r.status_code == want, (caller, path, r.text)
        assert set(r.json()) == {"error"}, r.text


async def test_a_customer_lists_only_their_own_orders(stack: Stack, world: World) -> None:
    customer = await stack.create_user("Lister")
    mine = await stack.place(customer["id"], [(world.product["id"], 1)], card=DECLINED_CARD)
    await stack.wait_for(mine, "FAILED")
    r = await stack.http.get("/orders", headers=stack.as_user(customer["id"]))
    assert [o["order_id"] for o in r.json()] == [mine]
    admin = await stack.http.get("/orders", params={"user_id": world.owner["id"]})
    assert world.order_id in {o["order_id"] for o in admin.json()}
    assert {o["user_id"] for o in admin.json()} == {world.owner["id"]}
    everyone = await stack.http.get("/orders", params={"limit": 200})
    assert {mine, world.order_id} <= {o["order_id"] for o in everyone.json()}


async def test_the_checkout_customer_is_the_caller(stack: Stack, world: World) -> None:
    body = {
        "items": [{"product_id": world.product["id"], "quantity": 1}],
        "payment": {"card_number": DECLINED_CARD},
        "shipping_address": SHIPPING_ADDRESS,
    }
    r = await stack.http.post("/checkout", json=body, headers=world.headers["owner"])
    assert r.status_code == 202, r.text
    order = await stack.wait_for(r.json()["order_id"], "FAILED")
    assert order["user_id"] == world.owner["id"]


async def test_public_documents(stack: Stack, world: World) -> None:
    for path in ("/docs", "/openapi.json"):
        r = await stack.http.get(path, headers=world.headers["anonymous"])
        assert r.status_code == 200, path
    scheme = stack.app.openapi()["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["flows"]["password"]["tokenUrl"] == "/auth/token"


async def test_users_me_and_the_token(stack: Stack, world: World) -> None:
    r = await stack.http.post(
        "/auth/token", data={"username": world.owner_email.upper(), "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    token = r.json()
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == stack.settings.access_token_minutes * 60
    me = await stack.http.get("/users/me", headers=bearer(token["access_token"]))
    assert me.json() == world.owner
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert set(claims) == {"sub", "role", "iat", "exp"}
    assert (claims["sub"], claims["role"]) == (world.owner["id"], CUSTOMER_ROLE)
    admin = await stack.http.get("/users/me")
    assert admin.json()["role"] == ADMIN_ROLE
    assert admin.json()["email"] == stack.settings.admin_email


def _none_token(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, "", algorithm="none")


# HS512 with our 256-bit secret is the point of one of the tokens.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_bad_tokens_get_401(stack: Stack, world: World) -> None:
    secret = resolved_jwt_secret(stack.settings)
    sub, hour = world.owner["id"], timedelta(hours=1)
    good = issue_access_token(secret, sub, ADMIN_ROLE, hour)
    header, payload, _ = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    bad = {
        "forged": issue_access_token("another secret, as long as ours" * 2, sub, ADMIN_ROLE, hour),
        "expired": issue_access_token(secret, sub, ADMIN_ROLE, -timedelta(seconds=5)),
        "HS512": jwt.encode(claims, secret.encode(), algorithm="HS512"),
        "alg none": _none_token(claims),
        "alg none, HS256 signature kept": f"{_none_token(claims).split('.')[0]}.{payload}."
        + good.split(".")[2],
        "no role": jwt.encode({"sub": sub, "iat": claims["iat"], "exp": claims["exp"]}, secret),
        "tampered": f"{header}.{payload[:-2]}xx.{good.split('.')[2]}",
        "malformed": "not-a-jwt",
    }
    assert (await stack.http.get("/users/me", headers=bearer(good))).status_code == 200
    for name, token in bad.items():
        for method, url in (("GET", "/users/me"), ("POST", "/products")):
            r = await stack.http.request(method, url, json={}, headers=bearer(token))
            assert r.status_code == 401, (name, url, r.text)
            assert r.headers["WWW-Authenticate"] == "Bearer"
            assert r.json()["error"]["code"] == "UNAUTHORIZED"
    for value in ("Basic YTpi", "Bearer", good):  # other schemes; no token; no scheme
        r = await stack.http.get("/users/me", headers={"Authorization": value})
        assert r.status_code == 401, value


async def test_passwords_are_never_returned_or_logged(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    anonymous = {"Authorization": ""}
    with caplog.at_level(logging.DEBUG):
        answers = [
            await stack.http.post(
                "/users",
                json={"email": email, "name": "Ada", "password": password},
                headers=anonymous,
            ),
            # Invalid with the password in it: the 422's details leave the input out.
            await stack.http.post(
                "/users", json={"email": "bad", "name": "", "password": password}
            ),
            await stack.http.post(
                "/users", json={"email": email, "name": "Ada", "password": password[:7]}
            ),
            await stack.http.post("/auth/token", data={"username": email, "password": password}),
            await stack.http.post(
                "/auth/token", data={"username": email, "password": password + "x"}
            ),
            await stack.http.post(
                "/auth/token", data={"username": f"x{email}", "password": password}
            ),
        ]
    assert [r.status_code for r in answers] == [201, 422, 422, 200, 401, 401]
    for r in answers:
        assert password not in r.text and password[:7] not in r.text
    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert password not in caplog.text and password[:7] not in caplog.text


# --- rate limits ------------------------------------------------------------------------


def new_address() -> str:
    """A client address of its own, so that no other test (or run) shares its counters."""
    return "127." + ".".join(str(b) for b in uuid.uuid4().bytes[:3])


@asynccontextmanager
async def limited_api(
    stack: Stack, address: str | None = None, **limits: str
) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:
    """Another API process on the same services and database, with these limits: makes
    clients that come from `address` (a new one by default)."""
    app = create_app(stack.settings.model_copy(update=limits), client=stack.client)
    address = address or new_address()

    def client() -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://api", timeout=30)

    async with app.router.lifespan_context(app):
        yield client


STORAGES = ["memory://", "redis://127.0.0.1:6379"]


@pytest.mark.parametrize("storage", STORAGES)
async def test_login_failures_are_rate_limited(stack: Stack, world: World, storage: str) -> None:
    async with (
        limited_api(stack, login_rate_limit="3/minute", rate_limit_storage_url=storage) as client,
        client() as http,
    ):
        unknown = f"{uuid.uuid4().hex[:10]}@example.com"
        wrong = {"username": world.owner_email, "password": "wrong password"}
        # An unknown email and a wrong password: the same answer.
        a = await http.post("/auth/token", data={"username": unknown, "password": PASSWORD})
        b = await http.post("/auth/token", data=wrong)
        assert a.status_code == b.status_code == 401
        assert a.json() == b.json() and a.headers["WWW-Authenticate"] == "Bearer"
        for _ in range(2):
            assert (await http.post("/auth/token", data=wrong)).status_code == 401
        r = await http.post("/auth/token", data=wrong)
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "RATE_LIMITED"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        # Even the right password now waits: the limit is per email and address.
        right = {"username": world.owner_email, "password": PASSWORD}
        assert (await http.post("/auth/token", data=right)).status_code == 429
        # Another email from the same address is counted apart.
        other = await http.post("/auth/token", data={"username": unknown, "password": "x"})
        assert other.status_code == 401


@pytest.mark.parametrize("storage", STORAGES)
async def test_mutating_routes_are_rate_limited_per_caller(
    stack: Stack, world: World, storage: str
) -> None:
    async with (
        limited_api(stack, rate_limit="3/minute", rate_limit_storage_url=storage) as client,
        client() as http,
    ):
        owner, other = world.headers["owner"], world.headers["other"]
        # Every answer counts, a 404 as much as a success.
        for _ in range(3):
            r = await http.post("/orders/no-such-order/cancel", json={}, headers=owner)
            assert r.status_code == 404
        r = await http.post(f"/orders/{world.order_id}/cancel", json={}, headers=owner)
        assert r.status_code == 429, r.text
        assert set(r.json()) == {"error"} and int(r.headers["Retry-After"]) >= 1
        # Reads are not limited; another caller has a count of their own.
        assert (await http.get("/users/me", headers=owner)).status_code == 200
        r = await http.post(f"/orders/{world.order_id}/cancel", json={}, headers=other)
        assert r.status_code == 404


async def test_logins_count_per_address_too(stack: Stack, world: World) -> None:
    """LOGIN_RATE_LIMIT counts each email apart; one password tried on many emails (password
    spraying) runs into RATE_LIMIT per client address, through either login route."""
    async with (
        limited_api(stack, rate_limit="3/minute", login_rate_limit="0") as client,
        client() as http,
    ):
        for n in range(2):
            guess = {"username": f"spray-{n}-{uuid.uuid4().hex[:6]}@example.com", "password": "x"}
            assert (await http.post("/auth/token", data=guess)).status_code == 401
        guess = {"username": f"spray-{uuid.uuid4().hex[:6]}@example.com", "password": "x"}
        assert (await http.post("/auth/session", data=guess)).status_code == 401
        right = {"username": world.owner_email, "password": PASSWORD}
        r = await http.post("/auth/token", data=right)
        assert r.status_code == 429 and r.json()["error"]["code"] == "RATE_LIMITED", r.text
        assert (await http.post("/auth/session", data=right)).status_code == 429
    # From another address, the same login goes through.
    async with limited_api(stack, rate_limit="3/minute") as client, client() as http:
        right = {"username": world.owner_email, "password": PASSWORD}
        assert (await http.post("/auth/token", data=right)).status_code == 200


async def test_login_form_is_bounded(stack: Stack, world: World) -> None:
    """An email or a password too long to be one is refused before any check or count."""
    too_long = {"username": "a" * 310 + "@example.com", "password": PASSWORD}
    huge_password = {"username": world.owner_email, "password": "p" * 1025}
    for route in ("/auth/token", "/auth/session"):
        for form in (too_long, huge_password, {"username": "", "password": PASSWORD}):
            r = await stack.http.post(route, data=form)
            assert r.status_code == 422, (route, r.text)
            assert PASSWORD not in r.text and "p" * 1025 not in r.text
    # The OAuth2 form's grant_type, when sent, is "password".
    right = {"username": world.owner_email, "password": PASSWORD}
    ok = await stack.http.post("/auth/token", data=right | {"grant_type": "password"})
    assert ok.status_code == 200
    wrong = await stack.http.post("/auth/token", data=right | {"grant_type": "client"})
    assert wrong.status_code == 422


async def test_replicas_share_counters_in_redis(stack: Stack, world: World) -> None:
    limits = {"login_rate_limit": "2/minute", "rate_limit_storage_url": STORAGES[1]}
    wrong = {"username": world.owner_email, "password": "wrong password"}
    address = new_address()
    async with (
        limited_api(stack, address, **limits) as one,
        limited_api(stack, address, **limits) as two,
    ):
        async with one() as a, two() as b:
            assert (await a.post("/auth/token", data=wrong)).status_code == 401
            assert (await b.post("/auth/token", data=wrong)).status_code == 401
            assert (await a.post("/auth/token", data=wrong)).status_code == 429
            assert (await b.post("/auth/token", data=wrong)).status_code == 429


async def test_zero_turns_a_limit_off(stack: Stack, world: World) -> None:
    async with limited_api(stack, login_rate_limit="0") as client, client() as http:
        wrong = {"username": world.owner_email, "password": "wrong password"}
        for _ in range(15):
            assert (await http.post("/auth/token", data=wrong)).status_code == 401


# --- the admin account -------------------------------------------------------------------


async def test_a_late_refusal_of_the_admin_account_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past ADMIN_WAIT the API serves while ensure_admin still waits for the services; if
    they then refuse the account, the refusal is logged as an error, not lost in its task."""

    async def refused() -> None:
        raise RuntimeError("the admin account is refused: password too short")

    task = asyncio.create_task(refused())
    await asyncio.gather(task, return_exceptions=True)
    with caplog.at_level(logging.ERROR, logger="api"):
        _report_admin_failure(task)
    [record] = caplog.records
    assert record.levelno == logging.ERROR and "password too short" in record.getMessage()
    assert "without an admin account" in record.getMessage()
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    caplog.clear()
    _report_admin_failure(done)  # set up in time: nothing to say
    assert not caplog.records


async def test_each_start_brings_the_admin_account_up_to_date(stack: Stack) -> None:
    settings = stack.settings
    old = {"username": settings.admin_email, "password": resolved_admin_password(settings)}
    new = {"username": settings.admin_email, "password": f"new-{uuid.uuid4().hex}"}
    changed = settings.model_copy(update={"admin_password": SecretStr(new["password"])})
    app = create_app(changed, client=stack.client)
    try:
        async with app.router.lifespan_context(app):
            assert (await stack.http.post("/auth/token", data=new)).status_code == 200
            assert (await stack.http.post("/auth/token", data=old)).status_code == 401
    finally:
        app = create_app(settings, client=stack.client)
        async with app.router.lifespan_context(app):
            assert (await stack.http.post("/auth/token", data=old)).status_code == 200


async def test_an_admin_password_the_services_refuse_stops_the_start(stack: Stack) -> None:
    short = SecretStr("short")
    app = create_app(
        stack.settings.model_copy(update={"admin_password": short}), client=stack.client
    )
    with pytest.raises(RuntimeError, match="the admin account is refused: password must be"):
        async with app.router.lifespan_context(app):
            pass
