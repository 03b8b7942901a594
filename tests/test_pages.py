"""The storefront and the back office in a real headless Chromium (Playwright driving Debian's
`chromium`), against the real processes (`running_stack`, started once for the module).

Every page a test opens fails the test on a console error or an uncaught exception. The
tests write screenshots of the main pages to test-artifacts/ (not committed). Skipped where
Chromium is missing unless REQUIRE_BROWSER=1 (CI), where that is a failure. The session
cookie, CSRF and feed checks at the end need no browser. (Over 400 lines: they share the
module's one running stack, which takes longer to start than any of them to run.)
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    FilePayload,
    Page,
    async_playwright,
    expect,
)
from temporalio.testing import WorkflowEnvironment

from api.auth import CSRF_HEADER, SESSION_COOKIE
from core.config import Settings
from core.run import banner
from core.secrets import resolved_admin_password, resolved_jwt_secret
from core.seed import SeedResult
from core.tokens import ADMIN_ROLE, CUSTOMER_ROLE, issue_access_token
from tests.api_fixtures import DECLINED_CARD, GOOD_CARD, PASSWORD, SHIPPING_ADDRESS, bearer, log_in
from tests.harness import RunningStack, running_stack, uid
from tests.test_authz import FEEDS
from tests.test_web_ui import chromium

pytestmark = pytest.mark.timeout(180)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WAIT = 30_000  # ms: how long a page may take to show what a test expects


@dataclass
class Site:
    stack: RunningStack
    http: httpx.AsyncClient  # sends the admin's token
    admin_password: str
    customers: dict[str, str] = field(default_factory=dict)  # email -> token

    @property
    def url(self) -> str:
        return self.stack.api_url

    async def product(self, name: str, category: str, stock: int = 20, price: int = 1250) -> str:
        body = {
            "sku": uid("SKU-")[:30],
            "name": name,
            "description": f"{name}, for the page tests",
            "price_cents": price,
            "stock": stock,
            "category": category,
        }
        r = await self.http.post("/products", json=body)
        assert r.status_code == 201, r.text
        product_id: str = r.json()["id"]
        return product_id

    async def customer(self, name: str = "Page Customer") -> tuple[str, str]:
        """A registered customer: (email, user id); their token in `customers`."""
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        r = await self.http.post(
            "/users", json={"email": email, "name": name, "password": PASSWORD}
        )
        assert r.status_code == 201, r.text
        self.customers[email] = await log_in(self.http, email, PASSWORD)
        return email, r.json()["id"]

    async def place(self, email: str, product_id: str, quantity: int, card: str = GOOD_CARD) -> str:
        body = {
            "items": [{"product_id": product_id, "quantity": quantity}],
            "payment": {"card_number": card},
            "shipping_address": SHIPPING_ADDRESS,
        }
        r = await self.http.post("/checkout", json=body, headers=bearer(self.customers[email]))
        assert r.status_code == 202, r.text
        order_id: str = r.json()["order_id"]
        return order_id


@pytest.fixture(scope="module")
async def site(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    address = dev_env.client.service_client.config.target_host
    data_dir = tmp_path_factory.mktemp("pages")
    async with running_stack(address, data_dir, rate_limit="0", login_rate_limit="0") as stack:
        password = resolved_admin_password(stack.settings)
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
            http.headers.update(bearer(await log_in(http, stack.settings.admin_email, password)))
            yield Site(stack, http, password)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium()
    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield b
        await b.close()


class Pages:
    """Opens pages in browser contexts and remembers every console error they report."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.browser = browser
        self.base = base
        self.errors: list[str] = []
        self.contexts: list[BrowserContext] = []

    async def page(self, width: int = 1100) -> Page:
        context = await self.browser.new_context(
            base_url=self.base, viewport={"width": width, "height": 760}
        )
        self.contexts.append(context)
        page = await context.new_page()
        page.on(
            "console",
            lambda m: self.errors.append(f"{page.url}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))
        return page

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest.fixture
async def pages(browser: Browser, site: Site) -> AsyncIterator[Pages]:
    opened = Pages(browser, site.url)
    yield opened
    await opened.close()
    assert opened.errors == [], opened.errors


async def log_in_page(page: Page, email: str, password: str, next_path: str = "/") -> None:
    await page.goto(f"/shop/login?next={next_path}")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(lambda url: "/shop/login" not in url)
    assert page.url.endswith(next_path), page.url


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


async def check_out(page: Page, card: str) -> str:
    """Fills the cart page's checkout form and places the order: its id."""
    await page.goto("/shop/cart")
    await page.get_by_text("Test cards").click()
    await page.get_by_role("button", name=card).click()  # a listed test card fills it in
    await page.get_by_label("Name", exact=True).fill(SHIPPING_ADDRESS["name"])
    await page.get_by_label("Address line 1").fill(SHIPPING_ADDRESS["line1"])
    await page.get_by_label("City").fill(SHIPPING_ADDRESS["city"])
    await page.get_by_label("Postal code").fill(SHIPPING_ADDRESS["postal_code"])
    await page.get_by_label("Country").fill(SHIPPING_ADDRESS["country"])
    await page.get_by_role("button", name="Place order").click()
    await page.wait_for_url(re.compile(r"/shop/orders/[0-9a-f]+$"), timeout=WAIT)
    return page.url.rsplit("/", 1)[1]


async def test_a_customer_orders_while_the_admin_board_follows_and_ships_it(
    site: Site, pages: Pages
) -> None:
    tag = uuid.uuid4().hex[:8]
    await site.product(f"Lamp {tag}", f"lights-{tag}")
    await site.product(f"Shade {tag}", f"lights-{tag}", price=800)
    await site.product("Unrelated kettle", f"kitchen-{tag}")

    admin = await pages.page()
    await log_in_page(admin, site.stack.settings.admin_email, site.admin_password, "/admin")
    await expect(admin.locator("#figures")).to_contain_text("Orders today", timeout=WAIT)

    shop = await pages.page()
    await shop.goto("/shop/register")
    email = f"{tag}@example.com"
    await shop.get_by_label("Name", exact=True).fill("Grace Hopper")
    await shop.get_by_label("Email").fill(email)
    await shop.get_by_label("Password").fill(PASSWORD)
    await shop.get_by_role("button", name="Register").click()
    await shop.wait_for_url(re.compile(r"/$"))
    await expect(shop.get_by_role("button", name="Log out")).to_be_visible()

    await shop.get_by_label("Search").fill(tag)
    await shop.get_by_role("button", name="Search").click()
    cards = shop.locator("#products > li")
    await expect(cards).to_have_count(2, timeout=WAIT)
    await shot(shop, "storefront")
    for name in (f"Lamp {tag}", f"Shade {tag}"):
        card = cards.filter(has_text=name)
        await card.get_by_role("button", name="Add to cart").click()
        await expect(shop.locator("#flash")).to_contain_text(f"Added 1 × {name}")

    await shop.goto("/shop/cart")
    await expect(shop.locator("#lines tr")).to_have_count(2, timeout=WAIT)
    await expect(shop.locator("#total")).to_have_text("$20.50")
    shade = shop.get_by_label(f"Quantity of Shade {tag}")
    await shade.fill("3")
    await shade.blur()
    await expect(shop.locator("#total")).to_have_text("$36.50", timeout=WAIT)
    await shade.fill("1")
    await shade.blur()
    await expect(shop.locator("#total")).to_have_text("$20.50", timeout=WAIT)
    await shot(shop, "cart")
    order_id = await check_out(shop, GOOD_CARD)

    # Live on both pages, without reloading either.
    await expect(shop.locator("#status")).to_have_text("PAID", timeout=WAIT)
    await expect(shop.locator("#payment")).to_have_text("CAPTURED")
    row = admin.locator(f'#orders tr[data-order-id="{order_id}"]')
    await expect(row).to_have_attribute("data-status", "PAID", timeout=WAIT)
    link = row.get_by_role("link", name=re.compile("Workflow"))
    href = await link.get_attribute("href")
    settings = site.stack.settings
    assert href == (
        f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}"
        f"/workflows/order-{order_id}"
    )
    await expect(admin.locator("#figures")).to_contain_text("$20.50", timeout=WAIT)
    await shot(admin, "admin")
    await row.get_by_role("button", name=re.compile("^Ship")).click()
    await expect(shop.locator("#status")).to_have_text("SHIPPED", timeout=WAIT)
    await expect(shop.locator("#history li")).to_have_count(4)  # PENDING RESERVED PAID SHIPPED
    await expect(row).to_have_attribute("data-status", "SHIPPED", timeout=WAIT)
    await shot(shop, "order")

    # The board's filter; then my orders and the notifications, which arrive live.
    await admin.get_by_label("Status").select_option("FAILED")
    await expect(row).to_be_hidden()
    await shop.goto("/shop/notifications")
    await expect(shop.locator('#notifications li[data-kind="ORDER_SHIPPED"]')).to_have_count(1)
    await admin.get_by_label("Status").select_option("")
    await (
        admin.locator(f'#orders tr[data-order-id="{order_id}"]')
        .get_by_role("button", name=re.compile("^Deliver"))
        .click()
    )
    delivered = shop.locator('#notifications li[data-kind="ORDER_DELIVERED"]')
    await expect(delivered).to_have_count(1, timeout=WAIT)
    await shop.goto("/shop/orders")
    await expect(shop.locator("#orders")).to_contain_text("DELIVERED")


async def test_a_declined_card_fails_and_a_cancel_refunds(site: Site, pages: Pages) -> None:
    tag = uuid.uuid4().hex[:8]
    product_id = await site.product(f"Clock {tag}", f"time-{tag}")
    email, _ = await site.customer()
    shop = await pages.page(width=390)  # a phone
    await log_in_page(shop, email, PASSWORD)
    await shop.goto(f"/shop/products/{product_id}")
    await expect(shop.locator("#name")).to_have_text(f"Clock {tag}")
    await shop.get_by_role("button", name="Add to cart").click()
    await expect(shop.locator("#flash")).to_contain_text("Added", timeout=WAIT)
    await shop.goto("/shop/cart")
    await shop.get_by_role("button", name=f"Remove Clock {tag}").click()
    await expect(shop.locator("#empty")).to_be_visible(timeout=WAIT)
    await shop.goto(f"/shop/products/{product_id}")
    await shop.get_by_role("button", name="Add to cart").click()
    await expect(shop.locator("#flash")).to_contain_text("Added", timeout=WAIT)
    await check_out(shop, DECLINED_CARD)
    await expect(shop.locator("#status")).to_have_text("FAILED", timeout=WAIT)
    await expect(shop.locator("#failure")).to_contain_text("PAYMENT_DECLINED")
    await expect(shop.get_by_role("button", name="Cancel order")).to_be_hidden()

    order_id = await site.place(email, product_id, 1)
    await shop.goto(f"/shop/orders/{order_id}")
    await expect(shop.locator("#status")).to_have_text("PAID", timeout=WAIT)
    await shop.get_by_label("Reason").fill("<b>not</b> needed")
    await shop.get_by_role("button", name="Cancel order").click()
    await expect(shop.locator("#status")).to_have_text("CANCELLED", timeout=WAIT)
    await expect(shop.locator("#payment")).to_have_text("REFUNDED")
    await expect(shop.locator("#cancel-reason")).to_have_text("Cancel reason: <b>not</b> needed")


async def test_a_stock_drop_below_the_threshold_alerts_the_board(site: Site, pages: Pages) -> None:
    tag = uuid.uuid4().hex[:8]
    name = f"Kettle {tag}"
    product_id = await site.product(name, f"kitchen-{tag}", stock=6)  # threshold: 5
    admin = await pages.page()
    await log_in_page(admin, site.stack.settings.admin_email, site.admin_password, "/admin")
    await expect(admin.locator("#figures")).to_contain_text("Orders today", timeout=WAIT)
    email, _ = await site.customer()
    await site.place(email, product_id, 3)
    alert = admin.locator(f'#alerts li[data-product-id="{product_id}"]')
    await expect(alert).to_contain_text(f"{name} — 3 left", timeout=WAIT)


async def test_an_admin_imports_a_csv_with_progress_and_summary(site: Site, pages: Pages) -> None:
    tag = uuid.uuid4().hex[:8]
    csv = (
        "sku,name,description,price_cents,stock,category\n"
        f"IMP-{tag}-1,Imported one {tag},first,1000,5,import-{tag}\n"
        f"IMP-{tag}-2,Imported two {tag},second,2000,7,import-{tag}\n"
        f"IMP-{tag}-3,Broken {tag},no price,-5,1,import-{tag}\n"
    )
    admin = await pages.page()
    await log_in_page(
        admin, site.stack.settings.admin_email, site.admin_password, "/admin/products"
    )
    await admin.get_by_label("CSV file").set_input_files(
        files=FilePayload(name="products.csv", mimeType="text/csv", buffer=csv.encode())
    )
    await admin.get_by_role("button", name="Import").click()
    summary = admin.locator("#import-summary")
    await expect(summary).to_contain_text("2 created", timeout=WAIT)
    await expect(summary).to_contain_text("1 failed")
    await expect(summary.locator("li")).to_contain_text("line 4")
    await expect(admin.locator("#import-progress")).to_have_attribute("value", "100")
    two = admin.locator("#products tr").filter(has=admin.locator(f'[value="Imported two {tag}"]'))
    await expect(two).to_have_count(1, timeout=WAIT)

    # Adjust stock, edit, deactivate.
    await two.get_by_label(re.compile("^Stock change")).fill("-3")
    await two.get_by_role("button", name="Apply").click()
    await expect(two.locator(".stock")).to_have_text("4", timeout=WAIT)
    await two.get_by_label(re.compile("^Name of")).fill(f"Renamed two {tag}")
    await two.get_by_role("button", name="Save").click()
    await expect(admin.locator("#flash")).to_have_text(f"Saved Renamed two {tag}.", timeout=WAIT)
    one = admin.locator("#products tr").filter(has_text=f"IMP-{tag}-1")
    await one.get_by_role("button", name="Deactivate").click()
    await expect(admin.locator("#products tr.inactive")).to_contain_text(
        f"IMP-{tag}-1", timeout=WAIT
    )
    await shot(admin, "admin-products")
    listed = (await site.http.get("/products", params={"q": tag})).json()
    assert [(p["name"], p["stock"]) for p in listed] == [(f"Renamed two {tag}", 4)]


async def test_html_in_a_name_shows_as_text_and_customers_stay_out_of_admin(
    site: Site, pages: Pages
) -> None:
    tag = uuid.uuid4().hex[:8]
    name = "<script>alert(1)</script>"
    await site.product(name, f"xss-{tag}")
    shop = await pages.page()
    dialogs: list[str] = []
    shop.on("dialog", lambda d: dialogs.append(d.message))
    await shop.goto(f"/?category=xss-{tag}")
    heading = shop.locator("#products h2")
    await expect(heading).to_have_text(name, timeout=WAIT)
    assert await shop.locator("#products script").count() == 0
    assert dialogs == []

    # Anonymous: to the login; a customer: refused.
    await shop.goto("/admin")
    await expect(shop).to_have_url(re.compile(r"/shop/login\?next=/admin$"))
    email, _ = await site.customer()
    await log_in_page(shop, email, PASSWORD)
    pages.errors.clear()
    response = await shop.goto("/admin")
    assert response is not None and response.status == 403
    await expect(shop.get_by_role("heading", name="Admins only")).to_be_visible()
    pages.errors[:] = [e for e in pages.errors if "403" not in e]  # the page's own status


# --- without a browser: the session cookie, CSRF, and the feeds -------------------------------


async def test_the_session_cookie_needs_the_csrf_token_for_changes(site: Site) -> None:
    email, _ = await site.customer()
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as browser_like:
        r = await browser_like.post("/auth/session", data={"username": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"]
        assert f"{SESSION_COOKIE}=" in cookie and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie and "Secure" not in cookie  # plain http here
        csrf = r.json()["csrf_token"]
        assert "access_token" not in r.text

        me = await browser_like.get("/users/me")  # reads need no CSRF token
        assert me.status_code == 200 and me.json()["email"] == email
        page = await browser_like.get("/shop/orders")
        assert page.status_code == 200 and f'content="{csrf}"' in page.text

        missing = await browser_like.post("/orders/no-such-order/cancel", json={})
        assert missing.status_code == 403 and missing.json()["error"]["code"] == "CSRF_FAILED"
        forged = await browser_like.post(
            "/orders/no-such-order/cancel", json={}, headers={CSRF_HEADER: "0" * 64}
        )
        assert forged.status_code == 403
        ok = await browser_like.post(
            "/orders/no-such-order/cancel", json={}, headers={CSRF_HEADER: csrf}
        )
        assert ok.status_code == 404, ok.text  # past the check: the order does not exist
        # A bearer caller never needs one, cookie or not.
        token = bearer(site.customers[email])
        r = await browser_like.post("/orders/no-such-order/cancel", json={}, headers=token)
        assert r.status_code == 404

        # The login page sends back only to a path of this site.
        # Browsers drop tabs and newlines from a URL: "/<TAB>/host" would be "//host".
        elsewhere_all = (
            "//evil.example/",
            "/\\evil.example/",
            "https://evil.example/",
            "/\t/evil.example/",
            "/\n/evil.example/",
            "\t//evil.example/",
            "/ /evil.example/",
            "/shop\\..\\/evil.example/",
        )
        for elsewhere in elsewhere_all:
            login = await browser_like.get("/shop/login", params={"next": elsewhere})
            assert 'data-next="/"' in login.text, elsewhere
        login = await browser_like.get("/shop/login", params={"next": "/shop/cart"})
        assert 'data-next="/shop/cart"' in login.text

        out = await browser_like.delete("/auth/session")
        assert out.status_code == 204
        assert (await browser_like.get("/users/me")).status_code == 401


async def test_no_other_site_can_log_a_browser_in(site: Site) -> None:
    """Login CSRF: a form on another site's page posting to /auth/session is refused (the
    browser says so in Sec-Fetch-Site, an older one in Origin); the shop's own page and
    clients that are not browsers log in."""
    email, _ = await site.customer()
    form = {"username": email, "password": PASSWORD}
    host = httpx.URL(site.url).netloc.decode()
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as http:
        for headers in (
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},  # another port or subdomain: not this origin
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
        ):
            r = await http.post("/auth/session", data=form, headers=headers)
            assert r.status_code == 403, (headers, r.text)
            assert r.json()["error"]["code"] == "CSRF_FAILED" and "set-cookie" not in r.headers
        for headers in (
            {"Sec-Fetch-Site": "same-origin", "Origin": f"http://{host}"},
            {"Origin": f"http://{host}"},
            {},
        ):
            http.cookies.clear()  # logged out: a change with the cookie needs its CSRF token
            r = await http.post("/auth/session", data=form, headers=headers)
            assert r.status_code == 200, (headers, r.text)


async def test_pages_forbid_framing_and_caching_and_private_answers_are_not_stored(
    site: Site,
) -> None:
    """The pages carry their CSP (this site only, no framing) and are never stored; any
    answer to a caller with credentials is not stored either; a public one may be."""
    email, _ = await site.customer()
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as http:
        for path in ("/", "/shop/login", "/shop/cart"):
            page = await http.get(path)
            csp = page.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
            assert "object-src 'none'" in csp and "base-uri 'none'" in csp, path
            assert page.headers["x-frame-options"] == "DENY", path
            assert page.headers["cache-control"] == "no-store", path
            assert page.headers["x-content-type-options"] == "nosniff", path
        public = await http.get("/products")
        assert public.headers["x-content-type-options"] == "nosniff"
        assert public.headers["referrer-policy"] == "same-origin"
        assert "cache-control" not in public.headers  # the catalogue may be cached
        assert "content-security-policy" not in public.headers  # JSON: no page policy
        static = await http.get("/static/common.js")
        assert static.status_code == 200 and "no-store" not in static.headers.get(
            "cache-control", ""
        )
        r = await http.post("/auth/session", data={"username": email, "password": PASSWORD})
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        me = await http.get("/users/me")  # with the session cookie
        assert me.status_code == 200 and me.headers["cache-control"] == "no-store"
        cookie_static = await http.get("/static/common.js")
        assert "no-store" not in cookie_static.headers.get("cache-control", "")
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as client:
        token = await log_in(client, email, PASSWORD)
        me = await client.get("/users/me", headers=bearer(token))
        assert me.status_code == 200 and me.headers["cache-control"] == "no-store"


async def test_the_feeds_stream_to_whom_they_may(site: Site) -> None:
    email, _ = await site.customer()
    callers: dict[str, dict[str, str]] = {
        "owner": bearer(site.customers[email]),
        "other": bearer(site.customers[(await site.customer())[0]]),
        "admin": {},
    }
    for path, cell in FEEDS.items():
        for caller, headers in callers.items():
            if cell[caller] != 200:
                continue
            async with site.http.stream("GET", path, headers=headers) as r:
                assert r.status_code == 200, (path, caller)
                assert r.headers["content-type"].startswith("text/event-stream")

    # The caller's notifications arrive on their stream as they are sent.
    product_id = await site.product(f"Cup {uuid.uuid4().hex[:6]}", "cups")
    async with site.http.stream(
        "GET", "/notifications/events", headers=callers["owner"], timeout=60
    ) as stream:
        order_id = await site.place(email, product_id, 1, card=DECLINED_CARD)
        event: dict[str, Any] = {}
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                event = json.loads(line.removeprefix("data:"))
                break
    assert event["kind"] == "ORDER_FAILED" and event["order_id"] == order_id
    figures = (await site.http.get("/admin/figures")).json()
    assert figures["failed_by_reason"].get("PAYMENT_DECLINED", 0) >= 1
    assert figures["orders"] >= figures["paid"] + 1


def test_the_banner_shows_where_the_pages_are(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_port=8123)
    text = banner(settings, SeedResult(product_ids=["prod-espresso"]), dev_server=True)
    assert "Storefront      http://localhost:8123/\n" in text
    assert "Back office     http://localhost:8123/admin " in text


async def test_streams_end_when_the_token_that_opened_them_expires(site: Site) -> None:
    """A stream is authorized when it opens: it ends when that token expires (the browser
    then reconnects and is checked again), however quiet it is, not hours later."""
    _, user_id = await site.customer()
    secret = resolved_jwt_secret(site.stack.settings)
    product_id = await site.product(f"Mug {uuid.uuid4().hex[:6]}", "cups")
    admin_id = "admin-stream-test"

    def short(sub: str, role: str) -> dict[str, str]:
        return bearer(issue_access_token(secret, sub, role, timedelta(seconds=2)))

    streams = {
        "/notifications/events": (user_id, CUSTOMER_ROLE),
        "/admin/feeds/orders": (admin_id, ADMIN_ROLE),
        "/admin/feeds/low-stock": (admin_id, ADMIN_ROLE),
    }
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as http:
        for path, (sub, role) in streams.items():
            headers = short(sub, role)
            async with http.stream("GET", path, headers=headers) as r:
                assert r.status_code == 200, (path, r.status_code)
                # Ends by itself (a guard, not a timing: without the bound it never ends).
                await asyncio.wait_for(_drain(r), 20)
            assert (await http.get(path, headers=headers)).status_code == 401, path
        # An order's own stream too, while its order waits (PAID, not final) to ship.
        email, _ = await site.customer()
        order_id = await site.place(email, product_id, 1)
        owner = await log_in(http, email, PASSWORD)
        owner_id = (await http.get("/users/me", headers=bearer(owner))).json()["id"]
        headers = short(owner_id, CUSTOMER_ROLE)
        async with http.stream("GET", f"/orders/{order_id}/events", headers=headers) as r:
            assert r.status_code == 200
            await asyncio.wait_for(_drain(r), 20)


async def _drain(response: httpx.Response) -> None:
    async for _ in response.aiter_lines():
        pass
