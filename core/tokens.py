"""Access tokens: HS256 JWTs keyed by JWT_SECRET's UTF-8 bytes; claims sub, role, iat, exp."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

ALGORITHM = "HS256"
ADMIN_ROLE = "admin"
CUSTOMER_ROLE = "customer"
ROLES = (CUSTOMER_ROLE, ADMIN_ROLE)
_CLAIMS = ["sub", "role", "iat", "exp"]


class InvalidToken(Exception):
    """Malformed, forged, expired, or not an HS256 token with our claims."""


@dataclass(frozen=True)
class AccessClaims:
    sub: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN_ROLE


def issue_access_token(secret: str, user_id: str, role: str, lifetime: timedelta) -> str:
    """A signed token for `user_id` with `role`, valid for `lifetime` from now."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {"sub": user_id, "role": role, "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, secret.encode(), algorithm=ALGORITHM)


def read_access_token(secret: str, token: str) -> AccessClaims:
    """The claims of a valid token; `InvalidToken` otherwise (the reason in its message)."""
    try:
        # Only HS256: a token naming `none` or another algorithm is refused, never trusted.
        claims = jwt.decode(
            token, secret.encode(), algorithms=[ALGORITHM], options={"require": _CLAIMS}
        )
    except jwt.InvalidTokenError as err:
        raise InvalidToken(str(err)) from None
    if not isinstance(claims["sub"], str) or not isinstance(claims["role"], str):
        raise InvalidToken("claims `sub` and `role` must be strings")
    return AccessClaims(sub=claims["sub"], role=claims["role"])
