"""/auth/token: the OAuth2 password flow (so /docs' "Authorize" works) for an access token."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import grpc
from fastapi import APIRouter, Form, Request

from api.auth import unauthorized
from api.deps import GRPC_TIMEOUT, SettingsDep, StubsDep
from api.models import TokenPublic, error_responses
from api.rate_limits import RateLimited, RateLimitsDep, client_address
from core.tokens import issue_access_token
from proto.shop.v1 import user_pb2

router = APIRouter(prefix="/auth", tags=["auth"])


# The OAuth2 password flow's form (so /docs' "Authorize" works), bounded: every email tried
# is a key of the login limit until its window ends.
Email = Annotated[str, Form(min_length=1, max_length=320, description="the user's email")]
Password = Annotated[str, Form(min_length=1, max_length=1024)]
# Optional, as in FastAPI's OAuth2PasswordRequestForm; when sent, only this flow's.
GrantType = Annotated[str | None, Form(pattern="^password$")]


@router.post(
    "/token",
    response_model=TokenPublic,
    responses=error_responses(401, 422, 429, 502, 503),
    # Also per client address (RATE_LIMIT): LOGIN_RATE_LIMIT counts each email apart, and
    # trying one password on many emails must not be free either.
    dependencies=[RateLimited],
)
async def login(
    username: Email,
    password: Password,
    request: Request,
    stubs: StubsDep,
    settings: SettingsDep,
    limits: RateLimitsDep,
    grant_type: GrantType = None,
) -> TokenPublic:
    """A bearer token for the user with this email (`username`) and password; 401 for an
    unknown email or a wrong password alike, 429 after LOGIN_RATE_LIMIT attempts."""
    return await authenticate(username, password, request, stubs, settings, limits)


async def authenticate(
    username: str,
    password: str,
    request: Request,
    stubs: StubsDep,
    settings: SettingsDep,
    limits: RateLimitsDep,
) -> TokenPublic:
    """Checks the email and password (LOGIN_RATE_LIMIT first) and issues an access token."""
    email = username.strip().lower()
    await limits.hit(limits.login, "login", email, client_address(request))
    try:
        user = await stubs.user.Authenticate(
            user_pb2.AuthenticateRequest(email=email, password=password),
            timeout=GRPC_TIMEOUT,
        )
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise unauthorized("wrong email or password") from None
        raise
    lifetime = timedelta(minutes=settings.access_token_minutes)
    token = issue_access_token(request.app.state.jwt_secret, user.id, user.role, lifetime)
    return TokenPublic(
        access_token=token, token_type="bearer", expires_in=int(lifetime.total_seconds())
    )
