"""One error shape for every answer that is not a success: `{"error": {"code", "message"}}`.

gRPC status codes and Temporal RPC failures are translated here, at the HTTP boundary, so
route code can let them propagate. Nothing here ever puts a stack trace or a request body
(which may hold a card number) in a response or a log line.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from core.errors import reason_of

log = logging.getLogger("api")


class ApiError(Exception):
    """An HTTP error with the contract's shape; raise it from routes and dependencies."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} {ident} not found")


def temporal_unavailable(detail: str = "") -> ApiError:
    msg = "Temporal is unavailable; try again shortly"
    return ApiError(503, "TEMPORAL_UNAVAILABLE", f"{msg} ({detail})" if detail else msg)


def database_unavailable() -> ApiError:
    return ApiError(503, "DATABASE_UNAVAILABLE", "the database is unavailable; try again shortly")


# The database is down, unreachable, locked for too long or out of pooled connections:
# a condition to retry, not a bug. (Other database errors stay 500s.)
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeoutError)


def error_body(code: str, message: str, details: Any | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        err["details"] = details
    return {"error": err}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


# What a failed gRPC call means over HTTP, keyed by the reason the service attached
# (core.errors): (HTTP status, error code). A DomainError's default reason is its status
# code's name, so a reason not listed here falls back to its status code's entry, as does a
# call that failed with no reason at all (the channel's own UNAVAILABLE, DEADLINE_EXCEEDED).
# Anything else is a 502. Every 404 has the code NOT_FOUND; its message says what is missing.
_GRPC_REASONS: dict[str, tuple[int, str]] = {
    "NOT_FOUND": (404, "NOT_FOUND"),
    "USER_NOT_FOUND": (404, "NOT_FOUND"),
    "PRODUCT_NOT_FOUND": (404, "NOT_FOUND"),
    "STOCK_NOT_FOUND": (404, "NOT_FOUND"),
    "ALREADY_EXISTS": (409, "ALREADY_EXISTS"),
    "EMAIL_TAKEN": (409, "EMAIL_TAKEN"),
    "SKU_TAKEN": (409, "SKU_TAKEN"),
    # The id a create derives from its Idempotency-Key belongs to another user or product.
    "USER_ID_TAKEN": (409, "IDEMPOTENCY_KEY_REUSED"),
    "PRODUCT_ID_TAKEN": (409, "IDEMPOTENCY_KEY_REUSED"),
    "FAILED_PRECONDITION": (409, "FAILED_PRECONDITION"),
    "INSUFFICIENT_STOCK": (409, "INSUFFICIENT_STOCK"),
    "INVALID_ARGUMENT": (422, "VALIDATION_ERROR"),
    "OUT_OF_RANGE": (422, "VALIDATION_ERROR"),
    "UNAVAILABLE": (503, "SERVICE_UNAVAILABLE"),
    "DEADLINE_EXCEEDED": (503, "SERVICE_UNAVAILABLE"),
    "RESOURCE_EXHAUSTED": (503, "SERVICE_UNAVAILABLE"),
}

_TEMPORAL_TO_HTTP: dict[RPCStatusCode, tuple[int, str]] = {
    RPCStatusCode.NOT_FOUND: (404, "NOT_FOUND"),
    RPCStatusCode.UNAVAILABLE: (503, "TEMPORAL_UNAVAILABLE"),
    RPCStatusCode.DEADLINE_EXCEEDED: (503, "TEMPORAL_UNAVAILABLE"),
    RPCStatusCode.RESOURCE_EXHAUSTED: (503, "TEMPORAL_UNAVAILABLE"),
    RPCStatusCode.CANCELLED: (503, "TEMPORAL_UNAVAILABLE"),
}


def from_grpc(err: grpc.aio.AioRpcError) -> ApiError:
    by_code = err.code().name
    known = _GRPC_REASONS.get(reason_of(err) or by_code) or _GRPC_REASONS.get(by_code)
    status, code = known or (502, "UPSTREAM_ERROR")
    if status == 503:
        return ApiError(status, code, "a backend service is unavailable; try again shortly")
    if status == 502:
        log.warning("gRPC call failed: %s %s", by_code, err.details())
        return ApiError(status, code, "a backend service failed")
    return ApiError(status, code, err.details() or code)


def from_temporal(err: RPCError) -> ApiError:
    status, code = _TEMPORAL_TO_HTTP.get(err.status, (502, "TEMPORAL_ERROR"))
    if status == 503:
        return temporal_unavailable(err.status.name)
    if status == 502:
        log.warning("Temporal call failed: %s %s", err.status.name, err.message)
        return ApiError(status, code, "the workflow service failed")
    return ApiError(status, code, err.message)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Without "input": the offending value may be a card number.
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]


def _documented_methods(req: Request) -> list[str]:
    """The methods the schema documents for the path of the route that matched the request's
    path (FastAPI's 405 names only that route's: GET for GET /products, not its POST)."""
    path = getattr(req.scope.get("route"), "path", None)
    return sorted(method.upper() for method in req.app.openapi()["paths"].get(path, {}))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(
            422, "VALIDATION_ERROR", "the request is invalid", _validation_details(exc)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot read as text (not UTF-8); a body that is
            # not JSON is already a 422 (`json_invalid`): one status for both.
            detail = {"loc": ["body"], "msg": str(exc.detail), "type": "json_invalid"}
            return error_response(422, "VALIDATION_ERROR", "the request is invalid", [detail])
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 401: "UNAUTHORIZED"}
        code = codes.get(exc.status_code, "HTTP_ERROR")
        resp = error_response(exc.status_code, code, str(exc.detail))
        if exc.headers:
            resp.headers.update(exc.headers)
        if exc.status_code == 405 and (documented := _documented_methods(req)):
            resp.headers["Allow"] = ", ".join(documented)
        return resp

    @app.exception_handler(grpc.aio.AioRpcError)
    async def _grpc(_req: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
        err = from_grpc(exc)
        return error_response(err.status, err.code, err.message)

    @app.exception_handler(RPCError)
    async def _temporal(_req: Request, exc: RPCError) -> JSONResponse:
        err = from_temporal(exc)
        return error_response(err.status, err.code, err.message)

    async def _database(_req: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc).__name__)
        err = database_unavailable()
        return error_response(err.status, err.code, err.message)

    for kind in DATABASE_DOWN:
        app.add_exception_handler(kind, _database)

    @app.exception_handler(Exception)
    async def _unexpected(req: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s on %s %s", type(exc).__name__, req.method, req.url.path)
        return error_response(500, "INTERNAL_ERROR", "an unexpected error occurred")
