"""How activities call the services: each call's deadline, and its failure translated.

A failed call becomes an ApplicationError whose `type` is the reason the service attached,
passed straight through, so the workflow sees USER_NOT_FOUND, OUT_OF_STOCK,
PAYMENT_DECLINED... exactly as the service said it. Whether Temporal retries depends only on
the status code: a refusal is final, the rest is transient.
"""

from __future__ import annotations

import grpc
from temporalio.exceptions import ApplicationError

from core.errors import reason_of

# Seconds each gRPC call may take; a slower one fails DEADLINE_EXCEEDED and is retried.
RPC_TIMEOUT = 5.0

# The codes of the DomainErrors with which a service refuses a request (bad input, no such
# thing, a business rule): the same request would be refused again. Any other code
# (UNAVAILABLE, DEADLINE_EXCEEDED, UNIMPLEMENTED during a deploy, ...) may pass on a later
# attempt, so Temporal retries it with backoff.
_REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


def to_application_error(err: grpc.aio.AioRpcError) -> ApplicationError:
    """The failed call as an ApplicationError whose type is the service's reason."""
    code = err.code()
    reason = reason_of(err) or code.name
    return ApplicationError(err.details() or reason, type=reason, non_retryable=code in _REFUSALS)
