"""Fake activities for workflow tests: same names as the real ones, scripted outcomes,
and a log of every call so tests can check what ran and in which order."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.errors import Reason
from core.messages import (
    ChargeInput,
    GetProductInput,
    GetUserInput,
    NotifyInput,
    OrderSnapshot,
    PaymentInfo,
    PaymentStatus,
    ProductInfo,
    RefundInput,
    ReleaseStockInput,
    ReserveStockInput,
    UserInfo,
)

PRICES = {"p-1": 1500, "p-2": 250}


class FakeShop:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.users = {"u-1"}
        self.products = dict(PRICES)
        self.stock: dict[str, int] = {"p-1": 10, "p-2": 10}
        self.reserved: dict[str, list[tuple[str, int]]] = {}
        self.captured: dict[str, int] = {}
        self.refunds: Counter[str] = Counter()
        self.notifications: list[tuple[str, str]] = []
        self.messages: dict[tuple[str, str], str] = {}
        # (order, user, token) of every charge: the workflow passes the token, not a card.
        self.charged_with: list[tuple[str, str, str]] = []
        self.saved: list[OrderSnapshot] = []
        self.decline = False
        # Transient failures of charge before it succeeds.
        self.charge_transient_failures = 0
        self.charge_blocks = False
        self.charge_gate = asyncio.Event()
        self.charge_attempts = 0
        self.voided: set[str] = set()
        self.user_delay = 0.0  # seconds get_user takes (real time)
        # Calls ("save:PENDING", "notify:ORDER_CONFIRMED") that wait until their event is set:
        # still in flight when the test cancels the workflow (no heartbeats, like the real ones).
        self.gates: dict[str, asyncio.Event] = {}

    # --- activities ----------------------------------------------------------------------

    @activity.defn(name="get_user")
    async def get_user(self, inp: GetUserInput) -> UserInfo:
        self.calls.append("get_user")
        if self.user_delay:
            await asyncio.sleep(self.user_delay)
        if inp.user_id not in self.users:
            raise ApplicationError("no such user", type=Reason.USER_NOT_FOUND, non_retryable=True)
        return UserInfo(id=inp.user_id, email="a@example.com", name="A")

    @activity.defn(name="get_product")
    async def get_product(self, inp: GetProductInput) -> ProductInfo:
        self.calls.append("get_product")
        if inp.product_id not in self.products:
            raise ApplicationError(
                "no such product", type=Reason.PRODUCT_NOT_FOUND, non_retryable=True
            )
        return ProductInfo(
            id=inp.product_id,
            sku=inp.product_id,
            name=inp.product_id,
            price_cents=self.products[inp.product_id],
        )

    @activity.defn(name="reserve_stock")
    async def reserve_stock(self, inp: ReserveStockInput) -> None:
        self.calls.append("reserve_stock")
        if inp.order_id in self.reserved:
            return
        if any(self.stock.get(i.product_id, 0) < i.quantity for i in inp.items):
            raise ApplicationError("out of stock", type=Reason.OUT_OF_STOCK, non_retryable=True)
        for i in inp.items:
            self.stock[i.product_id] -= i.quantity
        self.reserved[inp.order_id] = [(i.product_id, i.quantity) for i in inp.items]

    @activity.defn(name="release_stock")
    async def release_stock(self, inp: ReleaseStockInput) -> None:
        self.calls.append("release_stock")
        for pid, qty in self.reserved.pop(inp.order_id, []):
            self.stock[pid] += qty

    @activity.defn(name="charge")
    async def charge(self, inp: ChargeInput) -> PaymentInfo:
        self.calls.append("charge")
        self.charged_with.append((inp.order_id, inp.user_id, inp.card_token))
        self.charge_attempts += 1
        if self.charge_blocks:
            # A charge still in flight when the order is cancelled: it comes back only once
            # the test lets it (no heartbeats, like the real activity).
            await self.charge_gate.wait()
        if inp.order_id in self.voided:
            # As the real provider: a refund that came first voids the order's payment.
            raise ApplicationError("payment voided", type=Reason.PAYMENT_VOIDED, non_retryable=True)
        if self.decline:
            raise ApplicationError(
                "card declined", type=Reason.PAYMENT_DECLINED, non_retryable=True
            )
        if self.charge_attempts <= self.charge_transient_failures:
            raise ApplicationError("processing error", type=Reason.PROCESSING_ERROR)
        self.captured.setdefault(inp.order_id, inp.amount_cents)
        return PaymentInfo(
            order_id=inp.order_id,
            status=PaymentStatus.CAPTURED,
            amount_cents=inp.amount_cents,
            card_last4=inp.card_token[-4:],
        )

    @activity.defn(name="refund")
    async def refund(self, inp: RefundInput) -> PaymentInfo:
        self.calls.append("refund")
        if inp.order_id in self.captured and self.refunds[inp.order_id] == 0:
            self.refunds[inp.order_id] += 1
            return PaymentInfo(
                order_id=inp.order_id,
                status=PaymentStatus.REFUNDED,
                amount_cents=self.captured[inp.order_id],
            )
        if self.refunds[inp.order_id]:
            return PaymentInfo(order_id=inp.order_id, status=PaymentStatus.REFUNDED)
        self.voided.add(inp.order_id)
        return PaymentInfo(order_id=inp.order_id, status=PaymentStatus.VOIDED)

    @activity.defn(name="send_notification")
    async def send_notification(self, inp: NotifyInput) -> None:
        self.calls.append(f"notify:{inp.kind.value}")
        if gate := self.gates.get(f"notify:{inp.kind.value}"):
            await gate.wait()
        if (inp.order_id, inp.kind.value) not in self.notifications:
            self.notifications.append((inp.order_id, inp.kind.value))
            self.messages[(inp.order_id, inp.kind.value)] = inp.message

    @activity.defn(name="save_order")
    async def save_order(self, snap: OrderSnapshot) -> None:
        self.calls.append(f"save:{snap.status.value}")
        if gate := self.gates.get(f"save:{snap.status.value}"):
            await gate.wait()
        self.saved.append(snap)

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.get_user,
            self.get_product,
            self.reserve_stock,
            self.release_stock,
            self.charge,
            self.refund,
            self.send_notification,
            self.save_order,
        ]
