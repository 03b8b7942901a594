"""POST /checkout: starts a PlaceOrder workflow and answers 202 at once.

The card number goes to the payment service only, which gives back a token bound to the
customer: the workflow carries the token, so the number never reaches Temporal.

Business failures (unknown user or product, no stock, declined card) are the saga's to
find: the order then ends FAILED. With an `Idempotency-Key` the order id is derived from
the key, so the workflow id is the deduplication: a retry starts nothing new. Once the
server has dropped a closed workflow (the namespace's retention), the read model still
remembers its order, and a retry gets that order instead of a second workflow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, status
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import CallerDep
from api.deps import (
    GRPC_TIMEOUT,
    IDEMPOTENCY_NAMESPACE,
    ConnectorDep,
    EngineDep,
    IdempotencyKey,
    SettingsDep,
    StubsDep,
    WatchDep,
)
from api.errors import ApiError
from api.models import CheckoutCreate, CheckoutPublic, error_responses
from api.order_reads import find_order, pending_snapshot, stored_order
from api.rate_limits import RateLimited
from core.messages import (
    CUSTOMER_ID,
    ORDER_STATUS,
    OrderItem,
    OrderSnapshot,
    OrderStatus,
    PlaceOrderInput,
    workflow_id_for,
)
from proto.shop.v1 import payment_pb2
from workflows.place_order import PlaceOrder

log = logging.getLogger("api")
router = APIRouter(tags=["checkout"])

START_TIMEOUT = timedelta(seconds=10)


def order_id_for(user_id: str, key: str | None) -> str:
    """Keys are the customer's own: another customer's same key is another order."""
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{user_id}:{key}").hex if key else uuid.uuid4().hex


def request_hash(body: CheckoutCreate, user_id: str) -> str:
    """sha256 of the canonical request. The card enters only as its last four digits: the
    hash sits in the workflow's memo, and 16 digits are few enough to brute-force."""
    canonical = {
        "user_id": user_id,
        "items": [i.model_dump() for i in body.items],
        "card_last4": body.payment.card_number[-4:],
        "shipping_address": body.shipping_address.model_dump(),
    }
    raw = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


@router.post(
    "/checkout",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CheckoutPublic,
    responses=error_responses(401, 403, 409, 422, 429, 502, 503),
    dependencies=[RateLimited],
)
async def checkout(
    body: CheckoutCreate,
    caller: CallerDep,
    connector: ConnectorDep,
    settings: SettingsDep,
    engine: EngineDep,
    stubs: StubsDep,
    watch: WatchDep,
    idempotency_key: IdempotencyKey = None,
) -> CheckoutPublic:
    """Places an order for the caller: 202 with its id; follow it with GET /orders/{order_id}.
    A `user_id` in the body must be the caller's (403 otherwise)."""
    if body.user_id not in (None, caller.sub):
        raise ApiError(403, "FORBIDDEN", "an order can only be placed for the caller")
    user_id = caller.sub
    client = await connector.get()
    order_id = order_id_for(user_id, idempotency_key)
    wf_id = workflow_id_for(order_id)
    digest = request_hash(body, user_id)
    n = sum(i.quantity for i in body.items)
    items = [i.model_dump() for i in body.items]
    address = body.shipping_address.model_dump()
    if idempotency_key is not None and (stored := await stored_order(engine, order_id)):
        # A retry of an order placed before; its workflow may be gone already.
        return await _replay(client, engine, order_id, digest, body, user_id, stored)
    card = await stubs.payment.TokenizeCard(
        payment_pb2.TokenizeCardRequest(user_id=user_id, card_number=body.payment.card_number),
        timeout=GRPC_TIMEOUT,
    )
    try:
        await client.start_workflow(
            PlaceOrder.run,
            PlaceOrderInput(
                order_id=order_id,
                user_id=user_id,
                items=[OrderItem(**i) for i in items],
                card_token=card.token,
                shipping_address=body.shipping_address.to_message(),
                fulfilment_deadline_seconds=settings.fulfilment_deadline_seconds,
            ),
            id=wf_id,
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            # Encrypted like every payload: the address is no one's to read in Temporal.
            memo={
                "request_hash": digest,
                "user_id": user_id,
                "items": items,
                "shipping_address": address,
            },
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(ORDER_STATUS, OrderStatus.PENDING.value),
                    SearchAttributePair(CUSTOMER_ID, user_id),
                ]
            ),
            static_summary=f"Order {order_id}: {n} item(s) for user {user_id}",
            static_details="\n".join(
                f"- {i['quantity']} x product {i['product_id']}" for i in items
            ),
            rpc_timeout=START_TIMEOUT,
        )
    except WorkflowAlreadyStartedError:
        return await _replay(client, engine, order_id, digest, body, user_id)
    watch.started(pending_snapshot(order_id, user_id, items, datetime.now(UTC), address))
    log.info("order %s started for user %s (%d item(s))", order_id, user_id, n)
    return CheckoutPublic(order_id=order_id, workflow_id=wf_id, status=OrderStatus.PENDING)


async def _replay(
    client: Client,
    engine: Engine,
    order_id: str,
    digest: str,
    body: CheckoutCreate,
    user_id: str,
    stored: OrderSnapshot | None = None,
) -> CheckoutPublic:
    """The key was used before: the same request gets the same order, another one 409."""
    wf_id = workflow_id_for(order_id)
    try:
        desc = await client.get_workflow_handle(wf_id).describe(rpc_timeout=START_TIMEOUT)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND or stored is None:
            raise
        # Past retention: the request hash went with the workflow; compare with the order.
        if not _asks_for(stored, body, user_id):
            raise _key_reused() from None
        return CheckoutPublic(order_id=order_id, workflow_id=wf_id, status=stored.status)
    if await desc.memo_value("request_hash", None, type_hint=str) != digest:
        raise _key_reused()
    snap = await find_order(client, engine, order_id)
    return CheckoutPublic(order_id=order_id, workflow_id=wf_id, status=snap.status)


def _asks_for(order: OrderSnapshot, body: CheckoutCreate, user_id: str) -> bool:
    """Whether the request is the one that placed `order`: same user, lines and address,
    and the same card as far as the order knows it (its last four once charged, else "")."""
    return (
        order.user_id == user_id
        and order.shipping_address == body.shipping_address.to_message()
        and [(li.product_id, li.quantity) for li in order.items]
        == [(i.product_id, i.quantity) for i in body.items]
        and order.card_last4 in ("", body.payment.card_number[-4:])
    )


def _key_reused() -> ApiError:
    return ApiError(
        409,
        "IDEMPOTENCY_KEY_REUSED",
        "this Idempotency-Key was already used for a different request",
    )
