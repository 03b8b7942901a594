"""What every event stream of the API shares (an order's, the notifications, the board's):

- it ends when the token that opened it expires (api.auth.until_expiry);
- a caller has at most STREAMS_PER_CALLER of them open at once in this API process: one
  more answers 429 TOO_MANY_STREAMS before it starts, so a script cannot hold the process's
  memory, its watch and the services' stream slots with thousands of idle streams;
- a send that the client does not take within SEND_TIMEOUT (a reader that stopped reading
  while its socket buffer is full) ends the stream, rather than holding it open for ever.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from api.auth import until_expiry
from api.errors import ApiError
from core.tokens import AccessClaims

log = logging.getLogger("api")
PING = 15  # seconds between two keep-alive comments
SEND_TIMEOUT = 30.0  # seconds a client may take to accept one event

T = TypeVar("T")


class OpenStreams:
    """The event streams open in this process, by caller."""

    def __init__(self, per_caller: int) -> None:
        self.per_caller = per_caller  # 0: no bound
        self._open: Counter[str] = Counter()

    def count(self, caller: AccessClaims) -> int:
        return self._open[caller.sub]

    def admit(self, caller: AccessClaims) -> None:
        """429 when the caller already has their share of streams open here."""
        if self.per_caller and self._open[caller.sub] >= self.per_caller:
            raise ApiError(
                429,
                "TOO_MANY_STREAMS",
                f"at most {self.per_caller} event streams may be open at once; close one first",
            )

    async def follow(
        self, caller: AccessClaims, events: AsyncGenerator[T, None]
    ) -> AsyncGenerator[T, None]:
        """`events` until the caller's token expires, counted as one of the caller's open
        streams while it runs. The count is taken when the stream starts and given back
        when it ends, in the stream itself: a response that never starts holds nothing."""
        self._open[caller.sub] += 1
        try:
            async with aclosing(until_expiry(caller, events)) as bounded:
                async for event in bounded:
                    yield event
        finally:
            self._open[caller.sub] -= 1
            if self._open[caller.sub] <= 0:
                del self._open[caller.sub]


async def get_streams(request: Request) -> OpenStreams:
    streams: OpenStreams = request.app.state.streams
    return streams


StreamsDep = Annotated[OpenStreams, Depends(get_streams)]


class EventStream(EventSourceResponse):
    """An event stream that a reader too slow to take an event within SEND_TIMEOUT ends
    quietly (logged, not raised to the server as an application error)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            log.info(
                "event stream %s ended: its client took over %.0f s to take an event",
                scope.get("path", "?"),
                self.send_timeout or 0,
            )


def event_stream(events: AsyncIterator[Any], **options: Any) -> EventStream:
    """The response of an event stream, with the API's keep-alive and send timeout."""
    return EventStream(events, ping=PING, send_timeout=SEND_TIMEOUT, **options)
