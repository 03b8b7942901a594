from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReservationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVATION_STATUS_UNSPECIFIED: _ClassVar[ReservationStatus]
    RESERVATION_STATUS_RESERVED: _ClassVar[ReservationStatus]
    RESERVATION_STATUS_RELEASED: _ClassVar[ReservationStatus]
RESERVATION_STATUS_UNSPECIFIED: ReservationStatus
RESERVATION_STATUS_RESERVED: ReservationStatus
RESERVATION_STATUS_RELEASED: ReservationStatus

class StockLevel(_message.Message):
    __slots__ = ("product_id", "available", "low_stock_threshold", "low_stock")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    LOW_STOCK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LOW_STOCK_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    available: int
    low_stock_threshold: int
    low_stock: bool
    def __init__(self, product_id: _Optional[str] = ..., available: _Optional[int] = ..., low_stock_threshold: _Optional[int] = ..., low_stock: _Optional[bool] = ...) -> None: ...

class AdjustStockRequest(_message.Message):
    __slots__ = ("product_id", "delta", "idempotency_key", "reason", "actor")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    delta: int
    idempotency_key: str
    reason: str
    actor: str
    def __init__(self, product_id: _Optional[str] = ..., delta: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class SetLowStockThresholdRequest(_message.Message):
    __slots__ = ("product_id", "low_stock_threshold")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    LOW_STOCK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    low_stock_threshold: int
    def __init__(self, product_id: _Optional[str] = ..., low_stock_threshold: _Optional[int] = ...) -> None: ...

class ListStockMovementsRequest(_message.Message):
    __slots__ = ("product_id", "limit")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    limit: int
    def __init__(self, product_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class StockMovement(_message.Message):
    __slots__ = ("delta", "reason", "actor", "at")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    delta: int
    reason: str
    actor: str
    at: str
    def __init__(self, delta: _Optional[int] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., at: _Optional[str] = ...) -> None: ...

class ListStockMovementsResponse(_message.Message):
    __slots__ = ("movements",)
    MOVEMENTS_FIELD_NUMBER: _ClassVar[int]
    movements: _containers.RepeatedCompositeFieldContainer[StockMovement]
    def __init__(self, movements: _Optional[_Iterable[_Union[StockMovement, _Mapping]]] = ...) -> None: ...

class GetStockRequest(_message.Message):
    __slots__ = ("product_id",)
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    def __init__(self, product_id: _Optional[str] = ...) -> None: ...

class ListStockRequest(_message.Message):
    __slots__ = ("product_ids",)
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, product_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListStockResponse(_message.Message):
    __slots__ = ("levels",)
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    levels: _containers.RepeatedCompositeFieldContainer[StockLevel]
    def __init__(self, levels: _Optional[_Iterable[_Union[StockLevel, _Mapping]]] = ...) -> None: ...

class ReservationLine(_message.Message):
    __slots__ = ("product_id", "quantity")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    quantity: int
    def __init__(self, product_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("order_id", "status", "lines")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    status: ReservationStatus
    lines: _containers.RepeatedCompositeFieldContainer[ReservationLine]
    def __init__(self, order_id: _Optional[str] = ..., status: _Optional[_Union[ReservationStatus, str]] = ..., lines: _Optional[_Iterable[_Union[ReservationLine, _Mapping]]] = ...) -> None: ...

class ReserveStockRequest(_message.Message):
    __slots__ = ("order_id", "lines")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    lines: _containers.RepeatedCompositeFieldContainer[ReservationLine]
    def __init__(self, order_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[ReservationLine, _Mapping]]] = ...) -> None: ...

class ReleaseStockRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class GetReservationRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class WatchStockRequest(_message.Message):
    __slots__ = ("product_ids",)
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, product_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class StockAdjustment(_message.Message):
    __slots__ = ("product_id", "delta", "idempotency_key")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    delta: int
    idempotency_key: str
    def __init__(self, product_id: _Optional[str] = ..., delta: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class StockAdjustmentAck(_message.Message):
    __slots__ = ("idempotency_key", "product_id", "ok", "available", "error", "reason")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    product_id: str
    ok: bool
    available: int
    error: str
    reason: str
    def __init__(self, idempotency_key: _Optional[str] = ..., product_id: _Optional[str] = ..., ok: _Optional[bool] = ..., available: _Optional[int] = ..., error: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
