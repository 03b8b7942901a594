"""/auth/session: log in and out for the pages, with an HttpOnly cookie instead of a token the
page's script could read (see docs/pages.md, "Tokens").

`POST /auth/session` checks the login exactly as `POST /auth/token` does (same form, same
answers, same rate limit), then sets the access token as the `session` cookie (HttpOnly,
SameSite=Strict, Secure over https) and answers the session's CSRF token, which the pages
send back in `X-CSRF-Token` on every request that changes state (api/auth.py checks it).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field

from api.auth import SESSION_COOKIE, csrf_token_for
from api.deps import SettingsDep, StubsDep
from api.errors import ApiError
from api.models import error_responses
from api.rate_limits import RateLimited, RateLimitsDep
from api.routes.auth import Email, Password, authenticate
from core.tokens import read_access_token

router = APIRouter(prefix="/auth", tags=["auth"])


class SessionPublic(BaseModel):
    """A browser session: the cookie holds the token; this is what the page may know."""

    user_id: str
    role: str
    csrf_token: str = Field(description="send it back in `X-CSRF-Token` on changes")
    expires_in: int = Field(description="seconds")


def set_session_cookie(request: Request, response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
    )


@router.post(
    "/session",
    response_model=SessionPublic,
    responses=error_responses(401, 403, 422, 429, 502, 503),
    dependencies=[RateLimited],
)
async def open_session(
    username: Email,
    password: Password,
    request: Request,
    response: Response,
    stubs: StubsDep,
    settings: SettingsDep,
    limits: RateLimitsDep,
) -> SessionPublic:
    """Logs in as `POST /auth/token` does (form `username` = email, `password`), and keeps
    the token in an HttpOnly cookie. Refused (403) from another site's page."""
    _refuse_cross_site(request)
    token = await authenticate(username, password, request, stubs, settings, limits)
    secret: str = request.app.state.jwt_secret
    claims = read_access_token(secret, token.access_token)
    set_session_cookie(request, response, token.access_token, token.expires_in)
    return SessionPublic(
        user_id=claims.sub,
        role=claims.role,
        csrf_token=csrf_token_for(secret, token.access_token),
        expires_in=token.expires_in,
    )


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
async def close_session(request: Request) -> Response:
    """Logs out: the browser forgets the cookie (the token itself expires on its own)."""
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
    )
    return response


def _refuse_cross_site(request: Request) -> None:
    """Login CSRF: another site's page must not log this browser in (as the attacker, whose
    order history would then collect the victim's addresses). Browsers say where a request
    comes from in `Sec-Fetch-Site`, older ones in `Origin`; clients that are not browsers
    send neither and are not concerned."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is not None:
        allowed = site in ("same-origin", "none")
    else:
        allowed = origin is None or urlsplit(origin).netloc == request.headers.get("host")
    if not allowed:
        raise ApiError(403, "CSRF_FAILED", "a login from another site's page is refused")
