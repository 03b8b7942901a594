"""/auth/token: the OAuth2 password flow (so /docs' "Authorize" works) for an access token."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import grpc
from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from api.auth import unauthorized
from api.deps import GRPC_TIMEOUT, SettingsDep, StubsDep
from api.models import TokenPublic, error_responses
from api.rate_limits import RateLimitsDep, client_address
from core.tokens import issue_access_token
from proto.shop.v1 import user_pb2

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/token", response_model=TokenPublic, responses=error_responses(401, 422, 429, 502, 503)
)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    stubs: StubsDep,
    settings: SettingsDep,
    limits: RateLimitsDep,
) -> TokenPublic:
    """A bearer token for the user with this email (`username`) and password; 401 for an
    unknown email or a wrong password alike, 429 after LOGIN_RATE_LIMIT attempts."""
    email = form.username.strip().lower()
    await limits.hit(limits.login, "login", email, client_address(request))
    try:
        user = await stubs.user.Authenticate(
            user_pb2.AuthenticateRequest(email=email, password=form.password),
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
