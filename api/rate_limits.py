"""Rate limits with `limits`: RATE_LIMIT per caller on mutating routes, LOGIN_RATE_LIMIT per
email and client address on login. Counters live in RATE_LIMIT_STORAGE_URL (memory, or
Redis so that every replica counts the same)."""

from __future__ import annotations

import logging
import math
import time
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from api.auth import OptionalCallerDep
from api.errors import ApiError
from core.config import Settings

log = logging.getLogger("api")


def _limit(value: str) -> RateLimitItem | None:
    return None if value.strip() == "0" else parse(value)


def _storage(url: str) -> Storage:
    # The asyncio storages of `limits` are named `async+...`; redis-py is already installed.
    options = {"implementation": "redispy"} if url.startswith(("redis", "rediss")) else {}
    storage = storage_from_string(f"async+{url}", wrap_exceptions=True, **options)
    assert isinstance(storage, Storage)
    return storage


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class RateLimits:
    """The process's limits and their counters."""

    def __init__(self, settings: Settings) -> None:
        self.per_caller = _limit(settings.rate_limit)
        self.login = _limit(settings.login_rate_limit)
        self._limiter = MovingWindowRateLimiter(_storage(settings.rate_limit_storage_url))

    async def hit(self, limit: RateLimitItem | None, *key: str) -> None:
        """Counts one request against `limit` for `key`: 429 with Retry-After beyond it."""
        if limit is None:
            return
        try:
            if await self._limiter.hit(limit, *key):
                return
            stats = await self._limiter.get_window_stats(limit, *key)
        except StorageError as err:
            log.warning("rate limit storage unavailable: %s", type(err.storage_error).__name__)
            raise ApiError(
                503, "RATE_LIMIT_UNAVAILABLE", "the rate limit storage is unavailable"
            ) from None
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise ApiError(
            429,
            "RATE_LIMITED",
            f"too many requests: at most {limit}; try again in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


async def get_rate_limits(request: Request) -> RateLimits:
    limits: RateLimits = request.app.state.rate_limits
    return limits


RateLimitsDep = Annotated[RateLimits, Depends(get_rate_limits)]


async def per_caller(request: Request, caller: OptionalCallerDep, limits: RateLimitsDep) -> None:
    """RATE_LIMIT for the token's user, else the client address; every answer counts."""
    who = f"user:{caller.sub}" if caller else f"address:{client_address(request)}"
    await limits.hit(limits.per_caller, "api", who)


# For the `dependencies=` of every mutating route: it runs before the route's own.
RateLimited = Depends(per_caller)
