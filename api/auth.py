"""Who the caller is, from the bearer token alone (core.tokens), and what they may reach.

Every route that is not public takes `CallerDep` or `AdminDep`. A customer reaches only what
is theirs; what belongs to another answers 404 exactly as a missing id, so ids cannot be
probed.
"""

from __future__ import annotations

from typing import Annotated

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


def _claims(request: Request) -> AccessClaims | None:
    """The claims of the request's valid bearer token; None without one or for an invalid
    one. Read once per request."""
    if not hasattr(request.state, "claims"):
        scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
        claims = None
        if scheme.lower() == "bearer" and token:
            try:
                claims = read_access_token(request.app.state.jwt_secret, token)
            except InvalidToken:
                claims = None
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
