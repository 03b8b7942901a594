"""/cart: the caller's cart, a Cart workflow (id `cart-{user_id}`, workflows/cart.py).

A change reaches the cart with update-with-start: the first one starts the workflow, the
next ones join it. Clearing and checking out act on the running cart only (with none,
there is nothing to take out). Reads are queries, priced at the current catalogue prices.
The product a change names is looked up here (a validator cannot do I/O) and handed to the
workflow, whose validator refuses an unknown or inactive one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import grpc
from fastapi import APIRouter, Response, status
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import CallerDep
from api.deps import GRPC_TIMEOUT, ConnectorDep, IdempotencyKey, PathId, SettingsDep, StubsDep
from api.errors import ApiError, not_found, temporal_unavailable
from api.models import (
    CartCheckoutCreate,
    CartItemUpdate,
    CartLinePublic,
    CartPublic,
    CheckoutPublic,
    error_responses,
)
from api.rate_limits import RateLimited
from api.routes.checkout import OrderRequest, OrderStarterDep, memo_of
from core.config import Settings
from core.grpc_client import Stubs
from core.messages import (
    CUSTOMER_ID,
    CartCheckedOut,
    CartInput,
    CartRefusal,
    CartState,
    ClearCart,
    OrderItem,
    ProductInfo,
    SetCartItem,
    cart_workflow_id_for,
)
from proto.shop.v1 import inventory_pb2, product_pb2
from workflows.cart import Cart

log = logging.getLogger("api")
router = APIRouter(prefix="/cart", tags=["cart"])

UPDATE_TIMEOUT = 10.0
QUERY_TIMEOUT = timedelta(seconds=5)
# The memo key of an order started from the cart: the cart's version it was read at.
CART_VERSION_MEMO = "cart_version"

# What a validator's refusal means over HTTP: (status, code).
_REFUSALS: dict[str, tuple[int, str]] = {
    CartRefusal.INVALID_QUANTITY: (422, "VALIDATION_ERROR"),
    CartRefusal.CART_FULL: (409, "CART_FULL"),
    CartRefusal.STALE_VERSION: (409, "STALE_VERSION"),
}


# --- the workflow -----------------------------------------------------------------------


def _start(settings: Settings, user_id: str) -> WithStartWorkflowOperation[Cart, CartState]:
    """How a change starts the cart when it has none (or its last one closed)."""
    return WithStartWorkflowOperation(
        Cart.run,
        CartInput(user_id=user_id, reminder_seconds=settings.cart_reminder_seconds),
        id=cart_workflow_id_for(user_id),
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, user_id)]),
        static_summary=f"Cart of user {user_id}",
    )


def _refused(err: WorkflowUpdateFailedError, product_id: str = "") -> ApiError:
    """A validator's refusal as the HTTP answer; anything else is the workflow's failure."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        if cause.type == CartRefusal.PRODUCT_NOT_FOUND:
            return not_found("product", product_id)
        if cause.type in _REFUSALS:
            http_status, code = _REFUSALS[cause.type]
            return ApiError(http_status, code, cause.message)
    log.warning("cart update failed: %s", cause)
    return ApiError(502, "UPDATE_FAILED", "the cart could not be changed")


async def _set_item(
    client: Client, settings: Settings, user_id: str, req: SetCartItem
) -> CartState:
    try:
        state: CartState = await asyncio.wait_for(
            client.execute_update_with_start_workflow(
                "set_item",
                req,
                start_workflow_operation=_start(settings, user_id),
                result_type=CartState,
            ),
            UPDATE_TIMEOUT,
        )
        return state
    except WorkflowUpdateFailedError as err:
        raise _refused(err, req.product_id) from None
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise temporal_unavailable("the cart did not answer in time") from None


async def _on_running_cart(
    client: Client, user_id: str, update: str, arg: ClearCart | CartCheckedOut
) -> CartState | None:
    """An update of the running cart; None when there is none (nothing in it to change)."""
    handle = client.get_workflow_handle(cart_workflow_id_for(user_id))
    try:
        state: CartState = await asyncio.wait_for(
            handle.execute_update(update, arg, result_type=CartState), UPDATE_TIMEOUT
        )
        return state
    except WorkflowUpdateFailedError as err:
        raise _refused(err) from None
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise temporal_unavailable("the cart did not answer in time") from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:  # never started, or closed (emptied)
            return None
        raise


async def read_cart(client: Client, user_id: str) -> CartState:
    """The cart as the workflow holds it; an empty one when the customer has none."""
    handle = client.get_workflow_handle(cart_workflow_id_for(user_id))
    try:
        state: CartState = await handle.query(Cart.cart, rpc_timeout=QUERY_TIMEOUT)
        return state
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return CartState(user_id=user_id)
        raise
    except WorkflowQueryFailedError as err:
        # The worker could not answer for it (its workflow task fails: a bad deploy, a
        # payload it cannot decode): a condition to fix and retry, not a 500.
        log.warning("cart query for user %s failed: %s", user_id, err)
        raise temporal_unavailable("the cart cannot be read now") from None


# --- the catalogue's view of it ---------------------------------------------------------


async def _product(stubs: Stubs, product_id: str) -> ProductInfo | None:
    """The product as the catalogue has it now; None when it does not exist."""
    try:
        p = await stubs.product.GetProduct(
            product_pb2.GetProductRequest(id=product_id), timeout=GRPC_TIMEOUT
        )
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    return ProductInfo(id=p.id, sku=p.sku, name=p.name, price_cents=p.price_cents, active=p.active)


async def _products(stubs: Stubs, ids: Sequence[str]) -> list[ProductInfo | None]:
    return list(await asyncio.gather(*(_product(stubs, pid) for pid in ids)))


async def priced(stubs: Stubs, state: CartState) -> CartPublic:
    """The cart at current prices, with each product's stock; the total counts only the
    products still sold."""
    ids = [li.product_id for li in state.items]
    if not ids:
        return CartPublic(items=[], total_cents=0, version=state.version)
    products, stock = await asyncio.gather(
        _products(stubs, ids),
        stubs.inventory.ListStock(
            inventory_pb2.ListStockRequest(product_ids=ids), timeout=GRPC_TIMEOUT
        ),
    )
    levels = {level.product_id: level.available for level in stock.levels}
    lines = [
        CartLinePublic(
            product_id=li.product_id,
            name=p.name if p else "",
            quantity=li.quantity,
            unit_price_cents=p.price_cents if p else 0,
            active=bool(p and p.active),
            stock=levels.get(li.product_id, 0),
        )
        for li, p in zip(state.items, products, strict=True)
    ]
    total = sum(li.unit_price_cents * li.quantity for li in lines if li.active)
    return CartPublic(items=lines, total_cents=total, version=state.version)


# --- routes -----------------------------------------------------------------------------


@router.get("", response_model=CartPublic, responses=error_responses(401, 502, 503))
async def get_cart(caller: CallerDep, connector: ConnectorDep, stubs: StubsDep) -> CartPublic:
    """The caller's cart at current prices, with what is in stock now."""
    return await priced(stubs, await read_cart(await connector.get(), caller.sub))


@router.put(
    "/items/{product_id}",
    response_model=CartPublic,
    responses=error_responses(401, 404, 409, 422, 429, 502, 503),
    dependencies=[RateLimited],
)
async def set_cart_item(
    product_id: PathId,
    body: CartItemUpdate,
    caller: CallerDep,
    connector: ConnectorDep,
    settings: SettingsDep,
    stubs: StubsDep,
) -> CartPublic:
    """Sets how many of a product the cart holds (0 takes it out) and answers with the cart;
    404 for a product that does not exist or is no longer sold, 409 when the cart holds as
    many products as it may."""
    client = await connector.get()
    product = await _product(stubs, product_id)
    req = SetCartItem(product_id=product_id, quantity=body.quantity, product=product)
    return await priced(stubs, await _set_item(client, settings, caller.sub, req))


@router.delete(
    "",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(401, 429, 502, 503),
    dependencies=[RateLimited],
)
async def clear_cart(caller: CallerDep, connector: ConnectorDep) -> Response:
    """Empties the caller's cart."""
    await _on_running_cart(await connector.get(), caller.sub, "clear", ClearCart())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/checkout",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CheckoutPublic,
    responses=error_responses(401, 409, 422, 429, 502, 503),
    dependencies=[RateLimited],
)
async def checkout_cart(
    body: CartCheckoutCreate,
    caller: CallerDep,
    connector: ConnectorDep,
    stubs: StubsDep,
    starter: OrderStarterDep,
    idempotency_key: IdempotencyKey = None,
) -> CheckoutPublic:
    """Places an order with the cart's products, as POST /checkout does (202; the same
    `Idempotency-Key` answers the same order and starts nothing), then takes them out of
    the cart: a product added meanwhile stays. 409 for an empty cart, or one holding a
    product no longer sold (`details`: their ids)."""
    client = await connector.get()
    user_id = caller.sub
    request = OrderRequest(
        user_id=user_id,
        items=[],
        payment=body.payment,
        shipping_address=body.shipping_address,
        idempotency_key=idempotency_key,
        requested_items=None,
    )
    if (before := await starter.previous(request, ask_temporal=True)) is not None:
        # A retry: the order is placed; finish what its first attempt may not have.
        await _take_out(client, user_id, before.order_id)
        return before
    state = await read_cart(client, user_id)
    if not state.items:
        raise ApiError(409, "CART_EMPTY", "the cart is empty")
    products = await _products(stubs, [li.product_id for li in state.items])
    gone = [
        li.product_id for li, p in zip(state.items, products, strict=True) if not p or not p.active
    ]
    if gone:
        raise ApiError(
            409, "CART_UNAVAILABLE_ITEMS", "the cart holds products no longer sold", gone
        )
    request = replace(
        request,
        items=[OrderItem(product_id=li.product_id, quantity=li.quantity) for li in state.items],
        memo={CART_VERSION_MEMO: state.version},
    )
    placed, started = await starter.start(request)
    await _take_out(client, user_id, placed.order_id, state.version if started else None)
    return placed


async def _take_out(
    client: Client, user_id: str, order_id: str, version: int | None = None
) -> None:
    """Takes what the order was placed with out of the cart (once the order has started):
    the lines as read at the version in its memo."""
    if version is None:
        try:
            memo: dict[str, Any] = dict(await memo_of(client, order_id))
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return  # past retention: the cart was emptied long ago
            raise
        if not isinstance(found := memo.get(CART_VERSION_MEMO), int):
            return
        version = found
    try:
        await _on_running_cart(
            client, user_id, "checked_out", CartCheckedOut(order_id=order_id, version=version)
        )
    except ApiError as err:
        if err.code != "STALE_VERSION":
            raise
        # The cart it was read from has closed since; the new one holds none of it.
