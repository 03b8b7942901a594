"""Where an order's current state comes from.

`GET /orders/{id}` reads the read model, which the workflow writes on every status change
(at most one save behind), and asks the workflow (its `status` query: a round trip through
the server and a workflow task on the worker) only for an order with no row yet, or when the
caller asks for `?consistent=true` (`find_order`: the query, falling back on the read model
when it fails)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from api.errors import not_found, temporal_unavailable
from api.watch import OrderWatch
from core.db import run_sql
from core.messages import (
    OrderLine,
    OrderSnapshot,
    OrderStatus,
    ShippingAddress,
    StatusChange,
    workflow_id_for,
)
from orders.store import get_order

log = logging.getLogger("api")

QUERY_TIMEOUT = timedelta(seconds=5)
_UNAVAILABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED}


async def stored_order(engine: Engine, order_id: str) -> OrderSnapshot | None:
    return await run_sql(engine, lambda c: get_order(c, order_id), read_only=True)


async def query_order(client: Client, order_id: str) -> OrderSnapshot | None:
    """The workflow's own view; None when there is no such workflow."""
    handle = client.get_workflow_handle(workflow_id_for(order_id))
    try:
        snap: OrderSnapshot = await handle.query(
            "status", result_type=OrderSnapshot, rpc_timeout=QUERY_TIMEOUT
        )
        return snap
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def pending_from_memo(client: Client, order_id: str) -> OrderSnapshot | None:
    """A PENDING snapshot for a workflow that exists but has not run its first task yet
    (it cannot answer queries then, and the read model has no row)."""
    handle = client.get_workflow_handle(workflow_id_for(order_id))
    try:
        desc = await handle.describe(rpc_timeout=QUERY_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    memo = await desc.memo()
    return pending_snapshot(
        order_id,
        str(memo.get("user_id", "")),
        memo.get("items", []),
        desc.start_time or datetime.now(UTC),
        memo.get("shipping_address"),
    )


def pending_snapshot(
    order_id: str,
    user_id: str,
    items: list[dict[str, Any]],
    started: datetime,
    shipping_address: dict[str, Any] | None,
) -> OrderSnapshot:
    """An order as it stands before its workflow's first save: PENDING, no prices yet."""
    return OrderSnapshot(
        order_id=order_id,
        user_id=user_id,
        status=OrderStatus.PENDING,
        items=[OrderLine.model_validate(i) for i in items],
        shipping_address=ShippingAddress.model_validate(shipping_address)
        if shipping_address
        else None,
        history=[StatusChange(status=OrderStatus.PENDING, at=started)],
    )


async def find_order(client: Client | None, engine: Engine, order_id: str) -> OrderSnapshot:
    """The order as it stands now, or ApiError 404 when neither Temporal nor the read model
    knows it. With Temporal down, a stored order is still answered (possibly stale)."""
    stored = await stored_order(engine, order_id)
    if stored is not None and stored.status.is_final:
        return stored
    if client is None:
        if stored is not None:
            return stored
        raise temporal_unavailable()
    try:
        snap = await query_order(client, order_id)
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError, RPCError) as err:
        log.info("status query for order %s failed: %s", order_id, err)
        if stored is not None:
            return stored
        if isinstance(err, RPCError) and err.status in _UNAVAILABLE:
            raise
        snap = await pending_from_memo(client, order_id)
    if snap is None:
        if stored is not None:
            return stored
        raise not_found("order", order_id)
    # Whichever is newer: a late query answer never hides a newer stored state.
    if stored is not None and stored.version > snap.version:
        return stored
    return snap


async def current_order(
    client: Client | None,
    engine: Engine,
    watch: OrderWatch,
    order_id: str,
    consistent: bool = False,
) -> OrderSnapshot:
    """The order for `GET /orders/{id}`: the read model's row; without one, the PENDING view
    of an order this API process has just started (api.watch), else the workflow's answer;
    `consistent`: the workflow's answer (`find_order`) whatever the read model holds.
    ApiError 404 if unknown."""
    if consistent:
        return await find_order(client, engine, order_id)
    stored = await stored_order(engine, order_id)
    if stored is not None:
        watch.stored(order_id)
        return stored
    if (started := watch.just_started(order_id)) is not None:
        return started
    return await find_order(client, engine, order_id)


async def order_owner(client: Client | None, engine: Engine, order_id: str) -> str:
    """The id of the order's customer, from the read model or the workflow's start (a
    describe, answered by the server alone); ApiError 404 when there is no such order."""
    stored = await stored_order(engine, order_id)
    if stored is not None:
        return stored.user_id
    if client is None:
        raise temporal_unavailable()
    started = await pending_from_memo(client, order_id)
    if started is None:
        raise not_found("order", order_id)
    return started.user_id


async def order_to_follow(
    client: Client | None, engine: Engine, watch: OrderWatch, order_id: str
) -> OrderSnapshot:
    """Where an order stream (SSE) starts: the read model, which the workflow writes on every
    status change, or PENDING: as this API started it (until the watch has seen it stored;
    the stream then gets the stored order at the watch's next tick), or, before the first
    save, from the workflow's start (a describe, answered by the server alone). Cheaper than
    `find_order`'s query, which costs the worker a workflow task; the stream then follows
    the read model. ApiError 404 if unknown."""
    if (started := watch.just_started(order_id)) is not None:
        return started  # the watch delivers whatever newer the read model holds
    stored = await stored_order(engine, order_id)
    if stored is not None:
        return stored
    if client is None:
        raise temporal_unavailable()
    snap = await pending_from_memo(client, order_id)
    if snap is None:
        raise not_found("order", order_id)
    return snap
