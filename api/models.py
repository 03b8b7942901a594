"""Request and response models, one family per entity (`UserCreate`, `UserPublic`, ...)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, field_validator

from core.messages import OrderSnapshot, OrderStatus, PaymentStatus

ID_PATTERN = r"^[A-Za-z0-9_-]+$"
ID_MAX_LENGTH = 64

Id = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


# --- errors ---------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(examples=["NOT_FOUND"])
    message: str = Field(examples=["order 0b1c... not found"])
    details: Any | None = None


class ErrorResponse(BaseModel):
    """Every non-2xx answer has this shape."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` documenting the error model for the given statuses."""
    text = {
        404: "Not found",
        409: "Conflict",
        422: "Invalid request",
        503: "A backend (Temporal, gRPC services, database) is unavailable",
    }
    return {s: {"model": ErrorResponse, "description": text.get(s, "Error")} for s in statuses}


# --- health ---------------------------------------------------------------------------


class HealthPublic(BaseModel):
    status: str = Field(examples=["ok"])
    temporal: str = Field(examples=["ok"])
    services: str = Field(examples=["ok"])
    database: str = Field(examples=["ok"])
    # Present on 503, so the answer also has the API's error shape.
    error: ErrorDetail | None = None


# --- users ----------------------------------------------------------------------------


class UserCreate(BaseModel):
    email: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=3, max_length=254)
    ] = Field(
        examples=["ada@example.com"],
        # What the validator below accepts (around the whitespace it strips), for the schema.
        json_schema_extra={"pattern": r"^\s*[^@\s]+@\S+\s*$"},
    )
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        local, at, domain = v.partition("@")
        if not at or not local or not domain or any(c.isspace() for c in v):
            raise ValueError("must be an email address (name@domain)")
        return v


class UserPublic(BaseModel):
    id: str
    email: str
    name: str


class NotificationPublic(BaseModel):
    kind: str = Field(examples=["ORDER_CONFIRMED"])
    order_id: str
    message: str
    created_at: str = Field(description="RFC 3339, UTC")


# --- products -------------------------------------------------------------------------


class ProductCreate(BaseModel):
    sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    price_cents: int = Field(
        ge=1, le=100_000_000_000, description="at least 1: a product is never free"
    )
    stock: int = Field(default=0, ge=0, le=10**9)
    category: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] = ""


class ProductPublic(BaseModel):
    id: str
    sku: str
    name: str
    description: str
    price_cents: int
    stock: int = Field(description="units available for sale now")
    category: str
    active: bool


# --- checkout -------------------------------------------------------------------------


class CheckoutItem(BaseModel):
    product_id: Id
    quantity: int = Field(ge=1, le=10_000)


class PaymentDetails(BaseModel):
    card_number: str = Field(
        description="12-19 digits; spaces are ignored",
        examples=["4242 4242 4242 4242"],
        # What the validator below accepts, for the OpenAPI schema and its clients.
        json_schema_extra={"pattern": r"^ *(?:[0-9] *){12,19}$"},
    )

    @field_validator("card_number")
    @classmethod
    def _card(cls, v: str) -> str:
        digits = v.replace(" ", "")
        if not re.fullmatch(r"[0-9]{12,19}", digits):
            # Never echo the value: it may be a real card number.
            raise ValueError("card_number must be 12 to 19 digits")
        return digits

    def __repr__(self) -> str:
        return f"PaymentDetails(card_number='****{self.card_number[-4:]}')"

    __str__ = __repr__


class CheckoutCreate(BaseModel):
    user_id: Id
    items: list[CheckoutItem] = Field(min_length=1, max_length=50)
    payment: PaymentDetails


class CheckoutPublic(BaseModel):
    order_id: str
    workflow_id: str
    status: OrderStatus


# --- orders ---------------------------------------------------------------------------


class OrderLinePublic(BaseModel):
    product_id: str
    quantity: int
    unit_price_cents: int


class StatusChangePublic(BaseModel):
    status: OrderStatus
    at: datetime


class OrderPublic(BaseModel):
    order_id: str
    user_id: str
    status: OrderStatus
    items: list[OrderLinePublic]
    total_cents: int
    payment_status: PaymentStatus
    failure_reason: str | None
    cancel_reason: str | None
    history: list[StatusChangePublic]

    @classmethod
    def from_snapshot(cls, snap: OrderSnapshot) -> OrderPublic:
        return cls(
            order_id=snap.order_id,
            user_id=snap.user_id,
            status=snap.status,
            items=[OrderLinePublic(**li.model_dump()) for li in snap.items],
            total_cents=snap.total_cents,
            payment_status=snap.payment_status,
            failure_reason=snap.failure_reason,
            cancel_reason=snap.cancel_reason,
            history=[StatusChangePublic(status=h.status, at=h.at) for h in snap.history],
        )


class CancelCreate(BaseModel):
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
    ] = "customer request"


class LedgerEntryPublic(BaseModel):
    type: str = Field(examples=["CAPTURE"], description="CAPTURE | REFUND | DECLINE")
    amount_cents: int
    idempotency_key: str
    created_at: str = Field(description="RFC 3339, UTC")
