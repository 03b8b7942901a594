from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PaymentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_STATUS_UNSPECIFIED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_NONE: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_CAPTURED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_DECLINED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_REFUNDED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_VOIDED: _ClassVar[PaymentStatus]

class LedgerEntryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEDGER_ENTRY_TYPE_UNSPECIFIED: _ClassVar[LedgerEntryType]
    LEDGER_ENTRY_TYPE_CAPTURE: _ClassVar[LedgerEntryType]
    LEDGER_ENTRY_TYPE_REFUND: _ClassVar[LedgerEntryType]
    LEDGER_ENTRY_TYPE_DECLINE: _ClassVar[LedgerEntryType]
PAYMENT_STATUS_UNSPECIFIED: PaymentStatus
PAYMENT_STATUS_NONE: PaymentStatus
PAYMENT_STATUS_CAPTURED: PaymentStatus
PAYMENT_STATUS_DECLINED: PaymentStatus
PAYMENT_STATUS_REFUNDED: PaymentStatus
PAYMENT_STATUS_VOIDED: PaymentStatus
LEDGER_ENTRY_TYPE_UNSPECIFIED: LedgerEntryType
LEDGER_ENTRY_TYPE_CAPTURE: LedgerEntryType
LEDGER_ENTRY_TYPE_REFUND: LedgerEntryType
LEDGER_ENTRY_TYPE_DECLINE: LedgerEntryType

class PaymentResult(_message.Message):
    __slots__ = ("order_id", "status", "amount_cents", "card_last4")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    CARD_LAST4_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    status: PaymentStatus
    amount_cents: int
    card_last4: str
    def __init__(self, order_id: _Optional[str] = ..., status: _Optional[_Union[PaymentStatus, str]] = ..., amount_cents: _Optional[int] = ..., card_last4: _Optional[str] = ...) -> None: ...

class TokenizeCardRequest(_message.Message):
    __slots__ = ("user_id", "card_number")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NUMBER_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    card_number: str
    def __init__(self, user_id: _Optional[str] = ..., card_number: _Optional[str] = ...) -> None: ...

class CardToken(_message.Message):
    __slots__ = ("token", "brand", "last4")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    LAST4_FIELD_NUMBER: _ClassVar[int]
    token: str
    brand: str
    last4: str
    def __init__(self, token: _Optional[str] = ..., brand: _Optional[str] = ..., last4: _Optional[str] = ...) -> None: ...

class ChargeRequest(_message.Message):
    __slots__ = ("order_id", "amount_cents", "idempotency_key", "user_id", "card_token")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_TOKEN_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    amount_cents: int
    idempotency_key: str
    user_id: str
    card_token: str
    def __init__(self, order_id: _Optional[str] = ..., amount_cents: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., user_id: _Optional[str] = ..., card_token: _Optional[str] = ...) -> None: ...

class RefundRequest(_message.Message):
    __slots__ = ("order_id", "idempotency_key")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    idempotency_key: str
    def __init__(self, order_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class GetPaymentRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("order_id", "type", "amount_cents", "idempotency_key", "created_at")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    type: LedgerEntryType
    amount_cents: int
    idempotency_key: str
    created_at: str
    def __init__(self, order_id: _Optional[str] = ..., type: _Optional[_Union[LedgerEntryType, str]] = ..., amount_cents: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., created_at: _Optional[str] = ...) -> None: ...

class ListLedgerRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class ListLedgerResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ...) -> None: ...
