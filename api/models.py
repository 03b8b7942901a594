"""Request and response models, one family per entity (`UserCreate`, `UserPublic`, ...)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import email_validator
import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    JsonValue,
    SecretStr,
    StrictBool,
    StringConstraints,
    field_validator,
)

from core.messages import (
    CART_QUANTITY_MAX,
    OrderSnapshot,
    OrderStatus,
    PaymentStatus,
    ShippingAddress,
)

# Each type below documents exactly what it accepts (clients and the fuzzer trust the schema),
# in patterns that every regex engine reads the same way: hence no `\s`, `\w` or `.`.
ID_PATTERN = r"^[A-Za-z0-9_-]+$"
ID_MAX_LENGTH = 64
# Printable ASCII without surrounding spaces: a sku, an Idempotency-Key.
KEY_PATTERN = r"^[!-~](?:[ -~]*[!-~])?$"
# The whitespace Python's str.strip() removes, which the services strip before they refuse a
# blank text; and no NUL, which PostgreSQL cannot store.
_SPACE = r"\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL_PATTERN = r"^[^\x00]*$"
NOT_BLANK_PATTERN = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"

Id = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
# Checked as sent, then stripped: a length limit on the raw text holds for the stripped one.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=NOT_BLANK_PATTERN),
    AfterValidator(str.strip),
]
Category = Annotated[
    str, StringConstraints(max_length=64, pattern=NO_NUL_PATTERN), AfterValidator(str.strip)
]
Description = Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL_PATTERN)]


def _not_a_bool(value: Any) -> Any:
    # JSON's true and false are no numbers (pydantic would read them as 1 and 0); 5.0 is 5.
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    return value


# The bounds first, then the validator: so the schema says minimum and maximum.
NOT_A_BOOL = BeforeValidator(_not_a_bool)
Price = Annotated[
    int,
    Field(ge=1, le=100_000_000_000, description="at least 1: a product is never free"),
    NOT_A_BOOL,
]
LowStockThreshold = Annotated[
    int,
    Field(ge=0, le=10**9, description="available stock below this is low (0: never)"),
    NOT_A_BOOL,
]
StockDelta = Annotated[
    int,
    Field(ge=-(10**9), le=10**9, description="units to add (negative: to remove)", examples=[12]),
    NOT_A_BOOL,
]


# --- errors ---------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(examples=["NOT_FOUND"])
    message: str = Field(examples=["order 0b1c... not found"])
    details: Any | None = None


class ErrorResponse(BaseModel):
    """Every non-2xx answer has this shape."""

    model_config = ConfigDict(extra="forbid")  # documented: nothing beside `error`
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` documenting the error model for the given statuses."""
    text = {
        401: "No valid bearer token (none, malformed, forged or expired)",
        403: "Only an admin may do this",
        404: "Not found (also what belongs to another customer)",
        409: "Conflict",
        422: "Invalid request: a parameter, a header or the body (also one that is not JSON)",
        502: "A backend (Temporal, gRPC services) failed unexpectedly",
        429: "Too many requests: try again after `Retry-After` seconds",
        503: "A backend (Temporal, gRPC services, database) is unavailable; try again shortly",
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


# email-validator refuses addresses at special-use domains (.test, .local, ...): documented
# as what an address must not end in, letter by letter in either case (ECMA regexes, which
# JSON Schema uses, have no flag for that).
_SPECIAL_USE_DOMAIN = "|".join(
    "".join(f"[{c.upper()}{c}]" if c.isalpha() else re.escape(c) for c in name)
    for name in email_validator.SPECIAL_USE_DOMAIN_NAMES
)
SPECIAL_USE_EMAIL_PATTERN = rf"[@.](?:{_SPECIAL_USE_DOMAIN})[{_SPACE}]*$"


class UserCreate(BaseModel):
    email: EmailStr = Field(
        examples=["ada@example.com"],
        description="An address as email-validator accepts it: surrounding whitespace is "
        "ignored; no special-use domain (such as .test), IP address or quoted local part.",
        json_schema_extra={"not": {"pattern": SPECIAL_USE_EMAIL_PATTERN}},
    )
    name: Name
    # A SecretStr: never in a repr, a log line or an error's details.
    password: SecretStr = Field(min_length=8, max_length=128, examples=["correct horse battery"])


class UserPublic(BaseModel):
    id: str
    email: str
    name: str
    role: str = Field(examples=["customer"], description="customer | admin")


class TokenPublic(BaseModel):
    """An OAuth2 bearer token (RFC 6749, section 5.1)."""

    access_token: str
    token_type: str = Field(examples=["bearer"])
    expires_in: int = Field(description="seconds")


class NotificationPublic(BaseModel):
    kind: str = Field(examples=["ORDER_CONFIRMED"])
    order_id: str
    message: str
    created_at: str = Field(description="RFC 3339, UTC")


# --- products -------------------------------------------------------------------------


class ProductCreate(BaseModel):
    sku: Annotated[str, StringConstraints(max_length=64, pattern=KEY_PATTERN)] = Field(
        description="printable ASCII, no surrounding spaces", examples=["COF-ESP-250"]
    )
    name: Name
    description: Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL_PATTERN)] = ""
    price_cents: int = Field(
        ge=1, le=100_000_000_000, description="at least 1: a product is never free"
    )
    stock: int = Field(default=0, ge=0, le=10**9)
    category: Category = ""
    low_stock_threshold: LowStockThreshold = 5


class ProductPublic(BaseModel):
    id: str
    sku: str
    name: str
    description: str
    price_cents: int
    stock: int = Field(description="units available for sale now")
    category: str
    active: bool
    low_stock_threshold: int = Field(
        description="available stock below this raises a low-stock event (0: never)"
    )
    low_stock: bool = Field(description="stock is below low_stock_threshold")


# --- catalogue (the product models above and these: api/routes/products.py) -------------


class ProductUpdate(BaseModel):
    """Only the fields that are sent change (a null is as if not sent)."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    description: Description | None = None
    price_cents: Price | None = None
    category: Category | None = None
    active: StrictBool | None = None
    low_stock_threshold: LowStockThreshold | None = None


class StockAdjustmentCreate(BaseModel):
    delta: StockDelta
    reason: Name = Field(examples=["delivery from the roaster"])


class StockMovementPublic(BaseModel):
    delta: int
    reason: str
    actor: str = Field(description='"user:{id}" for an admin, "order:{id}", "import", ...')
    at: str = Field(description="RFC 3339, UTC")


class CategoryPublic(BaseModel):
    name: str
    products: int = Field(description="active products in the category")


class ImportFailurePublic(BaseModel):
    line: int = Field(description="the CSV line (the header is line 1)")
    sku: str
    error: str


class ImportResultPublic(BaseModel):
    created: int
    updated: int = Field(description="rows whose sku existed and whose fields changed")
    unchanged: int = Field(description="rows whose sku existed with the same fields")
    failed: list[ImportFailurePublic]


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


# ISO 3166-1 alpha-2, as an enum in the schema: a pattern would promise codes that are none.
COUNTRY_CODES = frozenset(c.alpha_2 for c in pycountry.countries)
_COUNTRY_ENUM: list[JsonValue] = [*sorted(COUNTRY_CODES)]
AddressLine = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=NOT_BLANK_PATTERN),
    AfterValidator(str.strip),
]


def _country(code: str) -> str:
    if code not in COUNTRY_CODES:
        raise ValueError("country must be an ISO 3166-1 alpha-2 code such as DE or US")
    return code


class ShippingAddressCreate(BaseModel):
    name: AddressLine = Field(examples=["Ada Lovelace"])
    line1: AddressLine = Field(examples=["12 St James's Square"])
    line2: AddressLine | None = None
    city: AddressLine = Field(examples=["London"])
    postal_code: Annotated[
        str,
        StringConstraints(min_length=1, max_length=20, pattern=NOT_BLANK_PATTERN),
        AfterValidator(str.strip),
    ] = Field(examples=["SW1Y 4JH"])
    country: Annotated[str, AfterValidator(_country)] = Field(
        description="ISO 3166-1 alpha-2, upper case",
        examples=["GB"],
        json_schema_extra={"enum": _COUNTRY_ENUM},
    )

    def to_message(self) -> ShippingAddress:
        return ShippingAddress.model_validate(self.model_dump())


class CheckoutCreate(BaseModel):
    user_id: Id | None = Field(default=None, description="optional: the caller's own id")
    items: list[CheckoutItem] = Field(min_length=1, max_length=50)
    payment: PaymentDetails
    shipping_address: ShippingAddressCreate


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
    shipping_address: ShippingAddress | None = Field(
        description="null only for orders placed before addresses were taken"
    )
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
            shipping_address=snap.shipping_address,
            history=[StatusChangePublic(status=h.status, at=h.at) for h in snap.history],
        )


class CancelCreate(BaseModel):
    reason: Name = "customer request"


class LedgerEntryPublic(BaseModel):
    type: str = Field(examples=["CAPTURE"], description="CAPTURE | REFUND | DECLINE")
    amount_cents: int
    idempotency_key: str
    created_at: str = Field(description="RFC 3339, UTC")


# --- cart -----------------------------------------------------------------------------


def _not_bool(value: Any) -> Any:
    # JSON true and false are no quantity (pydantic would read them as 1 and 0); 2.0 is one.
    if isinstance(value, bool):
        raise ValueError("quantity must be an integer")
    return value


class CartItemUpdate(BaseModel):
    quantity: Annotated[int, BeforeValidator(_not_bool)] = Field(
        ge=0, le=CART_QUANTITY_MAX, description="0 removes the product"
    )


class CartLinePublic(BaseModel):
    product_id: str
    name: str = Field(description="empty for a product that no longer exists")
    quantity: int
    unit_price_cents: int = Field(description="the current price")
    active: bool = Field(description="false: no longer sold; a checkout refuses the cart")
    stock: int = Field(description="units available for sale now")


class CartPublic(BaseModel):
    items: list[CartLinePublic]
    total_cents: int = Field(description="at current prices, of the products still sold")
    version: int = Field(description="grows with each change")


class CartCheckoutCreate(BaseModel):
    payment: PaymentDetails
    shipping_address: ShippingAddressCreate
