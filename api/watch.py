"""One poller of the read model for every open order stream (GET /orders/{id}/events).

Each tick reads the versions of all watched orders in one statement, then the rows of the
orders that changed in a second one, and hands each stream its order's new state. So the
database sees one small query per tick however many clients follow orders, plus one read
per tick with news.

It also remembers the orders this process has just started, as PENDING, until the
workflow's first save reaches the read model: a client that follows its order right after
POST /checkout then starts its stream without a round trip to Temporal.

On PostgreSQL it also LISTENs to the read model's saves (orders.store.CHANGES_CHANNEL,
NOTIFYed by each save as it commits): a save of a followed order wakes it at once, and it
reads just that order, instead of finding the change at its next tick. While it listens,
it reads every followed order only once a RESYNC (in case a change came from elsewhere), and
once again whenever it (re)connects; while it cannot listen, it reads them every tick, as on
SQLite, where nothing tells another process of a commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine

from core.db import run_sql
from core.messages import OrderSnapshot
from orders import store

log = logging.getLogger("api")
TICK = 0.05  # seconds between two reads of the watched orders' versions
RESYNC = 1.0  # seconds between two reads of all of them while listening (PostgreSQL)
LISTEN_RETRY = (0.5, 30.0)  # first and longest wait before connecting the listener again
PROBE = "probe"  # the listener's own announcement, "probe <backend pid>": not an order's
PROBE_WAIT = 5.0  # seconds to hear it back before the channel is deemed deaf
PROBE_EVERY = 30.0  # seconds between two probes of a connected listener
# Orders most recently announced on the channel and their version, for a stream that
# subscribes just after its order's save was announced.
ANNOUNCED_MAX = 10_000
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
    def __init__(self, engine: Engine, tick: float = TICK, resync: float = RESYNC) -> None:
        self._engine = engine
        self._tick = tick
        self._resync = resync
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._just_started: OrderedDict[str, OrderSnapshot] = OrderedDict()
        # PostgreSQL: whether the listener is connected; the followed orders announced since
        # the last read (None: read them all); and what was announced lately, by order.
        self.listening = False
        self.listener_pid: int | None = None  # its PostgreSQL backend, while connected
        self._announced: set[str] | None = set()
        self._news = asyncio.Event()
        self._recent: OrderedDict[str, int] = OrderedDict()

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run(), name="order-watch"))
        if self._engine.dialect.name == "postgresql":
            self._tasks.append(asyncio.create_task(self._listen(), name="order-watch-listen"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

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
        if self.listening and self._recent.get(order_id, -1) > version:
            # A save announced before this stream subscribed: read it for the stream. (One
            # that committed before the listener connected, after the stream's first read,
            # is found by the next resync.)
            self._announce(order_id)
        try:
            yield sub
        finally:
            subscribers = self._subscribers.get(order_id)
            if subscribers is not None:
                subscribers.discard(sub)
                if not subscribers:
                    del self._subscribers[order_id]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_full = 0.0  # when every followed order is read next, while listening
        failing_since: float | None = None  # reads failing since then (logged once)
        while True:
            if not self._subscribers:
                self._wanted.clear()
                await self._wanted.wait()
            # Announcements wake the watch at once, but never put the full read off.
            wait = max(0.0, next_full - loop.time()) if self.listening else self._tick
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._news.wait()
            self._news.clear()
            announced, self._announced = self._announced, set()
            full = not self.listening or not announced or loop.time() >= next_full
            if not self._subscribers:
                continue
            # Per order, the oldest version a subscriber has: each gets what is newer for it.
            known = {
                order_id: min(sub.version for sub in subs)
                for order_id, subs in self._subscribers.items()
                if subs and (full or (announced is not None and order_id in announced))
            }
            if not known:
                continue
            try:
                read = _news if full else _announced_news
                news = await run_sql(self._engine, partial(read, known=known), read_only=True)
            except Exception as err:  # noqa: BLE001 - a blip: the streams fall back to queries
                if failing_since is None:
                    failing_since = loop.time()
                    log.warning("order watch: reading the read model failed: %s", err)
                if announced and self._announced is not None:
                    # Read again with the next announcement or the next read of all.
                    self._announced.update(announced)
                await asyncio.sleep(self._tick)  # never faster than the ticks
                continue
            if failing_since is not None:
                log.warning(
                    "order watch: reading the read model again, after %.1f s",
                    loop.time() - failing_since,
                )
                failing_since = None
            if full:
                next_full = loop.time() + self._resync
            for order_id, snap in news.items():
                self._just_started.pop(order_id, None)
                for sub in self._subscribers.get(order_id, ()):
                    sub.offer(snap)

    def _announce(self, *order_ids: str) -> None:
        """Has the next read include these orders (all of them once the set is None)."""
        if self._announced is not None:
            self._announced.update(order_ids)
        self._news.set()

    def _resync_all(self) -> None:
        self._announced = None
        self._news.set()

    async def _listen(self) -> None:
        """Keeps a connection LISTENing to the read model's saves, and reconnects (after
        LISTEN_RETRY, doubling) when it fails; the watch reads on ticks meanwhile.

        It counts as listening only once it has heard its own probe on the channel: behind
        a pool in transaction mode LISTEN succeeds and nothing ever arrives. It sends the
        probe again every PROBE_EVERY seconds and drops the connection when it is not heard
        back within PROBE_WAIT: a connection that died quietly (or a pool that changed
        underneath) is found and replaced."""
        # The engine's own connection arguments (host, password, options...), not the URL
        # rendered again: a rendered URL can mangle options with spaces. TCP keepalives and
        # a user timeout so that the kernel, too, gives up on a peer gone silent.
        cargs, cparams = self._engine.dialect.create_connect_args(self._engine.url)
        params: dict[str, Any] = {
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": int(PROBE_WAIT * 1000),
            "connect_timeout": 10,
        }
        params |= cparams
        params |= {"autocommit": True, "application_name": "order-watch"}
        wait = LISTEN_RETRY[0]
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(*cargs, **params) as conn:
                    await conn.execute(f"LISTEN {store.CHANGES_CHANNEL}")
                    probe = f"{PROBE} {conn.info.backend_pid}"
                    while True:
                        await self._probe(conn, probe)
                        if not self.listening:
                            self.listening = True
                            self.listener_pid = conn.info.backend_pid
                            wait = LISTEN_RETRY[0]
                            self._resync_all()  # what was saved before the LISTEN took
                        async for note in conn.notifies(timeout=PROBE_EVERY):
                            self._heard(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - the database is away: tick meanwhile
                # The arguments go to libpq as such: its messages name the host and the
                # user, never the password.
                reason = str(err).splitlines()[0] if str(err) else ""
                log.warning(
                    "order watch: not listening to the read model (%s: %s); reading it "
                    "every %.2f s until it can",
                    type(err).__name__,
                    reason,
                    self._tick,
                )
            finally:
                self.listening = False
                self.listener_pid = None
            self._news.set()  # back to ticks at once
            await asyncio.sleep(wait)
            wait = min(wait * 2, LISTEN_RETRY[1])

    async def _probe(self, conn: psycopg.AsyncConnection[Any], probe: str) -> None:
        """Announces `probe` on the channel and waits to hear it back (TimeoutError if not
        within PROBE_WAIT); what else is heard meanwhile is handled as usual."""
        # Sent from the pool, not on the listening connection: a query there would hang on
        # a dead connection, and psycopg's cancel of it takes seconds more.
        async with asyncio.timeout(PROBE_WAIT):  # the database itself may be silent
            await run_sql(self._engine, partial(store.announce, payload=probe))
        # Closed at once on break: the generator holds the connection's lock.
        async with contextlib.aclosing(conn.notifies(timeout=PROBE_WAIT)) as notes:
            async for note in notes:
                if note.payload == probe:
                    return
                self._heard(note.payload)
        raise TimeoutError(f"its own NOTIFY not heard back within {PROBE_WAIT} s")

    def _heard(self, payload: str) -> None:
        if payload.startswith(f"{PROBE} "):
            return  # a listener's probe (this one's, of an earlier connection, or a replica's)
        change = store.parse_change(payload)
        if change is None:
            return
        order_id, version = change
        self._recent[order_id] = max(version, self._recent.pop(order_id, version))
        while len(self._recent) > ANNOUNCED_MAX:
            self._recent.popitem(last=False)
        subs = self._subscribers.get(order_id)
        if subs and any(sub.version < version for sub in subs):
            self._announce(order_id)


def _news(conn: Connection, known: dict[str, int]) -> dict[str, OrderSnapshot]:
    """The stored orders whose version is newer than `known` holds for them."""
    current = store.versions(conn, list(known))
    changed = [order_id for order_id, version in current.items() if version > known[order_id]]
    return store.get_orders(conn, changed) if changed else {}


def _announced_news(conn: Connection, known: dict[str, int]) -> dict[str, OrderSnapshot]:
    """_news for orders announced as changed: their rows at once, in one statement."""
    stored = store.get_orders(conn, list(known))
    return {order_id: snap for order_id, snap in stored.items() if snap.version > known[order_id]}
