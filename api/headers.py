"""Security headers: what every answer carries, and what the pages add.

Every answer: `X-Content-Type-Options: nosniff` and `Referrer-Policy: same-origin`; an
answer to a request with credentials (a bearer token or the session cookie), other than a
static file, or one that sets a cookie, is `Cache-Control: no-store` unless its route said
otherwise: it may hold an order's shipping address or a user's email, which no browser or
proxy cache should keep after the session ends.

The pages (api/routes/pages.py) add their Content-Security-Policy: scripts, styles,
connections and forms of this site only, no plugin, no `<base>`, and no framing
(`frame-ancestors 'none'`, and `X-Frame-Options: DENY` for older browsers): another page,
even of the same site, cannot frame the back office's one-click ship and cancel. `/docs`
loads Swagger UI from a CDN and so carries no such policy.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import SESSION_COOKIE

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_SESSION = SESSION_COOKIE.encode() + b"="


class SecurityHeaders:
    """The headers of every answer (pure ASGI: event streams pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = not scope["path"].startswith("/static/") and any(
            name == b"authorization" or (name == b"cookie" and _SESSION in value)
            for name, value in scope["headers"]
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                if private or "set-cookie" in headers:  # a login's answer too
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)
