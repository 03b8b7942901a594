"""An in-process fan-out of events to the subscribers of a streaming RPC.

Servicers publish after their transaction committed, from the event loop; every
subscriber has its own queue, so one slow reader never holds back a writer or another
reader. A reader that falls `limit` events behind is cut off (its next read raises
Unavailable, reason WATCHER_TOO_SLOW) rather than silently missing events: it can
subscribe again and start from a fresh snapshot.

Only this process's changes are seen. Several replicas on one database would need a
cross-process channel instead (PostgreSQL LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from core.errors import Reason, Unavailable

T = TypeVar("T")

SUBSCRIBER_LIMIT = 10_000


class _Overflow:
    """Marks a subscription whose reader fell too far behind."""


_OVERFLOW = _Overflow()


class Subscription(Generic[T]):
    """One reader's queue of the events its `accept` predicate chose."""

    def __init__(self, accept: Callable[[T], bool], limit: int) -> None:
        self._accept = accept
        self._limit = limit
        self._queue: asyncio.Queue[T | _Overflow] = asyncio.Queue()
        self.overflowed = False

    def _offer(self, item: T) -> None:
        if self.overflowed or not self._accept(item):
            return
        if self._queue.qsize() >= self._limit:
            self.overflowed = True
            while not self._queue.empty():  # free the memory; the reader starts over
                self._queue.get_nowait()
            self._queue.put_nowait(_OVERFLOW)
            return
        self._queue.put_nowait(item)

    async def get(self) -> T:
        """The next event; Unavailable (WATCHER_TOO_SLOW) once the reader fell behind."""
        item = await self._queue.get()
        if isinstance(item, _Overflow):
            raise Unavailable(
                "the stream fell too far behind its events; subscribe again",
                reason=Reason.WATCHER_TOO_SLOW,
            )
        return item


class Broadcaster(Generic[T]):
    """Delivers each published event to every current subscriber that accepts it."""

    def __init__(self, limit: int = SUBSCRIBER_LIMIT) -> None:
        self._limit = limit
        self._subscribers: set[Subscription[T]] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @contextmanager
    def subscribe(self, accept: Callable[[T], bool] = lambda _: True) -> Iterator[Subscription[T]]:
        """A subscription for the duration of the `with` block (an RPC's lifetime)."""
        sub: Subscription[T] = Subscription(accept, self._limit)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    def publish(self, item: T) -> None:
        """Queues `item` for the subscribers; never blocks. Call it from the event loop."""
        for sub in list(self._subscribers):
            sub._offer(item)


__all__ = ["SUBSCRIBER_LIMIT", "Broadcaster", "Subscription"]
