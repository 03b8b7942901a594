"""The storefront (`/`, `/shop/...`) and the back office (`/admin`, `/admin/products`):
server-rendered Jinja2 templates (autoescaped) with small JavaScript modules that call the
REST API and its event streams. See docs/pages.md.

The pages know who is logged in from the `session` cookie (api/auth.py) and embed the
session's CSRF token; the data itself comes from the REST routes, so a page shows nothing
its viewer could not read with curl.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.auth import SESSION_COOKIE, OptionalCallerDep, csrf_token_for
from api.deps import PathId, SettingsDep
from api.headers import PAGE_HEADERS
from core.messages import OrderStatus
from core.tokens import AccessClaims

PAGES = Path(__file__).resolve().parent.parent / "pages"
# Where the login page may send the browser back to: a path of this site, never another
# site. A second slash or a backslash after the first slash would name a host (browsers read
# a backslash as a slash there); a space, a backslash or a control character anywhere is
# refused too, since browsers drop tabs and newlines from a URL before reading it (a slash,
# a tab and a slash is "//host").
_LOCAL_PATH = re.compile(r"/(?![/\\])[^\x00-\x20\x7f\\]*")
templates = Jinja2Templates(directory=PAGES / "templates")  # autoescapes .html
router = APIRouter(include_in_schema=False)

TEST_CARDS = [
    {"number": "4242424242424242", "what": "pays"},
    {"number": "4000000000000002", "what": "is declined"},
    {"number": "4000000000000119", "what": "fails twice with a processing error, then pays"},
]


def mount_static(app: FastAPI) -> None:
    """Serves api/pages/static at /static (the pages' CSS and JavaScript)."""
    app.mount("/static", StaticFiles(directory=PAGES / "static"), name="static")


def _has_route(request: Request, path: str) -> bool:
    return any(getattr(route, "path", None) == path for route in request.app.routes)


def _render(
    request: Request,
    caller: AccessClaims | None,
    template: str,
    script: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    session = request.cookies.get(SESSION_COOKIE)
    csrf = csrf_token_for(request.app.state.jwt_secret, session) if caller and session else ""
    features = {
        # The cart kept by the server (a Cart workflow) when the API has it; else the page
        # keeps it in the browser and checks out with POST /checkout.
        "cart": "server" if _has_route(request, "/cart") else "local",
        "categories": _has_route(request, "/categories"),
    }
    response = templates.TemplateResponse(
        request,
        template,
        {
            "user": caller,
            "csrf_token": csrf,
            "features": features,
            "script": script,
            "page": template.removesuffix(".html"),
            "area": "admin" if template.startswith("admin") else "shop",
            **context,
        },
        status_code=status_code,
    )
    response.headers.update(PAGE_HEADERS)
    return response


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/shop/login?next={quote(request.url.path)}", status_code=303)


@router.get("/", response_class=HTMLResponse)
async def catalogue(request: Request, caller: OptionalCallerDep) -> Response:
    return _render(request, caller, "catalogue.html", "store.js")


@router.get("/shop/products/{product_id}", response_class=HTMLResponse)
async def product(request: Request, caller: OptionalCallerDep, product_id: PathId) -> Response:
    return _render(request, caller, "product.html", "store.js", product_id=product_id)


@router.get("/shop/cart", response_class=HTMLResponse)
async def cart(request: Request, caller: OptionalCallerDep) -> Response:
    return _render(request, caller, "cart.html", "store.js", test_cards=TEST_CARDS)


@router.get("/shop/login", response_class=HTMLResponse)
async def login(request: Request, caller: OptionalCallerDep, next: str = "/") -> Response:
    safe_next = next if _LOCAL_PATH.fullmatch(next) else "/"
    return _render(request, caller, "login.html", "account.js", next=safe_next)


@router.get("/shop/register", response_class=HTMLResponse)
async def register(request: Request, caller: OptionalCallerDep) -> Response:
    return _render(request, caller, "register.html", "account.js")


@router.get("/shop/orders", response_class=HTMLResponse)
async def my_orders(request: Request, caller: OptionalCallerDep) -> Response:
    if caller is None:
        return _to_login(request)
    return _render(request, caller, "orders.html", "orders.js")


@router.get("/shop/orders/{order_id}", response_class=HTMLResponse)
async def order(request: Request, caller: OptionalCallerDep, order_id: PathId) -> Response:
    if caller is None:
        return _to_login(request)
    return _render(request, caller, "order.html", "orders.js", order_id=order_id)


@router.get("/shop/notifications", response_class=HTMLResponse)
async def notifications(request: Request, caller: OptionalCallerDep) -> Response:
    if caller is None:
        return _to_login(request)
    return _render(request, caller, "notifications.html", "orders.js")


def _admin_page(
    request: Request, caller: AccessClaims | None, template: str, **context: Any
) -> Response:
    if caller is None:
        return _to_login(request)
    if not caller.is_admin:
        return _render(request, caller, "forbidden.html", "account.js", status_code=403)
    return _render(request, caller, template, "admin.js", **context)


@router.get("/admin", response_class=HTMLResponse)
async def admin(request: Request, caller: OptionalCallerDep, settings: SettingsDep) -> Response:
    return _admin_page(
        request,
        caller,
        "admin.html",
        temporal_ui_url=settings.temporal_ui_url.rstrip("/"),
        namespace=settings.temporal_namespace,
        statuses=[s.value for s in OrderStatus],
    )


@router.get("/admin/products", response_class=HTMLResponse)
async def admin_products(request: Request, caller: OptionalCallerDep) -> Response:
    return _admin_page(request, caller, "admin_products.html")
