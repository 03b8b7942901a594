"""The FastAPI application, built by `create_app()` (`python -m api` and the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from fastapi import FastAPI
from temporalio.client import Client

from api.deps import GRPC_TIMEOUT, TemporalConnector
from api.errors import install_error_handlers
from api.headers import SecurityHeaders
from api.rate_limits import RateLimits
from api.routes import (
    auth,
    cart,
    categories,
    checkout,
    feeds,
    figures,
    health,
    orders,
    pages,
    products,
    session,
    users,
)
from api.streams import OpenStreams
from api.watch import OrderWatch
from core import telemetry
from core.config import Settings, get_settings
from core.db import make_engine, migrate
from core.grpc_client import Stubs, channel_credentials
from core.runtime import freeze_startup_objects
from core.secrets import resolved_admin_password, resolved_jwt_secret
from core.tokens import ADMIN_ROLE
from proto.shop.v1 import user_pb2

log = logging.getLogger("api")

# How long the start-up waits for the admin account before going on without it (the
# services may still be starting); it is retried in the background until it is there.
ADMIN_WAIT = 10.0
ADMIN_RETRY_EVERY = 2.0


async def ensure_admin(stubs: Stubs, settings: Settings) -> None:
    """Creates the ADMIN_EMAIL account, or brings its password and role up to date; raises
    when the services refuse it (an invalid ADMIN_EMAIL or ADMIN_PASSWORD), which stops the
    start-up when it comes within ADMIN_WAIT (and is logged as an error when later)."""
    request = user_pb2.CreateUserRequest(
        email=settings.admin_email,
        name="Admin",
        password=resolved_admin_password(settings),
        role=ADMIN_ROLE,
    )
    while True:
        try:
            await stubs.user.UpsertUser(request, timeout=GRPC_TIMEOUT, wait_for_ready=True)
        except grpc.aio.AioRpcError as err:
            if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise RuntimeError(f"the admin account is refused: {err.details()}") from None
            log.warning("admin account not ready yet: %s", err.code().name)
            await asyncio.sleep(ADMIN_RETRY_EVERY)
        else:
            log.info("admin account %s ready", settings.admin_email)
            return


def _report_admin_failure(task: asyncio.Task[None]) -> None:
    """Logs why the admin account could not be set up once the API is already serving (the
    services came up after ADMIN_WAIT and refused it): the API runs without an admin."""
    if not task.cancelled() and (err := task.exception()) is not None:
        log.error("%s; the API runs without an admin account until it restarts", err)


TAGS = [
    {"name": "health", "description": "Is every part of the stack up?"},
    {"name": "auth", "description": "Log in (OAuth2 password flow) for a bearer token."},
    {"name": "users", "description": "Registration, the caller's user and notifications."},
    {"name": "products", "description": "The catalogue and its stock."},
    {"name": "checkout", "description": "Place an order (starts a PlaceOrder saga)."},
    {"name": "orders", "description": "Follow, cancel, ship and deliver orders."},
    {"name": "cart", "description": "The caller's cart (a Cart workflow) and its checkout."},
]


def create_app(
    settings: Settings | None = None, client: Client | None = None, *, freeze_gc: bool = False
) -> FastAPI:
    """Builds the app. `client` (tests) is used as is; otherwise the lifespan connects, and
    if Temporal is down then, routes that need it connect on first use or answer 503.
    `freeze_gc` (the API process, not tests): see core.runtime.freeze_startup_objects."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        migrate(engine)
        connector = TemporalConnector(settings, client)
        stubs = Stubs.open(settings.grpc_target, channel_credentials(settings))
        app.state.settings = settings
        app.state.engine = engine
        app.state.temporal = connector
        app.state.stubs = stubs
        app.state.jwt_secret = resolved_jwt_secret(settings)
        app.state.rate_limits = RateLimits(settings)
        app.state.streams = OpenStreams(settings.streams_per_caller)
        admin = asyncio.create_task(ensure_admin(stubs, settings))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(admin), ADMIN_WAIT)
        # Still waiting for the services: a refusal that comes later must not go unread.
        admin.add_done_callback(_report_admin_failure)
        app.state.watch = watch = OrderWatch(engine)
        watch.start()
        if client is None:
            await connector.get_or_none()
        if freeze_gc:
            freeze_startup_objects()
        log.info(
            "API ready: Temporal %s (%s), services %s",
            settings.temporal_target,
            "connected" if connector.connected else "not yet reachable",
            settings.grpc_target,
        )
        try:
            yield
        finally:
            admin.cancel()
            await watch.stop()
            await stubs.close()
            engine.dispose()
            telemetry.shutdown()

    app = FastAPI(
        title="Order sagas on Temporal",
        summary="Checkout, payment and fulfilment as Temporal sagas over five gRPC services.",
        version="0.1.0",
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(SecurityHeaders)
    telemetry.instrument_app(app)  # GET /metrics; FastAPI's spans when tracing is on
    for module in (health, auth, users, products, categories, checkout, orders, cart):
        app.include_router(module.router)
    # The pages, their session login and their feeds (docs/pages.md).
    for module in (session, figures, feeds, pages):
        app.include_router(module.router)
    pages.mount_static(app)
    return app
