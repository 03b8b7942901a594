"""api.auth.until_expiry: a stream ends with its token, and a reader that goes away closes it.

sse-starlette reads a stream in an anyio task group and cancels it when the client
disconnects; anyio keeps cancelling a task for as long as it stays inside the cancelled
scope. The stream's own generator (an order's, holding the watch's subscription) must then
be closed, not left running in a task of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable

import anyio
import httpx
import pytest
from starlette.types import Message

from api import streams as streams_module
from api.auth import until_expiry
from api.routes.orders import _first_of
from api.streams import OpenStreams
from core.tokens import CUSTOMER_ROLE, AccessClaims
from tests.api_fixtures import Stack
from tests.net import served


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


# --- the bounds every stream of the API shares (api/streams.py) -----------------------------


async def _until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(10):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within 10 s: {what}") from None


async def test_a_caller_holds_at_most_so_many_streams_at_once(stack: Stack) -> None:
    """One stream more than STREAMS_PER_CALLER answers 429 TOO_MANY_STREAMS, whichever
    route it is (an order's, the notifications); another caller is not affected; a stream
    closed gives its place back."""
    streams: OpenStreams = stack.app.state.streams
    saved = streams.per_caller
    streams.per_caller = 2
    user, other = await stack.create_user(), await stack.create_user()
    p = await stack.create_product(stock=1)
    order_id = await stack.place(user["id"], [(p["id"], 1)])
    await stack.wait_for(order_id, "PAID")  # open until shipped: its stream stays open
    claims = AccessClaims(sub=user["id"], role=CUSTOMER_ROLE)
    mine = stack.as_user(user["id"])
    try:
        async with (
            served(stack.app, lifespan="off") as url,
            httpx.AsyncClient(base_url=url, timeout=10) as http,
        ):
            async with (
                http.stream("GET", f"/orders/{order_id}/events", headers=mine) as first,
                http.stream("GET", "/notifications/events", headers=mine) as second,
            ):
                assert first.status_code == second.status_code == 200
                await _until(lambda: streams.count(claims) == 2, "both streams counted")
                for path in (f"/orders/{order_id}/events", "/notifications/events"):
                    r = await http.get(path, headers=mine)
                    assert r.status_code == 429, r.text
                    assert r.json()["error"]["code"] == "TOO_MANY_STREAMS"
                theirs = stack.as_user(other["id"])
                async with http.stream("GET", "/notifications/events", headers=theirs) as r:
                    assert r.status_code == 200
            # Both closed by their client: their places are free again.
            await _until(lambda: streams.count(claims) == 0, "the closed streams given back")
            async with http.stream("GET", "/notifications/events", headers=mine) as again:
                assert again.status_code == 200
            await _until(lambda: streams.count(claims) == 0, "that one given back too")
            # Opened all at once: the bound holds as they arrive, not as they start.
            release = asyncio.Event()

            async def open_one() -> int:
                async with http.stream("GET", "/notifications/events", headers=mine) as r:
                    if r.status_code == 200:
                        await release.wait()  # held open until the others are answered
                    return r.status_code

            opening = [asyncio.create_task(open_one()) for _ in range(8)]
            await _until(lambda: sum(t.done() for t in opening) == 6, "six refused")
            release.set()
            codes = sorted(await asyncio.gather(*opening))
            assert codes == [200, 200] + [429] * 6, codes
            await _until(lambda: streams.count(claims) == 0, "all given back")
    finally:
        streams.per_caller = saved


async def test_a_reader_that_stops_taking_events_ends_its_stream(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A client whose socket no longer takes what is sent (its send never completes) is cut
    off after SEND_TIMEOUT: the stream's generator is closed, and the server sees no error."""
    monkeypatch.setattr(streams_module, "SEND_TIMEOUT", 0.2)
    events = Events(first=100)
    streams = OpenStreams(per_caller=1)
    caller = claims(3600)
    closed: list[str] = []
    with streams.admit(caller) as place:
        response = streams_module.event_stream(
            events.stream(), place, on_close=lambda: closed.append("call")
        )
    assert streams.count(caller) == 1
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and len(sent) >= 3:
            await asyncio.Event().wait()  # the client stopped reading

    async def receive() -> Message:
        await asyncio.Event().wait()  # it never disconnects either
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "GET", "path": "/notifications/events", "headers": []}
    with caplog.at_level(logging.INFO, logger="api"):
        await asyncio.wait_for(response(scope, receive, send), 10)
    assert events.closed
    assert "took over" in caplog.text
    assert streams.count(caller) == 0 and closed == ["call"]


async def test_a_stream_whose_events_never_start_gives_its_place_back() -> None:
    """A response that ends without starting its events (here a HEAD, which sse-starlette
    answers with the headers alone; a client gone before the first event likewise) gives
    the caller's place back and closes what the route opened for it (a gRPC call); and a
    route that fails after admitting a stream (a 404, say) holds no place."""
    streams = OpenStreams(per_caller=1)
    caller = claims(3600)
    closed: list[str] = []
    events = Events(first=1)
    with streams.admit(caller) as place:
        response = streams_module.event_stream(
            events.stream(), place, on_close=lambda: closed.append("call")
        )
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "HEAD", "path": "/notifications/events", "headers": []}
    await asyncio.wait_for(response(scope, receive, send), 10)
    assert sent[0]["status"] == 200 and streams.count(caller) == 0 and closed == ["call"]
    with pytest.raises(LookupError), streams.admit(caller):
        raise LookupError("no such order")
    assert streams.count(caller) == 0
