"""Shared resources on `app.state` and the `Annotated` dependencies that hand them out."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from sqlalchemy import Engine
from temporalio.client import Client

from api.errors import ApiError, temporal_unavailable
from api.models import ID_MAX_LENGTH, ID_PATTERN, KEY_PATTERN
from api.watch import OrderWatch
from core.codec import data_converter
from core.config import Settings
from core.grpc_client import Stubs
from core.temporal import client_interceptors, connect_config

log = logging.getLogger("api")

# Every gRPC call from a request gets this deadline, so a stuck service answers 503.
GRPC_TIMEOUT = 5.0
TEMPORAL_CONNECT_TIMEOUT = 3.0
# After a failed connection, requests answer 503 at once for this long instead of each
# waiting for an attempt of its own.
TEMPORAL_RETRY_AFTER = 2.0


class TemporalConnector:
    """One Temporal client for the process, connected at startup or, if Temporal was down
    then, on first use: the API starts without Temporal and answers 503 until it is up."""

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self._client = client
        self._lock = asyncio.Lock()
        self._failed_at: float | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def get(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is not None:
                return self._client
            failed_at = self._failed_at
            if failed_at is not None and time.monotonic() - failed_at < TEMPORAL_RETRY_AFTER:
                raise temporal_unavailable(f"cannot connect to {self._target}")
            try:
                self._client = await self._connect()
            except ApiError:
                self._failed_at = time.monotonic()
                raise
            return self._client

    async def get_or_none(self) -> Client | None:
        """For routes that can still answer from the read model while Temporal is down (and
        for the start-up, which goes on without it); the failure is logged in `_connect`."""
        try:
            return await self.get()
        except ApiError:
            return None

    @property
    def _target(self) -> str:
        return self._settings.temporal_target

    async def _connect(self) -> Client:
        try:
            return await asyncio.wait_for(
                Client.connect(
                    **connect_config(self._settings),
                    data_converter=data_converter(self._settings),
                    interceptors=client_interceptors(),
                    connect_timeout=timedelta(seconds=TEMPORAL_CONNECT_TIMEOUT),
                ),
                timeout=TEMPORAL_CONNECT_TIMEOUT + 1,
            )
        except Exception as err:
            log.warning("Temporal at %s is not reachable: %s", self._target, err)
            raise temporal_unavailable(f"cannot connect to {self._target}") from err


# The getters only read app.state: `async def`, so FastAPI calls them on the event loop.
# A plain `def` dependency runs in the thread pool: one thread hop per dependency per
# request, which under load made up much of POST /checkout's time before its handler ran.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_stubs(request: Request) -> Stubs:
    stubs: Stubs = request.app.state.stubs
    return stubs


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_watch(request: Request) -> OrderWatch:
    watch: OrderWatch = request.app.state.watch
    return watch


async def get_connector(request: Request) -> TemporalConnector:
    connector: TemporalConnector = request.app.state.temporal
    return connector


SettingsDep = Annotated[Settings, Depends(get_settings)]
StubsDep = Annotated[Stubs, Depends(get_stubs)]
EngineDep = Annotated[Engine, Depends(get_engine)]
WatchDep = Annotated[OrderWatch, Depends(get_watch)]
# Routes take the connector and ask it for the client inside the handler, after FastAPI has
# validated the request: a malformed request is a 422 even while Temporal is down.
ConnectorDep = Annotated[TemporalConnector, Depends(get_connector)]

# Fixed namespace: the same key always maps to the same id, in every API process.
IDEMPOTENCY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:order-saga:idempotency-key")

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        # HTTP drops a header value's surrounding spaces: a key of spaces would arrive empty.
        pattern=KEY_PATTERN,
        description="Retries with the same key get the same answer and change nothing more.",
    ),
]


def created_id_for(kind: str, key: str | None) -> str:
    """The id a create request with this Idempotency-Key gets (a new one without a key).
    The services return the existing row for the same id and the same content, so a
    retried create (the channel's own retry, or the client's after a timeout or a 503)
    answers 201 with the same resource."""
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{kind}:{key}").hex if key else uuid.uuid4().hex


# Path ids: checked before anything is looked up (422 in the error shape otherwise).
PathId = Annotated[str, Path(max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
