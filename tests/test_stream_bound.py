"""api.auth.until_expiry: a stream ends with its token, and a reader that goes away closes it.

sse-starlette reads a stream in an anyio task group and cancels it when the client
disconnects; anyio keeps cancelling a task for as long as it stays inside the cancelled
scope. The stream's own generator (an order's, holding the watch's subscription) must then
be closed, not left running in a task of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import anyio

from api.auth import until_expiry
from api.routes.orders import _first_of
from core.tokens import AccessClaims


def claims(expires_in: float) -> AccessClaims:
    return AccessClaims(sub="u-1", role="customer", expires_at=time.time() + expires_in)


class Events:
    """An event stream that yields `first` events at once, then waits for news for ever."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.closed = False

    async def stream(self) -> AsyncGenerator[int, None]:
        try:
            for i in range(self.first):
                yield i
            # No news ever: the stream waits as an order's does (api.routes.orders).
            await _first_of(asyncio.Event(), anyio.Event(), timeout=3600)
            yield -1
        finally:
            self.closed = True


async def test_a_stream_ends_when_its_token_expires() -> None:
    events = Events(first=2)
    got = [e async for e in until_expiry(claims(0.3), events.stream())]
    assert got == [0, 1]
    assert events.closed


async def test_a_stream_that_ends_on_its_own_ends() -> None:
    async def two() -> AsyncGenerator[int, None]:
        yield 1
        yield 2

    assert [e async for e in until_expiry(claims(3600), two())] == [1, 2]


async def test_a_reader_cancelled_as_sse_starlette_cancels_it_closes_the_stream() -> None:
    """The client went away while the stream waited for news: what the stream held is let
    go (its `finally` ran), and no error comes out of the closing."""
    for _ in range(20):  # the cancel has to land at various points of the wait
        events = Events(first=1)
        got: list[int] = []
        stream = until_expiry(claims(3600), events.stream())
        with anyio.move_on_after(0.01):
            async for e in stream:
                got.append(e)
        await stream.aclose()
        assert got == [0]
        assert events.closed
