"""Who the caller is, from the access token (core.tokens), and what they may reach.

The token comes in the `Authorization: Bearer` header (scripts, /docs) or, for the pages, in
the HttpOnly `session` cookie that `POST /auth/session` sets. A request with the cookie that
changes state (any method but GET, HEAD, OPTIONS) must also carry the session's CSRF token in
the `X-CSRF-Token` header, or it gets 403: another site can make the browser send the cookie
(SameSite=Strict aside), never read the token. A bearer header wins over the cookie.

Every route that is not public takes `CallerDep` or `AdminDep`. A customer reaches only what
is theirs; what belongs to another answers 404 exactly as a missing id, so ids cannot be
probed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncGenerator
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from fastapi.security.utils import get_authorization_scheme_param

from api.errors import ApiError, not_found
from core.tokens import AccessClaims, InvalidToken, read_access_token

TOKEN_URL = "/auth/token"
# Only for the OpenAPI security scheme (and /docs' "Authorize" button): `_claims` reads
# the header itself, so that public routes can tell callers apart without declaring it.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


def unauthorized(message: str = "a valid bearer token is required") -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message, headers={"WWW-Authenticate": "Bearer"})


SESSION_COOKIE = "session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token_for(secret: str, session: str) -> str:
    """The CSRF token of a session cookie: derived from it, so nothing is stored and it
    changes with each login."""
    return hmac.new(secret.encode(), b"csrf:" + session.encode(), hashlib.sha256).hexdigest()


def _read(request: Request, token: str) -> AccessClaims | None:
    try:
        return read_access_token(request.app.state.jwt_secret, token)
    except InvalidToken:
        return None


def _claims(request: Request) -> AccessClaims | None:
    """The claims of the request's valid bearer token, else of its session cookie; None
    without one or for an invalid one; 403 for a cookie-borne change without the CSRF
    token. Read once per request."""
    if not hasattr(request.state, "claims"):
        header = request.headers.get("Authorization")
        scheme, token = get_authorization_scheme_param(header)
        claims = None
        if scheme.lower() == "bearer" and token:
            claims = _read(request, token)
        elif not header and (cookie := request.cookies.get(SESSION_COOKIE)):
            claims = _read(request, cookie)
            if claims is not None and request.method not in SAFE_METHODS:
                expected = csrf_token_for(request.app.state.jwt_secret, cookie)
                if not hmac.compare_digest(request.headers.get(CSRF_HEADER, ""), expected):
                    raise ApiError(403, "CSRF_FAILED", f"a valid {CSRF_HEADER} header is required")
        request.state.claims = claims
    found: AccessClaims | None = request.state.claims
    return found


async def optional_caller(request: Request) -> AccessClaims | None:
    return _claims(request)


async def current_caller(
    request: Request, _token: Annotated[str | None, Depends(oauth2_scheme)]
) -> AccessClaims:
    """The caller; 401 for no token, or a malformed, forged or expired one."""
    claims = _claims(request)
    if claims is None:
        raise unauthorized()
    return claims


async def current_admin(caller: Annotated[AccessClaims, Depends(current_caller)]) -> AccessClaims:
    """The caller, who must be an admin: 403 for a customer."""
    if not caller.is_admin:
        raise ApiError(403, "FORBIDDEN", "only an admin may do this")
    return caller


OptionalCallerDep = Annotated[AccessClaims | None, Depends(optional_caller)]
CallerDep = Annotated[AccessClaims, Depends(current_caller)]
AdminDep = Annotated[AccessClaims, Depends(current_admin)]


def ensure_reaches(caller: AccessClaims, owner_id: str, what: str, ident: str) -> None:
    """404, as for a missing `what`, unless the caller owns it or is an admin."""
    if not caller.is_admin and caller.sub != owner_id:
        raise not_found(what, ident)


T = TypeVar("T")


async def until_expiry(
    caller: AccessClaims, events: AsyncGenerator[T, None]
) -> AsyncGenerator[T, None]:
    """`events` until the caller's token expires. A stream is authorized once, when it
    opens: it must not outlive the token (or a session logged out since). The browser's
    EventSource then reconnects, and is checked again (401 once the session is gone).

    `events` runs in the reader's own task, under a cancel scope, never in a task of its
    own (as `asyncio.wait_for` would run it): when sse-starlette cancels the reader (the
    client went away), anyio keeps cancelling it until it leaves the scope, and a
    `wait_for` then returned before its inner task had stopped, so closing `events` failed
    with "already running" and what it held (an order's watch subscription) was left to
    the garbage collector."""
    try:
        while (left := caller.expires_at - time.time()) > 0:
            with anyio.move_on_after(left) as expiry:
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    return
            if expiry.cancelled_caught:
                return
            yield event
    finally:
        await events.aclose()
