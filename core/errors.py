"""The reasons a service gives for refusing a call, and a small hierarchy of domain errors.

An error keeps its reason across every boundary:
servicer: DomainError -> gRPC status + trailing metadata `error-reason` (`abort_with`)
activity: gRPC status + reason -> ApplicationError(type=reason) (`activities/rpc.py`)
API:      gRPC status + reason -> HTTP status with {"error": {"code", "message"}}
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, cast

import grpc

from core.messages import FailureReason

REASON_METADATA_KEY = "error-reason"


class Reason(StrEnum):
    """Every machine-readable reason a service attaches to an error, defined once.

    An error without one of these carries its status code's name (`NOT_FOUND`, ...).
    """

    # Business outcomes of a checkout: the order ends FAILED with the reason as it is.
    USER_NOT_FOUND = FailureReason.USER_NOT_FOUND
    PRODUCT_NOT_FOUND = FailureReason.PRODUCT_NOT_FOUND
    OUT_OF_STOCK = FailureReason.OUT_OF_STOCK
    PAYMENT_DECLINED = FailureReason.PAYMENT_DECLINED
    # Refusals that asking again will not change.
    INVALID_EMAIL = "INVALID_EMAIL"
    INVALID_CARD = "INVALID_CARD"
    # A charge with a card token that is unknown or another customer's.
    CARD_TOKEN_INVALID = "CARD_TOKEN_INVALID"
    EMAIL_TAKEN = "EMAIL_TAKEN"
    USER_ID_TAKEN = "USER_ID_TAKEN"
    PRODUCT_ID_TAKEN = "PRODUCT_ID_TAKEN"
    SKU_TAKEN = "SKU_TAKEN"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    # An unknown email or a wrong password: one reason for both, so emails cannot be probed.
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    # A charge after the order's payment was refunded or voided (a refund came first).
    PAYMENT_VOIDED = "PAYMENT_VOIDED"
    # A reserve after the order's stock was released (a release came first).
    RESERVATION_RELEASED = "RESERVATION_RELEASED"
    INSUFFICIENT_STOCK = "INSUFFICIENT_STOCK"
    STOCK_NOT_FOUND = "STOCK_NOT_FOUND"
    RESERVATION_NOT_FOUND = "RESERVATION_NOT_FOUND"
    # Transient: the same call may succeed later.
    PROCESSING_ERROR = "PROCESSING_ERROR"
    CONFLICT = "CONFLICT"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    INVENTORY_UNAVAILABLE = "INVENTORY_UNAVAILABLE"
    WATCHER_TOO_SLOW = "WATCHER_TOO_SLOW"
    INJECTED_FAULT = "INJECTED_FAULT"


class DomainError(Exception):
    """Base of the errors a service reports to its caller."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # A str, not only a Reason: a reason read back from another service passes through.
        self.reason = reason or self.code.name


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(DomainError):
    """Transient: the caller may retry."""

    code = grpc.StatusCode.UNAVAILABLE


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], err: DomainError) -> None:
    """Ends an RPC with the error's status code, message and machine-readable reason."""
    await context.abort(
        err.code, err.message, trailing_metadata=((REASON_METADATA_KEY, str(err.reason)),)
    )


def reason_of(err: grpc.aio.AioRpcError) -> str | None:
    """The reason a servicer attached to a failed call, if any (transport errors have none)."""
    # A grpc.aio.Metadata at run time; grpc-stubs types it as the sync error's tuple.
    metadata = cast(grpc.aio.Metadata | None, err.trailing_metadata())
    value = metadata.get(REASON_METADATA_KEY) if metadata else None
    return value.decode() if isinstance(value, bytes) else value
