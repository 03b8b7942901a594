"""POST /checkout: starts a PlaceOrder workflow and answers 202 at once.

`OrderStarter` is the one path that starts an order; POST /cart/checkout takes it too.
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
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
    TemporalConnector,
    WatchDep,
)
from api.errors import ApiError
from api.models import (
    CheckoutCreate,
    CheckoutPublic,
    PaymentDetails,
    ShippingAddressCreate,
    error_responses,
)
from api.order_reads import find_order, pending_snapshot, stored_order
from api.rate_limits import RateLimited
from api.watch import OrderWatch
from core.config import Settings
from core.grpc_client import Stubs
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


@dataclass(frozen=True)
class OrderRequest:
    """An order to place for `user_id`: POST /checkout's body, or the lines of the cart.

    `digest()` hashes what the request asked for into the workflow's memo, so that the
    same Idempotency-Key with another request is refused: a cart checkout's lines are not
    part of it (a retry finds the cart already emptied by the first)."""

    user_id: str
    items: list[OrderItem]
    payment: PaymentDetails
    shipping_address: ShippingAddressCreate
    idempotency_key: str | None
    # None for a cart checkout: its lines come from the cart, not from the request.
    requested_items: list[OrderItem] | None
    # More of the workflow's memo (a cart checkout: the version of the cart it read).
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def order_id(self) -> str:
        return order_id_for(self.user_id, self.idempotency_key)

    def digest(self) -> str:
        """sha256 of the canonical request. The card enters only as its last four digits:
        the hash sits in the workflow's memo, and 16 digits are few enough to brute-force."""
        canonical: dict[str, Any] = {
            "user_id": self.user_id,
            "card_last4": self.payment.card_number[-4:],
            "shipping_address": self.shipping_address.model_dump(),
        }
        if self.requested_items is None:
            canonical["cart"] = True
        else:
            canonical["items"] = [i.model_dump() for i in self.requested_items]
        raw = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()

    def placed(self, order: OrderSnapshot) -> bool:
        """Whether this request is the one that placed `order`: same user, lines (unless
        they came from the cart) and address, and the same card as far as the order knows
        it (its last four once charged, else "")."""
        return (
            order.user_id == self.user_id
            and order.shipping_address == self.shipping_address.to_message()
            and (
                self.requested_items is None
                or [(li.product_id, li.quantity) for li in order.items]
                == [(i.product_id, i.quantity) for i in self.requested_items]
            )
            and order.card_last4 in ("", self.payment.card_number[-4:])
        )


@dataclass(frozen=True)
class OrderStarter:
    """What starting an order takes: the one path of POST /checkout and POST /cart/checkout."""

    connector: TemporalConnector
    settings: Settings
    engine: Engine
    stubs: Stubs
    watch: OrderWatch

    async def previous(self, req: OrderRequest, *, ask_temporal: bool) -> CheckoutPublic | None:
        """The order this Idempotency-Key placed before (409 if for another request), or
        None. The read model first; with `ask_temporal`, the workflow too (an order placed
        a moment ago is not stored yet)."""
        if req.idempotency_key is None:
            return None
        stored = await stored_order(self.engine, req.order_id)
        if stored is None and not ask_temporal:
            return None
        return await _replay(await self.connector.get(), self.engine, req, stored)

    async def start(self, req: OrderRequest) -> tuple[CheckoutPublic, bool]:
        """Starts PlaceOrder for `req` (True), or answers the order its key placed (False)."""
        if (before := await self.previous(req, ask_temporal=False)) is not None:
            # A retry of an order placed before; its workflow may be gone already.
            return before, False
        client = await self.connector.get()
        user_id, order_id = req.user_id, req.order_id
        wf_id = workflow_id_for(order_id)
        n = sum(i.quantity for i in req.items)
        items = [i.model_dump() for i in req.items]
        address = req.shipping_address.model_dump()
        card = await self.stubs.payment.TokenizeCard(
            payment_pb2.TokenizeCardRequest(user_id=user_id, card_number=req.payment.card_number),
            timeout=GRPC_TIMEOUT,
        )
        try:
            await client.start_workflow(
                PlaceOrder.run,
                PlaceOrderInput(
                    order_id=order_id,
                    user_id=user_id,
                    items=req.items,
                    card_token=card.token,
                    shipping_address=req.shipping_address.to_message(),
                    fulfilment_deadline_seconds=self.settings.fulfilment_deadline_seconds,
                ),
                id=wf_id,
                task_queue=self.settings.temporal_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                # Encrypted like every payload: the address is no one's to read in Temporal.
                memo={
                    "request_hash": req.digest(),
                    "user_id": user_id,
                    "items": items,
                    "shipping_address": address,
                    **req.memo,
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
            # The same key a moment ago, from a request still in flight.
            if (placed := await _replay(client, self.engine, req)) is None:
                raise ApiError(409, "CONFLICT", "this order is being placed; try again") from None
            return placed, False
        self.watch.started(pending_snapshot(order_id, user_id, items, datetime.now(UTC), address))
        log.info("order %s started for user %s (%d item(s))", order_id, user_id, n)
        return CheckoutPublic(
            order_id=order_id, workflow_id=wf_id, status=OrderStatus.PENDING
        ), True


async def order_starter(
    connector: ConnectorDep,
    settings: SettingsDep,
    engine: EngineDep,
    stubs: StubsDep,
    watch: WatchDep,
) -> OrderStarter:
    return OrderStarter(connector, settings, engine, stubs, watch)


OrderStarterDep = Annotated[OrderStarter, Depends(order_starter)]


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
    starter: OrderStarterDep,
    idempotency_key: IdempotencyKey = None,
) -> CheckoutPublic:
    """Places an order for the caller: 202 with its id; follow it with GET /orders/{order_id}.
    A `user_id` in the body must be the caller's (403 otherwise)."""
    if body.user_id not in (None, caller.sub):
        raise ApiError(403, "FORBIDDEN", "an order can only be placed for the caller")
    items = [OrderItem(product_id=i.product_id, quantity=i.quantity) for i in body.items]
    req = OrderRequest(
        user_id=caller.sub,
        items=items,
        payment=body.payment,
        shipping_address=body.shipping_address,
        idempotency_key=idempotency_key,
        requested_items=items,
    )
    placed, _started = await starter.start(req)
    return placed


async def memo_of(client: Client, order_id: str) -> Mapping[str, Any]:
    """The memo the order's workflow was started with."""
    desc = await client.get_workflow_handle(workflow_id_for(order_id)).describe(
        rpc_timeout=START_TIMEOUT
    )
    return await desc.memo()


async def _replay(
    client: Client, engine: Engine, req: OrderRequest, stored: OrderSnapshot | None = None
) -> CheckoutPublic | None:
    """The key was used before: the same request gets the same order, another one 409.
    None when neither Temporal nor the read model knows the order."""
    order_id = req.order_id
    wf_id = workflow_id_for(order_id)
    try:
        desc = await client.get_workflow_handle(wf_id).describe(rpc_timeout=START_TIMEOUT)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        if stored is None:
            return None
        # Past retention: the request hash went with the workflow; compare with the order.
        if not req.placed(stored):
            raise _key_reused() from None
        return CheckoutPublic(order_id=order_id, workflow_id=wf_id, status=stored.status)
    if await desc.memo_value("request_hash", None, type_hint=str) != req.digest():
        raise _key_reused()
    snap = await find_order(client, engine, order_id)
    return CheckoutPublic(order_id=order_id, workflow_id=wf_id, status=snap.status)


def _key_reused() -> ApiError:
    return ApiError(
        409,
        "IDEMPOTENCY_KEY_REUSED",
        "this Idempotency-Key was already used for a different request",
    )
