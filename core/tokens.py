"""Access tokens: HS256 JWTs keyed by JWT_SECRET's UTF-8 bytes; claims sub, role, iat, exp."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
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
    # When the token stops being valid (seconds since the epoch): a stream authorized at its
    # start ends then (api/auth.py, until_expiry).
    expires_at: float = math.inf

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN_ROLE


def issue_access_token(secret: str, user_id: str, role: str, lifetime: timedelta) -> str:
    """A signed token for `user_id` with `role`, valid for `lifetime` from now."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {"sub": user_id, "role": role, "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, secret.encode(), algorithm=ALGORITHM)


# Tokens already verified, by (secret, token): a client polling an order sends the same token
# every time, and checking its HS256 signature and claims again took a fifth of the API's
# event loop time on a `GET /orders/{id}` (docs/benchmarks.md). Keyed by the exact token,
# signature included, so a forged or altered token is never a hit; the expiry is checked
# again on every hit; only valid tokens enter; least recently used out first.
_VERIFIED_MAX = 10_000
_verified: OrderedDict[tuple[str, str], AccessClaims] = OrderedDict()
_verified_lock = threading.Lock()
_clock = time.time


def read_access_token(secret: str, token: str) -> AccessClaims:
    """The claims of a valid token; `InvalidToken` otherwise (the reason in its message)."""
    key = (secret, token)
    with _verified_lock:
        hit = _verified.get(key)
        if hit is not None:
            _verified.move_to_end(key)
    if hit is not None:
        if _clock() < hit.expires_at:
            return hit
        with _verified_lock:
            _verified.pop(key, None)
        raise InvalidToken("Signature has expired")
    try:
        # Only HS256: a token naming `none` or another algorithm is refused, never trusted.
        claims = jwt.decode(
            token, secret.encode(), algorithms=[ALGORITHM], options={"require": _CLAIMS}
        )
    except jwt.InvalidTokenError as err:
        raise InvalidToken(str(err)) from None
    if not isinstance(claims["sub"], str) or not isinstance(claims["role"], str):
        raise InvalidToken("claims `sub` and `role` must be strings")
    found = AccessClaims(sub=claims["sub"], role=claims["role"], expires_at=float(claims["exp"]))
    with _verified_lock:
        _verified[key] = found
        while len(_verified) > _VERIFIED_MAX:
            _verified.popitem(last=False)
    return found
