"""/orders: read orders, follow them (SSE), and cancel, ship or deliver them through the
PlaceOrder workflow's updates."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

import anyio
from fastapi import APIRouter, Query, Request
from sqlalchemy import Engine
from sse_starlette import EventSourceResponse, ServerSentEvent
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import AdminDep, CallerDep, ensure_reaches, until_expiry
from api.deps import GRPC_TIMEOUT, ConnectorDep, EngineDep, PathId, StubsDep, WatchDep
from api.errors import DATABASE_DOWN, ApiError, not_found, temporal_unavailable
from api.models import (
    ID_MAX_LENGTH,
    ID_PATTERN,
    CancelCreate,
    LedgerEntryPublic,
    OrderPublic,
    error_responses,
)
from api.order_reads import (
    QUERY_TIMEOUT,
    current_order,
    find_order,
    order_owner,
    order_to_follow,
    stored_order,
)
from api.rate_limits import RateLimited
from api.streams import StreamsDep, event_stream
from api.watch import OrderWatch
from core.db import run_sql
from core.messages import INVALID_STATE, CancelRequest, OrderSnapshot, OrderStatus, workflow_id_for
from orders.store import apply_snapshot
from orders.store import list_orders as store_list_orders
from proto.shop.v1 import payment_pb2

log = logging.getLogger("api")
router = APIRouter(prefix="/orders", tags=["orders"])

# Updates answer once the workflow has acted (cancel waits for the refund): bounded, so a
# stopped worker gives 503 instead of a request that never ends.
UPDATE_TIMEOUT = 30.0
# SSE: without news from the read model for this long, a stream asks the workflow.
QUERY_EVERY = 2.0  # a stream without news asks the workflow after this many seconds,
QUERY_EVERY_MAX = 60.0  # and, while none comes, twice as long each time up to this


@router.get("", response_model=list[OrderPublic], responses=error_responses(401, 422, 503))
async def list_orders(
    engine: EngineDep,
    caller: CallerDep,
    user_id: str | None = Query(default=None, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN),
    status: OrderStatus | None = None,
    limit: int = Query(default=50, ge=1, le=200),
) -> list[OrderPublic]:
    """Orders from the read model, newest first: a customer's own only, anyone's for an
    admin (`user_id` filters)."""
    if not caller.is_admin:
        if user_id not in (None, caller.sub):
            return []
        user_id = caller.sub
    snaps = await run_sql(
        engine,
        lambda c: store_list_orders(
            c, user_id=user_id, status=status.value if status else None, limit=limit
        ),
        read_only=True,
    )
    return [OrderPublic.from_snapshot(s) for s in snaps]


@router.get(
    "/{order_id}", response_model=OrderPublic, responses=error_responses(401, 404, 422, 502, 503)
)
async def get_order(
    order_id: PathId,
    caller: CallerDep,
    connector: ConnectorDep,
    engine: EngineDep,
    watch: WatchDep,
    consistent: bool = Query(
        default=False,
        description="ask the order's workflow instead of the read model (slower; the read "
        "model is at most one status change behind)",
    ),
) -> OrderPublic:
    """The order as it stands, from the read model the workflow writes on every status
    change; from the workflow itself before its first save or with `consistent=true`."""
    client = await connector.get_or_none()
    snap = await current_order(client, engine, watch, order_id, consistent)
    ensure_reaches(caller, snap.user_id, "order", order_id)
    return OrderPublic.from_snapshot(snap)


@router.get(
    "/{order_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "`status` events"},
        **error_responses(401, 404, 422, 429, 502, 503),
    },
)
async def order_events(
    order_id: PathId,
    request: Request,
    caller: CallerDep,
    connector: ConnectorDep,
    engine: EngineDep,
    watch: WatchDep,
    streams: StreamsDep,
) -> EventSourceResponse:
    """Server-sent events: a `status` event with the order now and on every change; the
    stream ends after a final status (DELIVERED, FAILED, CANCELLED). 429 when the caller
    already has STREAMS_PER_CALLER streams open."""
    with streams.admit(caller) as place:
        client = await connector.get_or_none()
        first = await order_to_follow(client, engine, watch, order_id)  # 404 before it starts
        ensure_reaches(caller, first.user_id, "order", order_id)
        # Set by sse-starlette when the server shuts down: the stream then ends cleanly.
        shutdown = anyio.Event()
        return event_stream(
            until_expiry(caller, _events(first, request, client, engine, watch, shutdown)),
            place,
            shutdown_event=shutdown,
            shutdown_grace_period=2,
        )


async def _events(
    first: OrderSnapshot,
    request: Request,
    client: Client | None,
    engine: Engine,
    watch: OrderWatch,
    shutdown: anyio.Event,
) -> AsyncGenerator[ServerSentEvent, None]:
    """Follows the order through the read model, which the workflow writes on every status
    change: the API's OrderWatch reads a new version within a tick (0.05 s) for all open
    streams at once, or, on PostgreSQL, when the save's NOTIFY arrives: far cheaper than a
    `status` query per stream (a round trip through the server and the worker). Without
    news for QUERY_EVERY seconds, the workflow itself is asked, in case a save is late (its
    activity retrying); less often while nothing changes (an order waiting days to ship).
    A workflow that has closed without a final status (terminated, timed out) will write
    nothing more: its stream ends."""
    snap = first
    # One event per entry of the order's status history, so a change is never merged into
    # the next one however fast they come; an order with no history yet shows as it is.
    sent = 0
    quiet = QUERY_EVERY
    with watch.subscribe(snap.order_id, snap.version) as sub:
        while True:
            views = [
                snap.model_copy(update={"status": h.status, "history": snap.history[: i + 1]})
                for i, h in enumerate(snap.history)
            ] or [snap]
            for i in range(sent, len(views)):
                yield ServerSentEvent(
                    data=OrderPublic.from_snapshot(views[i]).model_dump_json(),
                    event="status",
                    id=str(i + 1),
                )
            sent = max(sent, len(views) if snap.history else 0)
            if snap.status.is_final or await request.is_disconnected():
                return
            await _first_of(sub.changed, shutdown, timeout=quiet)
            if shutdown.is_set():
                return
            if sub.changed.is_set():
                latest = sub.take()
            else:
                quiet = min(quiet * 2, QUERY_EVERY_MAX)
                try:
                    latest = await find_order(client, engine, snap.order_id)
                    if latest.version <= snap.version and await _closed(client, snap.order_id):
                        return
                except (ApiError, RPCError, *DATABASE_DOWN):
                    continue  # a blip of Temporal or the database: keep the stream, try later
            if latest is not None and latest.version > snap.version:
                snap = latest
                sub.version = max(sub.version, snap.version)
                quiet = QUERY_EVERY


async def _closed(client: Client | None, order_id: str) -> bool:
    """Whether the order's workflow has ended (its latest run) or is gone (past retention);
    False when unknown."""
    if client is None:
        return False
    try:
        desc = await client.get_workflow_handle(workflow_id_for(order_id)).describe(
            rpc_timeout=QUERY_TIMEOUT
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return True
        raise
    return desc.status not in (None, WorkflowExecutionStatus.RUNNING)


async def _first_of(a: asyncio.Event, b: anyio.Event, timeout: float) -> None:
    """Returns when either event is set, or after `timeout` seconds."""
    if a.is_set() or b.is_set():
        return
    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as tg:

            async def until(event: asyncio.Event | anyio.Event) -> None:
                await event.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(until, a)
            tg.start_soon(until, b)


@router.get(
    "/{order_id}/payments",
    response_model=list[LedgerEntryPublic],
    responses=error_responses(401, 404, 422, 502, 503),
)
async def order_payments(
    order_id: PathId,
    caller: CallerDep,
    connector: ConnectorDep,
    engine: EngineDep,
    stubs: StubsDep,
) -> list[LedgerEntryPublic]:
    """The payment ledger of the order: CAPTURE, REFUND and DECLINE entries."""
    client = await connector.get_or_none()
    owner = await order_owner(client, engine, order_id)
    ensure_reaches(caller, owner, "order", order_id)
    resp = await stubs.payment.ListLedger(
        payment_pb2.ListLedgerRequest(order_id=order_id), timeout=GRPC_TIMEOUT
    )
    return [
        LedgerEntryPublic(
            type=payment_pb2.LedgerEntryType.Name(e.type).removeprefix("LEDGER_ENTRY_TYPE_"),
            amount_cents=e.amount_cents,
            idempotency_key=e.idempotency_key,
            created_at=e.created_at,
        )
        for e in resp.entries
    ]


async def _update(
    client: Client, engine: Engine, order_id: str, update: str, arg: Any = None
) -> OrderPublic:
    action = update.removeprefix("request_")
    handle = client.get_workflow_handle(workflow_id_for(order_id))
    args = [] if arg is None else [arg]
    try:
        snap: OrderSnapshot = await asyncio.wait_for(
            handle.execute_update(update, args=args, result_type=OrderSnapshot),
            UPDATE_TIMEOUT,
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type == INVALID_STATE:
            raise ApiError(409, INVALID_STATE, cause.message) from None
        log.warning("update %s of order %s failed: %s", update, order_id, cause)
        raise ApiError(502, "UPDATE_FAILED", f"the order could not {action}") from None
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise temporal_unavailable("the order did not answer in time") from None
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        # No running workflow: either no such order, or its workflow has already ended.
        stored = await stored_order(engine, order_id)
        if stored is None:
            raise not_found("order", order_id) from None
        raise ApiError(409, INVALID_STATE, f"order is {stored.status}") from None
    # The workflow's save of this state may still be on its way: store the answer (a
    # version-guarded upsert, a no-op if the save came first), so that the caller's next
    # GET /orders/{id}, served by the read model, shows what this update did.
    try:
        await run_sql(engine, lambda c: apply_snapshot(c, snap))
    except DATABASE_DOWN as err:
        log.warning("storing order %s after %s failed: %s", order_id, update, err)
    return OrderPublic.from_snapshot(snap)


@router.post(
    "/{order_id}/cancel",
    response_model=OrderPublic,
    responses=error_responses(401, 404, 409, 422, 429, 502, 503),
    dependencies=[RateLimited],
)
async def cancel_order(
    order_id: PathId,
    caller: CallerDep,
    connector: ConnectorDep,
    engine: EngineDep,
    body: CancelCreate | None = None,
) -> OrderPublic:
    """Cancels the order (refunding a paid one) and answers with the outcome; 409 once it
    has shipped or is final."""
    reason = body.reason if body else CancelCreate().reason
    client = await connector.get()
    if not caller.is_admin:
        ensure_reaches(caller, await order_owner(client, engine, order_id), "order", order_id)
    return await _update(client, engine, order_id, "request_cancel", CancelRequest(reason=reason))


@router.post(
    "/{order_id}/ship",
    response_model=OrderPublic,
    responses=error_responses(401, 403, 404, 409, 422, 429, 502, 503),
    dependencies=[RateLimited],
)
async def ship_order(
    order_id: PathId, _admin: AdminDep, connector: ConnectorDep, engine: EngineDep
) -> OrderPublic:
    """Marks a PAID order SHIPPED; 409 in any other state."""
    return await _update(await connector.get(), engine, order_id, "request_ship")


@router.post(
    "/{order_id}/deliver",
    response_model=OrderPublic,
    responses=error_responses(401, 403, 404, 409, 422, 429, 502, 503),
    dependencies=[RateLimited],
)
async def deliver_order(
    order_id: PathId, _admin: AdminDep, connector: ConnectorDep, engine: EngineDep
) -> OrderPublic:
    """Marks a SHIPPED order DELIVERED; 409 in any other state."""
    return await _update(await connector.get(), engine, order_id, "request_deliver")
