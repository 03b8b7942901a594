"""The FastAPI application, built by `create_app()` (`python -m api` and the tests)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from api.deps import TemporalConnector
from api.errors import install_error_handlers
from api.routes import checkout, health, orders, products, users
from api.watch import OrderWatch
from core.config import Settings, get_settings
from core.db import make_engine, migrate
from core.grpc_client import Stubs, channel_credentials
from core.runtime import freeze_startup_objects

log = logging.getLogger("api")

TAGS = [
    {"name": "health", "description": "Is every part of the stack up?"},
    {"name": "users", "description": "Customers and their notifications."},
    {"name": "products", "description": "The catalogue and its stock."},
    {"name": "checkout", "description": "Place an order (starts a PlaceOrder saga)."},
    {"name": "orders", "description": "Follow, cancel, ship and deliver orders."},
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
            await watch.stop()
            await stubs.close()
            engine.dispose()

    app = FastAPI(
        title="Order sagas on Temporal",
        summary="Checkout, payment and fulfilment as Temporal sagas over five gRPC services.",
        version="0.1.0",
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (health, users, products, checkout, orders):
        app.include_router(module.router)
    return app
