"""gRPC status -> ApplicationError for activities.

Business outcomes (a user that does not exist, a declined card) become non-retryable
`ApplicationError`s whose `type` is the contract's failure reason; transport errors and
transient provider errors stay retryable, so Temporal retries them with backoff.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from temporalio.exceptions import ApplicationError

from core.errors import reason_of

# A request the service rejects as malformed, or as conflicting with what it already holds
# (an idempotency key reused for another request), will be rejected again: do not retry.
_NEVER_RETRY = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS}


def translate(
    err: grpc.aio.AioRpcError, business: Mapping[grpc.StatusCode, str]
) -> ApplicationError:
    """Maps a failed call to an ApplicationError; `business` maps codes to failure reasons."""
    code = err.code()
    details = err.details() or code.name
    if code in business:
        reason = business[code]
        return ApplicationError(details, type=reason, non_retryable=True)
    reason = reason_of(err) or code.name
    return ApplicationError(details, type=reason, non_retryable=code in _NEVER_RETRY)
