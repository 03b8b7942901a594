"""One poller of the read model for every open order stream (GET /orders/{id}/events).

Each tick reads the versions of all watched orders in one statement and wakes the streams
whose order changed; a stream then reads its order once. So the database sees one small
query per tick however many clients follow orders, plus one read per actual change.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from core.db import run_db
from orders.models import OrderRecord

log = logging.getLogger("api")
CHUNK = 500  # ids per IN (...), well within SQLite's and PostgreSQL's parameter limits


class OrderWatch:
    def __init__(self, engine: Engine, tick: float = 0.1) -> None:
        self._engine = engine
        self._tick = tick
        self._subscribers: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._versions: dict[str, int] = {}
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="order-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @contextmanager
    def subscribe(self, order_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the stored order's version grows (clear it after waking)."""
        event = asyncio.Event()
        self._subscribers[order_id].add(event)
        self._wanted.set()
        try:
            yield event
        finally:
            subscribers = self._subscribers.get(order_id)
            if subscribers is not None:
                subscribers.discard(event)
                if not subscribers:
                    del self._subscribers[order_id]
                    self._versions.pop(order_id, None)

    async def _run(self) -> None:
        while True:
            if not self._subscribers:
                self._wanted.clear()
                await self._wanted.wait()
            await asyncio.sleep(self._tick)
            ids = list(self._subscribers)
            if not ids:
                continue
            try:
                versions = await run_db(self._engine, partial(_versions, ids=ids), read_only=True)
            except Exception as err:  # noqa: BLE001 - a blip: the streams fall back to queries
                log.warning("order watch: reading versions failed: %s", err)
                continue
            for order_id, version in versions.items():
                if version > self._versions.get(order_id, -1):
                    self._versions[order_id] = version
                    for event in self._subscribers.get(order_id, ()):
                        event.set()


def _versions(session: Session, ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(ids), CHUNK):
        query = select(OrderRecord.order_id, OrderRecord.version).where(
            col(OrderRecord.order_id).in_(ids[start : start + CHUNK])
        )
        found.update(session.exec(query).all())
    return found
