"""What every event stream of the API shares (an order's, the notifications, the board's):

- it ends when the token that opened it expires (api.auth.until_expiry);
- a caller has at most STREAMS_PER_CALLER of them open at once in this API process: one
  more answers 429 TOO_MANY_STREAMS before it starts, so a script cannot hold the process's
  memory, its watch and the services' stream slots with thousands of idle streams. The
  place is taken when the route admits the stream, before anything it awaits, so streams
  opened all at once count as they arrive, and given back when the response ends (or when
  the route fails before answering);
- a send that the client does not take within SEND_TIMEOUT (a reader that stopped reading
  while its socket buffer is full) ends the stream, rather than holding it open for ever.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from api.errors import ApiError
from core.tokens import AccessClaims

log = logging.getLogger("api")
PING = 15  # seconds between two keep-alive comments
SEND_TIMEOUT = 30.0  # seconds a client may take to accept one event


class StreamPlace:
    """One admitted stream's place in its caller's count, given back once."""

    def __init__(self, streams: OpenStreams, sub: str) -> None:
        self._streams = streams
        self._sub: str | None = sub

    def give_back(self) -> None:
        if self._sub is not None:
            self._streams._leave(self._sub)
            self._sub = None


class OpenStreams:
    """The event streams open in this process, by caller."""

    def __init__(self, per_caller: int) -> None:
        self.per_caller = per_caller  # 0: no bound
        self._open: Counter[str] = Counter()

    def count(self, caller: AccessClaims) -> int:
        return self._open[caller.sub]

    @contextmanager
    def admit(self, caller: AccessClaims) -> Iterator[StreamPlace]:
        """Takes a place for one more stream of the caller's, or answers 429. The place
        goes with the response (event_stream), which gives it back when it ends; if the
        block raises, it is given back at once."""
        if self.per_caller and self._open[caller.sub] >= self.per_caller:
            raise ApiError(
                429,
                "TOO_MANY_STREAMS",
                f"at most {self.per_caller} event streams may be open at once; close one first",
            )
        self._open[caller.sub] += 1
        place = StreamPlace(self, caller.sub)
        try:
            yield place
        except BaseException:
            place.give_back()
            raise

    def _leave(self, sub: str) -> None:
        self._open[sub] -= 1
        if self._open[sub] <= 0:
            del self._open[sub]


async def get_streams(request: Request) -> OpenStreams:
    streams: OpenStreams = request.app.state.streams
    return streams


StreamsDep = Annotated[OpenStreams, Depends(get_streams)]


class EventStream(EventSourceResponse):
    """An event stream that gives its caller's place back when it ends, runs `on_close`
    (a gRPC call to cancel, say) even if its events never started (a client gone before
    the first), and that a reader too slow to take an event within SEND_TIMEOUT
    ends (logged here; uvicorn notes the unfinished response)."""

    def __init__(
        self,
        events: AsyncIterator[Any],
        place: StreamPlace,
        on_close: Callable[[], object] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(events, **options)
        self._place = place
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            log.info(
                "event stream %s ended: its client took over %.0f s to take an event",
                scope.get("path", "?"),
                self.send_timeout or 0,
            )
        finally:
            self._place.give_back()
            if self._on_close is not None:
                self._on_close()


def event_stream(
    events: AsyncIterator[Any],
    place: StreamPlace,
    on_close: Callable[[], object] | None = None,
    **options: Any,
) -> EventStream:
    """The response of an event stream, with the API's keep-alive and send timeout."""
    return EventStream(events, place, on_close, ping=PING, send_timeout=SEND_TIMEOUT, **options)
