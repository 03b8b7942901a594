"""Live feeds for the pages (server-sent events), each checked like any route:

- `GET /admin/feeds/orders` (admin): every order's changes, as they reach the read model;
- `GET /admin/feeds/low-stock` (admin): products whose available stock falls below their
  low-stock threshold (InventoryService.WatchStock);
- `GET /notifications/events` (the caller): the caller's notifications as they are sent
  (NotificationService.StreamNotifications).

They never end on their own (the browser's EventSource reconnects when one does), so they
are left out of the OpenAPI schema, where a client generator or a fuzzer would wait on them
forever; tests/test_authz.py's FEEDS table checks who may open them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from datetime import timedelta
from functools import partial
from typing import Any

import grpc
from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import Connection, Engine, func, select
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.auth import AdminDep, CallerDep, until_expiry
from api.deps import GRPC_TIMEOUT, EngineDep, StubsDep
from api.errors import DATABASE_DOWN, ApiError
from api.models import NotificationPublic, OrderPublic
from api.streams import StreamsDep, event_stream
from core.db import run_sql
from core.grpc_client import Stubs
from orders.store import ORDERS, SNAPSHOT_COLUMNS, to_snapshot
from proto.shop.v1 import inventory_pb2, notification_pb2, product_pb2

log = logging.getLogger("api")
router = APIRouter(include_in_schema=False)

FEED_TICK = 0.5  # seconds between two reads of the read model by the orders feed
# Rows per read at most, the newest: a board shows the orders of now; one that falls behind
# in a burst of more than this per tick shows the rest on reload.
FEED_BATCH = 500
# Rows changed this long before the newest seen are read again, so a write whose clock was a
# little behind, or that committed late, is not missed (the version drops what was sent).
FEED_OVERLAP = timedelta(seconds=5)


class OrderChange(BaseModel):
    """An order as it is now, with its read-model version (the newest wins on the page)."""

    version: int
    order: OrderPublic


class LowStockAlert(BaseModel):
    product_id: str
    name: str
    available: int
    threshold: int


async def _subscribed(call: grpc.aio.UnaryStreamCall[Any, Any]) -> None:
    """Waits for the stream's response headers, which the services send once the watch is
    subscribed: so the feed's 200 means nothing sent from now on is missed (the pages open
    a feed, then read the list). A service that is down answers 503 here, not a dead feed."""
    try:
        await asyncio.wait_for(call.initial_metadata(), GRPC_TIMEOUT)
    except TimeoutError:
        call.cancel()
        raise ApiError(503, "SERVICE_UNAVAILABLE", "a backend service is unavailable") from None
    except BaseException:
        call.cancel()
        raise


# --- the orders feed ------------------------------------------------------------------------


def _newest(conn: Connection) -> Any:
    return conn.execute(select(func.max(ORDERS.c.updated_at))).scalar()


def _changed_since(conn: Connection, since: Any) -> list[tuple[Any, dict[str, Any]]]:
    """(updated_at, row) of the newest FEED_BATCH orders changed at or after `since` (any,
    with None), oldest first."""
    stmt = select(ORDERS.c.updated_at, *(ORDERS.c[name] for name in SNAPSHOT_COLUMNS))
    if since is not None:
        stmt = stmt.where(ORDERS.c.updated_at >= since)
    stmt = stmt.order_by(ORDERS.c.updated_at.desc()).limit(FEED_BATCH)
    return [(row["updated_at"], dict(row)) for row in conn.execute(stmt).mappings()][::-1]


async def _order_changes(request: Request, engine: Engine) -> AsyncGenerator[ServerSentEvent, None]:
    sent: dict[str, tuple[int, Any]] = {}  # order id -> (version sent, its updated_at)
    newest: Any = None
    try:
        # From a little before the newest change: the page's own list may be that old.
        newest = await run_sql(engine, _newest, read_only=True)
    except DATABASE_DOWN as err:
        log.warning("orders feed: the read model is unavailable: %s", type(err).__name__)
    while not await request.is_disconnected():
        since = newest - FEED_OVERLAP if newest is not None else None
        try:
            rows = await run_sql(engine, partial(_changed_since, since=since), read_only=True)
        except DATABASE_DOWN as err:
            log.warning("orders feed: the read model is unavailable: %s", type(err).__name__)
            rows = []
        for updated_at, row in rows:
            snap = to_snapshot(row)
            newest = updated_at if newest is None else max(newest, updated_at)
            if sent.get(snap.order_id, (-1, None))[0] >= snap.version:
                continue
            sent[snap.order_id] = (snap.version, updated_at)
            change = OrderChange(version=snap.version, order=OrderPublic.from_snapshot(snap))
            yield ServerSentEvent(data=change.model_dump_json(), event="order")
        if newest is not None:
            horizon = newest - FEED_OVERLAP
            for order_id in [k for k, (_, at) in sent.items() if at < horizon]:
                del sent[order_id]
        await asyncio.sleep(FEED_TICK)


@router.get("/admin/feeds/orders")
async def order_feed(
    request: Request, admin: AdminDep, engine: EngineDep, streams: StreamsDep
) -> EventSourceResponse:
    """Every order's changes (event `order`: an OrderChange), from a few seconds back."""
    with streams.admit(admin) as place:
        return event_stream(until_expiry(admin, _order_changes(request, engine)), place)


# --- the low-stock feed ---------------------------------------------------------------------


async def _name(stubs: Stubs, product_id: str) -> str:
    try:
        p = await stubs.product.GetProduct(
            product_pb2.GetProductRequest(id=product_id), timeout=GRPC_TIMEOUT
        )
    except grpc.aio.AioRpcError:
        return product_id
    return p.name


async def _low_stock(
    stubs: Stubs, call: grpc.aio.UnaryStreamCall[Any, inventory_pb2.StockLevel]
) -> AsyncGenerator[ServerSentEvent, None]:
    names: dict[str, str] = {}
    last: dict[str, int] = {}  # the level last alerted, per product still low
    try:
        async for level in call:
            if not level.low_stock:
                last.pop(level.product_id, None)  # back above: the next drop alerts again
                continue
            if last.get(level.product_id) == level.available:
                continue
            last[level.product_id] = level.available
            if level.product_id not in names:
                names[level.product_id] = await _name(stubs, level.product_id)
            alert = LowStockAlert(
                product_id=level.product_id,
                name=names[level.product_id],
                available=level.available,
                threshold=level.low_stock_threshold,
            )
            yield ServerSentEvent(data=alert.model_dump_json(), event="low-stock")
    except grpc.aio.AioRpcError as err:
        # The watch ended (the services restarted, or we read too slowly): so does the
        # stream; the browser reconnects and watches again.
        log.info("low-stock feed ended: %s", err.code().name)


@router.get("/admin/feeds/low-stock")
async def low_stock_feed(
    admin: AdminDep, stubs: StubsDep, streams: StreamsDep
) -> EventSourceResponse:
    """Event `low-stock` (a LowStockAlert) each time a product's stock is seen below its
    threshold, the products already low first."""
    with streams.admit(admin) as place:
        call = stubs.inventory.WatchStock(inventory_pb2.WatchStockRequest())
        await _subscribed(call)
        # The response cancels the call when it ends, even before its first event.
        return event_stream(until_expiry(admin, _low_stock(stubs, call)), place, call.cancel)


# --- the caller's notifications -------------------------------------------------------------


async def _notifications(
    call: grpc.aio.UnaryStreamCall[Any, notification_pb2.Notification],
) -> AsyncGenerator[ServerSentEvent, None]:
    try:
        async for n in call:
            public = NotificationPublic(
                kind=n.kind, order_id=n.order_id, message=n.message, created_at=n.created_at
            )
            yield ServerSentEvent(data=public.model_dump_json(), event="notification", id=n.id)
    except grpc.aio.AioRpcError as err:
        log.info("notification feed ended: %s", err.code().name)


@router.get("/notifications/events")
async def notification_feed(
    caller: CallerDep, stubs: StubsDep, streams: StreamsDep
) -> EventSourceResponse:
    """The caller's notifications as they are sent (event `notification`)."""
    with streams.admit(caller) as place:
        call = stubs.notification.StreamNotifications(
            notification_pb2.StreamNotificationsRequest(user_id=caller.sub, include_existing=False)
        )
        await _subscribed(call)
        return event_stream(until_expiry(caller, _notifications(call)), place, call.cancel)
