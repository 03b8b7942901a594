"""`POST /encode` and `POST /decode` as Temporal's codec-server protocol defines them.

Bodies are `Payloads` in protobuf's JSON form (base64 `data` and metadata values). The
routes also answer under a namespace segment (`/{namespace}/decode`) because the protocol
looks only at the last part of the path and the CLI can template the namespace into it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.api.common.v1 import Payload, Payloads

from core.codec import EncryptionCodec, PayloadKeyError, parse_payload_keys
from core.config import Settings
from core.secrets import resolved_jwt_secret, resolved_payload_keys
from core.tokens import InvalidToken, read_access_token

Transform = Callable[[Iterable[Payload]], Awaitable[list[Payload]]]


class CodecError(Exception):
    """An answer other than 200, in the API's error shape `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(settings: Settings) -> FastAPI:
    """The codec server for `settings`: its keys, namespace, CORS origins and auth mode."""
    codec = EncryptionCodec(parse_payload_keys(resolved_payload_keys(settings)))
    jwt_secret = resolved_jwt_secret(settings)

    def authorize(authorization: Annotated[str | None, Header()] = None) -> None:
        """CODEC_AUTH=optional: a token, when sent, must be an admin's; required: always."""
        if authorization is None:
            if settings.codec_auth == "required":
                raise CodecError(401, "UNAUTHENTICATED", "an admin's bearer token is required")
            return
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise CodecError(401, "UNAUTHENTICATED", "expected `Authorization: Bearer <token>`")
        try:
            claims = read_access_token(jwt_secret, token.strip())
        except InvalidToken as err:
            raise CodecError(401, "UNAUTHENTICATED", f"invalid token: {err}") from None
        if not claims.is_admin:
            raise CodecError(403, "FORBIDDEN", "only an admin may use the codec server")

    def check_namespace(namespace: str | None) -> None:
        # The keys are this namespace's: encoding for another would give its workers
        # payloads they cannot read.
        if namespace and namespace != settings.temporal_namespace:
            raise CodecError(
                404, "NOT_FOUND", f"this codec serves namespace {settings.temporal_namespace!r}"
            )

    async def apply(transform: Transform, request: Request, namespace: str | None) -> JSONResponse:
        check_namespace(namespace or request.headers.get("x-namespace"))
        try:
            payloads = json_format.Parse(await request.body(), Payloads())
        except (json_format.ParseError, UnicodeDecodeError) as err:
            raise CodecError(400, "INVALID_PAYLOADS", f"expected Payloads as JSON: {err}") from None
        try:
            result = await transform(payloads.payloads)
        except PayloadKeyError as err:
            raise CodecError(400, "UNDECODABLE_PAYLOAD", str(err)) from None
        return JSONResponse({"payloads": [json_format.MessageToDict(p) for p in result]})

    app = FastAPI(
        title="Payload codec server",
        summary="Encrypts and decrypts the shop's Temporal payloads for the Web UI and the CLI.",
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.codec_cors_origins,
        allow_methods=["POST"],
        allow_headers=["Authorization", "Content-Type", "X-Namespace"],
    )

    @app.exception_handler(CodecError)
    async def codec_error(request: Request, err: CodecError) -> JSONResponse:
        return _error(err.status, err.code, err.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return _error(err.status_code, "HTTP_ERROR", str(err.detail))

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Readiness, without a token (`make run` waits for it)."""
        return {"status": "ok"}

    router = APIRouter(dependencies=[Depends(authorize)])

    @router.post("/encode")
    async def encode(request: Request) -> JSONResponse:
        """Encrypts payloads with the current key (for input typed in the Web UI or CLI)."""
        return await apply(codec.encode, request, None)

    @router.post("/decode")
    async def decode(request: Request) -> JSONResponse:
        """Decrypts the shop's payloads; others come back as they are."""
        return await apply(codec.decode, request, None)

    @router.post("/{namespace}/encode", include_in_schema=False)
    async def encode_in(namespace: str, request: Request) -> JSONResponse:
        return await apply(codec.encode, request, namespace)

    @router.post("/{namespace}/decode", include_in_schema=False)
    async def decode_in(namespace: str, request: Request) -> JSONResponse:
        return await apply(codec.decode, request, namespace)

    app.include_router(router)
    return app
