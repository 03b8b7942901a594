"""Activities against the real services on port 0 (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from sqlalchemy import Engine, text
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.inventory import InventoryActivities
from activities.notification import NotificationActivities
from activities.orders import OrderActivities
from activities.payment import PaymentActivities
from activities.product import ProductActivities
from activities.user import UserActivities
from core.db import migrate, run_sql
from core.grpc_client import Stubs
from core.messages import (
    ChargeInput,
    GetProductInput,
    GetUserInput,
    NotificationKind,
    NotifyInput,
    OrderItem,
    OrderLine,
    OrderSnapshot,
    OrderStatus,
    PaymentStatus,
    RefundInput,
    ReleaseStockInput,
    ReserveStockInput,
    StatusChange,
)
from orders import store
from proto.shop.v1 import (
    inventory_pb2,
    notification_pb2,
    payment_pb2,
    product_pb2,
    user_pb2,
    user_pb2_grpc,
)
from tests.harness import uid

env = ActivityEnvironment()


async def business_error(call: object) -> ApplicationError:
    with pytest.raises(ApplicationError) as info:
        await call  # type: ignore[misc]
    return info.value


async def new_product(stubs: Stubs, stock: int, price: int = 700) -> str:
    p = await stubs.product.CreateProduct(
        product_pb2.CreateProductRequest(sku=f"S-{uid()}", name="Thing", price_cents=price)
    )
    if stock:
        await stubs.inventory.AdjustStock(
            inventory_pb2.AdjustStockRequest(product_id=p.id, delta=stock, idempotency_key=uid())
        )
    return str(p.id)


async def test_get_user(stubs: Stubs) -> None:
    acts = UserActivities(stubs.user)
    u = await stubs.user.CreateUser(user_pb2.CreateUserRequest(email=f"{uid()}@x.io", name="Ann"))
    found = await env.run(acts.get_user, GetUserInput(user_id=u.id))
    assert (found.id, found.name) == (u.id, "Ann")
    err = await business_error(env.run(acts.get_user, GetUserInput(user_id=uid())))
    assert err.type == "USER_NOT_FOUND" and err.non_retryable


async def test_get_product(stubs: Stubs, engine: Engine) -> None:
    acts = ProductActivities(stubs.product)
    pid = await new_product(stubs, stock=0, price=1234)
    found = await env.run(acts.get_product, GetProductInput(product_id=pid))
    assert found.price_cents == 1234
    err = await business_error(env.run(acts.get_product, GetProductInput(product_id=uid())))
    assert err.type == "PRODUCT_NOT_FOUND" and err.non_retryable
    # A product no longer for sale fails an order the same way.
    with engine.begin() as conn:
        deactivate = text("UPDATE product_products SET active = false WHERE id = :id")
        conn.execute(deactivate, {"id": pid})
    err = await business_error(env.run(acts.get_product, GetProductInput(product_id=pid)))
    assert err.type == "PRODUCT_NOT_FOUND" and err.non_retryable


async def test_reserve_and_release_are_idempotent(stubs: Stubs) -> None:
    acts = InventoryActivities(stubs.inventory)
    pid, order = await new_product(stubs, stock=3), uid()
    inp = ReserveStockInput(order_id=order, items=[OrderItem(product_id=pid, quantity=2)])
    await env.run(acts.reserve_stock, inp)
    await env.run(acts.reserve_stock, inp)  # a retry takes nothing more
    level = await stubs.inventory.GetStock(inventory_pb2.GetStockRequest(product_id=pid))
    assert level.available == 1
    await env.run(acts.release_stock, ReleaseStockInput(order_id=order))
    await env.run(acts.release_stock, ReleaseStockInput(order_id=order))
    level = await stubs.inventory.GetStock(inventory_pb2.GetStockRequest(product_id=pid))
    assert level.available == 3


async def test_reserve_out_of_stock_is_final(stubs: Stubs) -> None:
    acts = InventoryActivities(stubs.inventory)
    pid = await new_product(stubs, stock=1)
    inp = ReserveStockInput(order_id=uid(), items=[OrderItem(product_id=pid, quantity=2)])
    err = await business_error(env.run(acts.reserve_stock, inp))
    assert err.type == "OUT_OF_STOCK" and err.non_retryable


async def test_release_before_reserve_means_a_late_reserve_takes_nothing(stubs: Stubs) -> None:
    acts = InventoryActivities(stubs.inventory)
    pid, order = await new_product(stubs, stock=2), uid()
    await env.run(acts.release_stock, ReleaseStockInput(order_id=order))
    inp = ReserveStockInput(order_id=order, items=[OrderItem(product_id=pid, quantity=1)])
    # Refused for good: the saga must not go on to charge for stock the order does not hold.
    err = await business_error(env.run(acts.reserve_stock, inp))
    assert err.type == "RESERVATION_RELEASED" and err.non_retryable
    level = await stubs.inventory.GetStock(inventory_pb2.GetStockRequest(product_id=pid))
    assert level.available == 2


CUSTOMER = "u-pays"


async def card_token(stubs: Stubs, card: str, user_id: str = CUSTOMER) -> str:
    """A token of `card` for `user_id`, as the API gets it at checkout."""
    req = payment_pb2.TokenizeCardRequest(user_id=user_id, card_number=card)
    return (await stubs.payment.TokenizeCard(req)).token


def charge_input(order: str, amount: int, token: str, key: str | None = None) -> ChargeInput:
    return ChargeInput(
        order_id=order,
        user_id=CUSTOMER,
        amount_cents=amount,
        card_token=token,
        idempotency_key=key or f"{order}:charge",
    )


async def test_charge_refund_and_declines(stubs: Stubs) -> None:
    acts = PaymentActivities(stubs.payment)
    order = uid()
    charge = charge_input(order, 999, await card_token(stubs, "4242424242424242"))
    paid = await env.run(acts.charge, charge)
    again = await env.run(acts.charge, charge)
    assert paid.status is again.status is PaymentStatus.CAPTURED and paid.card_last4 == "4242"
    refund = RefundInput(order_id=order, idempotency_key=f"{order}:refund")
    assert (await env.run(acts.refund, refund)).status is PaymentStatus.REFUNDED
    assert (await env.run(acts.refund, refund)).status is PaymentStatus.REFUNDED
    ledger = await stubs.payment.ListLedger(payment_pb2.ListLedgerRequest(order_id=order))
    assert [(e.type, e.amount_cents) for e in ledger.entries] == [
        (payment_pb2.LEDGER_ENTRY_TYPE_CAPTURE, 999),
        (payment_pb2.LEDGER_ENTRY_TYPE_REFUND, 999),
    ]

    other = uid()
    declined = charge_input(other, 999, await card_token(stubs, "4000000000000002"), other)
    err = await business_error(env.run(acts.charge, declined))
    assert err.type == "PAYMENT_DECLINED" and err.non_retryable


async def test_charge_after_a_void_keeps_the_service_reason(stubs: Stubs) -> None:
    # The reason passes through as the service gave it: PAYMENT_VOIDED, not PAYMENT_DECLINED
    # (which would mark the order's payment DECLINED though no card was ever refused).
    acts = PaymentActivities(stubs.payment)
    order = uid()
    voided = await env.run(acts.refund, RefundInput(order_id=order, idempotency_key=uid()))
    assert voided.status is PaymentStatus.VOIDED
    charge = charge_input(order, 100, await card_token(stubs, "4242424242424242"), uid())
    err = await business_error(env.run(acts.charge, charge))
    assert err.type == "PAYMENT_VOIDED" and err.non_retryable
    assert err.message == f"payment of order {order} was voided"


async def test_a_refused_request_is_final_with_its_reason(stubs: Stubs) -> None:
    acts = PaymentActivities(stubs.payment)
    others = await card_token(stubs, "4242424242424242", user_id="someone-else")
    err = await business_error(env.run(acts.charge, charge_input(uid(), 100, others, uid())))
    assert err.type == "CARD_TOKEN_INVALID" and err.non_retryable


async def test_processing_error_is_retryable_then_pays(stubs: Stubs) -> None:
    acts = PaymentActivities(stubs.payment)
    order = uid()
    charge = charge_input(order, 500, await card_token(stubs, "4000000000000119"))
    for _ in range(2):
        err = await business_error(env.run(acts.charge, charge))
        assert not err.non_retryable and err.type == "PROCESSING_ERROR"
    assert (await env.run(acts.charge, charge)).status is PaymentStatus.CAPTURED


async def test_notification_is_sent_once(stubs: Stubs) -> None:
    acts = NotificationActivities(stubs.notification)
    user, order = uid(), uid()
    inp = NotifyInput(
        user_id=user,
        order_id=order,
        kind=NotificationKind.ORDER_CONFIRMED,
        message="hi",
        idempotency_key=f"{order}:ORDER_CONFIRMED",
    )
    await env.run(acts.send_notification, inp)
    await env.run(acts.send_notification, inp)
    listed = await stubs.notification.ListNotifications(
        notification_pb2.ListNotificationsRequest(user_id=user)
    )
    assert [n.kind for n in listed.notifications] == ["ORDER_CONFIRMED"]


async def test_transport_errors_are_retryable() -> None:
    # Nothing listens on this port: UNAVAILABLE, which Temporal must retry.
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        acts = UserActivities(user_pb2_grpc.UserServiceStub(channel))
        err = await business_error(env.run(acts.get_user, GetUserInput(user_id="u")))
    assert not err.non_retryable and err.type == "UNAVAILABLE"


async def test_save_order_keeps_the_newest_version(engine: Engine) -> None:
    migrate(engine)
    acts = OrderActivities(engine)
    now = datetime.now(UTC)
    snap = OrderSnapshot(
        order_id=uid(),
        user_id="u",
        status=OrderStatus.PENDING,
        items=[OrderLine(product_id="p", quantity=1, unit_price_cents=5)],
        history=[StatusChange(status=OrderStatus.PENDING, at=now)],
        version=1,
    )
    paid = snap.model_copy(update={"status": OrderStatus.PAID, "version": 3})
    await env.run(acts.save_order, paid)
    await env.run(acts.save_order, snap)  # a late retry of an older write is ignored
    stored = await run_sql(engine, lambda c: store.get_order(c, snap.order_id))
    assert stored is not None and stored.status == OrderStatus.PAID and stored.version == 3
    assert stored.items == snap.items and stored.history[0].at == now
    listed = await run_sql(engine, lambda c: store.list_orders(c, user_id="u"))
    assert snap.order_id in [o.order_id for o in listed]
