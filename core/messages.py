"""Messages that cross Temporal: workflow, activity, signal, query and update inputs and
results, and the order's statuses, reasons and notification kinds they carry.

Every workflow, activity and update takes exactly one of these objects, so a field can be
added without breaking workflows that are already running (give new fields defaults).
They travel through Temporal with `pydantic_data_converter`, encrypted by the shop's codec
(`core.codec.data_converter`).
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator
from temporalio.common import SearchAttributeKey


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    RESERVED = "RESERVED"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({OrderStatus.DELIVERED, OrderStatus.FAILED, OrderStatus.CANCELLED})


class PaymentStatus(StrEnum):
    """An order's payment, as the payment service keeps it and the order shows it.

    The wire form is the proto enum `shop.v1.PaymentStatus`; `core/wire.py` converts.
    """

    NONE = "NONE"
    CAPTURED = "CAPTURED"
    DECLINED = "DECLINED"
    REFUNDED = "REFUNDED"
    # The service's answer to a refund of an order never captured: a later charge is
    # refused. The order itself keeps NONE (nothing was taken, nothing given back).
    VOIDED = "VOIDED"


class FailureReason(StrEnum):
    """Why an order ended FAILED or CANCELLED: the `failure_reason` code."""

    # Business failures the saga finds (FAILED).
    USER_NOT_FOUND = "USER_NOT_FOUND"
    PRODUCT_NOT_FOUND = "PRODUCT_NOT_FOUND"
    OUT_OF_STOCK = "OUT_OF_STOCK"
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    # An unexpected, non-business failure after retries ran out (FAILED).
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # A customer's or an admin's cancel (CANCELLED); their words are in `cancel_reason`.
    CANCELLED_BY_CUSTOMER = "CANCELLED_BY_CUSTOMER"
    # A PAID order that was not shipped before the fulfilment deadline (CANCELLED).
    NOT_SHIPPED = "NOT_SHIPPED"
    # The workflow itself was cancelled through Temporal (`temporal workflow cancel`):
    # CANCELLED, its steps undone (refunded and restocked once paid).
    WORKFLOW_CANCELLED = "WORKFLOW_CANCELLED"


# The ApplicationError type of a request (cancel, ship, deliver) the order cannot take in
# its current state; the API answers it with 409 and this code.
INVALID_STATE = "INVALID_STATE"


class NotificationKind(StrEnum):
    ORDER_CONFIRMED = "ORDER_CONFIRMED"
    ORDER_FAILED = "ORDER_FAILED"
    ORDER_CANCELLED = "ORDER_CANCELLED"
    ORDER_SHIPPED = "ORDER_SHIPPED"
    ORDER_DELIVERED = "ORDER_DELIVERED"
    # About the cart, not an order: its notification has no order id.
    CART_REMINDER = "CART_REMINDER"


# Search attributes of PlaceOrder (both Keyword): the Web UI and `temporal workflow list
# --query 'OrderStatus="PAID"'` filter on them. The server must know them before a start.
ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
SEARCH_ATTRIBUTES = (ORDER_STATUS, CUSTOMER_ID)


def initial_stock_key(product_id: str) -> str:
    """The idempotency key of a product's initial stock: one adjustment per product, ever."""
    return f"initial-stock:{product_id}"


# The reason recorded with that adjustment (the stock movements: who, why, when).
INITIAL_STOCK_REASON = "initial stock"


def workflow_id_for(order_id: str) -> str:
    return f"order-{order_id}"


def cancel_workflow_id_for(order_id: str) -> str:
    return f"cancel-{order_id}"


# --- workflow inputs -------------------------------------------------------------------


class OrderItem(BaseModel):
    product_id: str
    quantity: int = Field(ge=1)


class ShippingAddress(BaseModel):
    """Where an order goes. The API validates it (api/models.py); here it only travels."""

    name: str
    line1: str
    line2: str | None = None
    city: str
    postal_code: str
    # ISO 3166-1 alpha-2
    country: str

    def one_line(self) -> str:
        parts = (self.name, self.line1, self.line2, f"{self.postal_code} {self.city}", self.country)
        return ", ".join(p for p in parts if p)


class PlaceOrderInput(BaseModel):
    order_id: str
    user_id: str
    items: list[OrderItem]
    # The payment service's token for the customer's card (PaymentService.TokenizeCard):
    # the card number itself never reaches Temporal.
    card_token: str
    shipping_address: ShippingAddress
    # Seconds a PAID order may wait to be shipped; None uses the worker's default.
    fulfilment_deadline_seconds: int | None = None
    # Set when the workflow continues as new: the order as it stood, to carry on from.
    resume: OrderSnapshot | None = None
    # Continue as new once the history holds this many events (the server also suggests it).
    max_history_events: int = 10_000


# The longest cancel reason an order keeps (its read model column holds this many).
CANCEL_REASON_MAX = 500


class CancelRequest(BaseModel):
    """Input of the `cancel` signal and the `request_cancel` update."""

    reason: str = "customer request"

    @field_validator("reason")
    @classmethod
    def _fit(cls, reason: str) -> str:
        # Cleaned and cut, not refused: a signal cannot be answered, and one that fails to
        # decode is dropped, so the customer's cancel would be lost. Control characters go
        # (a NUL is refused by the notification service and by PostgreSQL, which would
        # stop the cancel halfway); nothing left means the default words.
        spaced = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in reason)
        return " ".join(spaced.split())[:CANCEL_REASON_MAX] or "customer request"


# --- activity inputs and results --------------------------------------------------------


class GetUserInput(BaseModel):
    user_id: str


class UserInfo(BaseModel):
    id: str
    email: str
    name: str


class GetProductInput(BaseModel):
    product_id: str


class ProductInfo(BaseModel):
    id: str
    sku: str
    name: str
    price_cents: int
    active: bool = True


class ReserveStockInput(BaseModel):
    order_id: str
    items: list[OrderItem]


class ReleaseStockInput(BaseModel):
    order_id: str


class ChargeInput(BaseModel):
    order_id: str
    # The customer the card token must belong to.
    user_id: str
    amount_cents: int
    card_token: str
    idempotency_key: str


class RefundInput(BaseModel):
    order_id: str
    idempotency_key: str


class PaymentInfo(BaseModel):
    order_id: str
    status: PaymentStatus
    amount_cents: int = 0
    card_last4: str = ""


class NotifyInput(BaseModel):
    user_id: str
    order_id: str
    kind: NotificationKind
    message: str
    idempotency_key: str


# --- the order as the workflow knows it --------------------------------------------------


class OrderLine(BaseModel):
    product_id: str
    quantity: int
    unit_price_cents: int = 0


class StatusChange(BaseModel):
    status: OrderStatus
    at: datetime


class OrderSnapshot(BaseModel):
    """The `status` query's answer, and what the workflow writes to the read model."""

    order_id: str
    user_id: str
    status: OrderStatus
    items: list[OrderLine]
    total_cents: int = 0
    payment_status: PaymentStatus = PaymentStatus.NONE
    # A code (FailureReason) on FAILED and CANCELLED orders.
    failure_reason: str | None = None
    # The words of whoever cancelled the order (a customer or an admin), as they gave them.
    cancel_reason: str | None = None
    card_last4: str = ""
    # None only for orders placed before addresses were taken.
    shipping_address: ShippingAddress | None = None
    history: list[StatusChange] = Field(default_factory=list)
    # Grows with each change; the read model ignores a write older than what it holds.
    version: int = 0


class CancelOrderInput(BaseModel):
    """Input of the CancelOrder workflow (id `cancel-{order_id}`)."""

    order_id: str
    user_id: str
    # Told to the customer: the canceller's words, or the failure reason's code.
    reason: str
    # The order as it will read once cancelled; CancelOrder writes it to the read model.
    snapshot: OrderSnapshot | None = None


class CancelOrderResult(BaseModel):
    order_id: str
    refunded_cents: int = 0
    payment_status: PaymentStatus = PaymentStatus.NONE


# --- Cart: the customer's cart workflow (workflows/cart.py) ------------------------------

# The most units of one product a cart holds, and the most distinct products (a checkout
# takes at most this many lines).
CART_QUANTITY_MAX = 99
CART_LINES_MAX = 50
# How long a cart stays without a change before it closes itself (emptied).
CART_IDLE_CLOSE_SECONDS = 30 * 24 * 3600


class CartRefusal(StrEnum):
    """The ApplicationError types with which the Cart's validators refuse an update."""

    PRODUCT_NOT_FOUND = FailureReason.PRODUCT_NOT_FOUND
    INVALID_QUANTITY = "INVALID_QUANTITY"
    CART_FULL = "CART_FULL"
    STALE_VERSION = "STALE_VERSION"


def cart_workflow_id_for(user_id: str) -> str:
    return f"cart-{user_id}"


def cart_reminder_key(cart_id: str, version: int) -> str:
    """One reminder per cart (the first run of its chain) and version: a retried or
    replayed activity never notifies twice, a later untouched version does once."""
    return f"cart:{cart_id}:v{version}:{NotificationKind.CART_REMINDER.value}"


class CartLine(BaseModel):
    product_id: str
    quantity: int = Field(ge=1, le=CART_QUANTITY_MAX)
    # The cart's version when this line last changed: a checkout clears only what it read.
    version: int = 0


class CartState(BaseModel):
    """The `cart` query's answer, and what a continued cart carries on with."""

    user_id: str
    items: list[CartLine] = Field(default_factory=list)
    # Grows with each change.
    version: int = 0
    # When the cart last changed (None: never); the reminder and the closing count from it.
    changed_at: datetime | None = None
    # The version whose reminder was sent: one reminder per untouched period.
    reminded_version: int | None = None
    # The order the last checkout from this cart started.
    last_order_id: str | None = None


class CartInput(BaseModel):
    """Input of the Cart workflow (id `cart-{user_id}`); the API passes the settings."""

    user_id: str
    reminder_seconds: int = Field(default=86_400, gt=0)
    idle_close_seconds: int = Field(default=CART_IDLE_CLOSE_SECONDS, gt=0)
    # Continue as new once the history holds this many events (the server also suggests it).
    max_history_events: int = 10_000
    # Set when the cart continues as new: the cart as it stood.
    resume: CartState | None = None


class SetCartItem(BaseModel):
    """Input of the `set_item` update: a product's quantity, 0 removes it.

    The validator cannot look the product up: the API does (ProductService.GetProduct) and
    passes what it found, None for an unknown product."""

    product_id: str
    quantity: int
    product: ProductInfo | None = None


class ClearCart(BaseModel):
    """Input of the `clear` update."""

    # Only the lines changed at or before this version (what the client saw); None: all.
    up_to_version: int | None = None


class CartCheckedOut(BaseModel):
    """Input of the `checked_out` update: an order was started with the cart as read at
    `version`; its lines leave the cart, those changed since stay."""

    order_id: str
    version: int


PlaceOrderInput.model_rebuild()
