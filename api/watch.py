"""One poller of the read model for every open order stream (GET /orders/{id}/events).

Each tick reads the versions of all watched orders in one statement, then the rows of the
orders that changed in a second one, and hands each stream its order's new state. So the
database sees one small query per tick however many clients follow orders, plus one read
per tick with news.

It also remembers the orders this process has just started, as PENDING, until the
workflow's first save reaches the read model: a client that follows its order right after
POST /checkout then starts its stream without a round trip to Temporal.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from sqlalchemy import Connection, Engine

from core.db import run_sql
from core.messages import OrderSnapshot
from orders import store

log = logging.getLogger("api")
TICK = 0.05  # seconds between two reads of the watched orders' versions
# Orders started here and not yet seen in the read model; the oldest go first beyond this.
JUST_STARTED_MAX = 1_000


class Subscription:
    """What a stream waits on: `changed` is set when `latest` holds a stored order newer
    than `version`, the newest the stream has (from the watch or from elsewhere)."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.changed = asyncio.Event()
        self.latest: OrderSnapshot | None = None

    def offer(self, snap: OrderSnapshot) -> None:
        if snap.version > self.version:
            self.version = snap.version
            self.latest = snap
            self.changed.set()

    def take(self) -> OrderSnapshot | None:
        """The newest stored order delivered since the last take (clears `changed`)."""
        self.changed.clear()
        latest, self.latest = self.latest, None
        return latest


class OrderWatch:
    def __init__(self, engine: Engine, tick: float = TICK) -> None:
        self._engine = engine
        self._tick = tick
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._just_started: OrderedDict[str, OrderSnapshot] = OrderedDict()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="order-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def started(self, snap: OrderSnapshot) -> None:
        """Remembers an order this process has just started (its PENDING view)."""
        self._just_started[snap.order_id] = snap
        while len(self._just_started) > JUST_STARTED_MAX:
            self._just_started.popitem(last=False)

    def just_started(self, order_id: str) -> OrderSnapshot | None:
        """The PENDING view of an order started here whose first save has not been seen."""
        return self._just_started.get(order_id)

    def stored(self, order_id: str) -> None:
        """Forgets the PENDING view of an order now seen in the read model (by a read of
        GET /orders/{id}: polling clients do not subscribe)."""
        self._just_started.pop(order_id, None)

    @contextmanager
    def subscribe(self, order_id: str, version: int = -1) -> Iterator[Subscription]:
        """Delivers the stored order whenever it is newer than what the subscriber has
        (`version` to begin with), until the block exits."""
        sub = Subscription(version)
        self._subscribers[order_id].add(sub)
        self._wanted.set()
        try:
            yield sub
        finally:
            subscribers = self._subscribers.get(order_id)
            if subscribers is not None:
                subscribers.discard(sub)
                if not subscribers:
                    del self._subscribers[order_id]

    async def _run(self) -> None:
        while True:
            if not self._subscribers:
                self._wanted.clear()
                await self._wanted.wait()
            await asyncio.sleep(self._tick)
            if not self._subscribers:
                continue
            # Per order, the oldest version a subscriber has: each gets what is newer for it.
            known = {
                order_id: min(sub.version for sub in subs)
                for order_id, subs in self._subscribers.items()
                if subs
            }
            try:
                news = await run_sql(self._engine, partial(_news, known=known), read_only=True)
            except Exception as err:  # noqa: BLE001 - a blip: the streams fall back to queries
                log.warning("order watch: reading the read model failed: %s", err)
                continue
            for order_id, snap in news.items():
                self._just_started.pop(order_id, None)
                for sub in self._subscribers.get(order_id, ()):
                    sub.offer(snap)


def _news(conn: Connection, known: dict[str, int]) -> dict[str, OrderSnapshot]:
    """The stored orders whose version is newer than `known` holds for them."""
    current = store.versions(conn, list(known))
    changed = [order_id for order_id, version in current.items() if version > known[order_id]]
    return store.get_orders(conn, changed) if changed else {}
