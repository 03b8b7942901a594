"""A small hierarchy of domain errors, translated at each boundary.

servicer: DomainError -> gRPC status (+ trailing metadata `error-reason`)
activity: gRPC status -> ApplicationError (business reasons non-retryable)
API:      gRPC status / workflow state -> HTTP status with {"error": {"code", "message"}}
"""

from __future__ import annotations

import grpc

REASON_METADATA_KEY = "error-reason"


class DomainError(Exception):
    """Base of the errors a service reports to its caller."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    default_reason = "ERROR"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Unavailable(DomainError):
    """Transient: the caller may retry."""

    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


async def abort_with(context: grpc.aio.ServicerContext, err: DomainError) -> None:
    """Ends an RPC with the error's status code, message and machine-readable reason."""
    await context.abort(
        err.code, err.message, trailing_metadata=((REASON_METADATA_KEY, err.reason),)
    )


def reason_of(err: grpc.aio.AioRpcError) -> str | None:
    """The `error-reason` a servicer attached to a failed call, if any."""
    for key, value in err.trailing_metadata() or ():
        if key == REASON_METADATA_KEY:
            return value if isinstance(value, str) else value.decode()
    return None
