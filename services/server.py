"""One gRPC server for any subset of the five services, plus health and reflection, on
GRPC_HOST:GRPC_PORT; with GRPC_TLS_* set it serves only mutual-TLS clients."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import SERVICE_NAME as HEALTH_SERVICE_NAME
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # untyped
from grpc_reflection.v1alpha import reflection
from sqlalchemy import Engine

from core import telemetry
from core.config import Settings, get_settings
from core.db import make_engine, migrate
from core.grpc_client import channel_credentials
from core.grpc_metrics import MetricsInterceptor
from core.runtime import freeze_startup_objects
from proto.shop.v1 import (
    inventory_pb2,
    inventory_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
    payment_pb2,
    payment_pb2_grpc,
    product_pb2,
    product_pb2_grpc,
    user_pb2,
    user_pb2_grpc,
)
from services.faults import INJECTED, FaultInjector
from services.inventory.servicer import InventoryServicer
from services.notification.servicer import NotificationServicer
from services.payment.servicer import PaymentServicer
from services.product.servicer import ProductServicer
from services.product.stock import RemoteInventory
from services.user.servicer import UserServicer

log = logging.getLogger("services")

ALL_SERVICES = ("user", "product", "inventory", "payment", "notification")
GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class _Spec:
    full_name: str
    servicer: Callable[[Engine], Any]
    add: Callable[[Any, grpc.aio.Server], None]


def _specs() -> dict[str, _Spec]:
    return {
        "user": _Spec(
            user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
            UserServicer,
            user_pb2_grpc.add_UserServiceServicer_to_server,
        ),
        "product": _Spec(
            product_pb2.DESCRIPTOR.services_by_name["ProductService"].full_name,
            ProductServicer,
            product_pb2_grpc.add_ProductServiceServicer_to_server,
        ),
        "inventory": _Spec(
            inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name,
            InventoryServicer,
            inventory_pb2_grpc.add_InventoryServiceServicer_to_server,
        ),
        "payment": _Spec(
            payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name,
            PaymentServicer,
            payment_pb2_grpc.add_PaymentServiceServicer_to_server,
        ),
        "notification": _Spec(
            notification_pb2.DESCRIPTOR.services_by_name["NotificationService"].full_name,
            NotificationServicer,
            notification_pb2_grpc.add_NotificationServiceServicer_to_server,
        ),
    }


class _Health(health_aio.HealthServicer):  # type: ignore[misc]  # grpc_health is untyped
    """The standard health service, SERVING for the given names from the start.

    `set` is async and create_server is not; before the server starts nobody can watch,
    so filling the status table directly is what `set` would do.
    """

    def __init__(self, names: Iterable[str]) -> None:
        super().__init__()
        for name in names:
            self._server_status[name] = health_pb2.HealthCheckResponse.SERVING


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """Mutual TLS from GRPC_TLS_*: the server presents its certificate and serves only
    clients with a certificate the CA signed. None (plaintext) when unset."""
    if settings.grpc_tls is None:
        return None
    ca, cert, key = settings.grpc_tls
    return grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=ca.read_bytes(),
        require_client_auth=True,
    )


@dataclass(frozen=True)
class Built:
    server: grpc.aio.Server
    port: int
    health: health_aio.HealthServicer
    services: tuple[str, ...]


def build_server(
    address: str,
    engine: Engine,
    services: Iterable[str] = ALL_SERVICES,
    *,
    fault_rate: float | None = None,
    fault_seed: int | None = None,
    inventory_target: str | None = None,
    settings: Settings | None = None,
) -> Built:
    """Like `create_server`, also returning the health servicer (for graceful shutdown)."""
    settings = settings or get_settings()
    rate = settings.fault_rate if fault_rate is None else fault_rate
    seed = settings.fault_seed if fault_seed is None else fault_seed
    chosen = tuple(dict.fromkeys(services))
    specs = _specs()
    unknown = [s for s in chosen if s not in specs]
    if unknown or not chosen:
        raise ValueError(f"unknown services {unknown}; choose from {', '.join(ALL_SERVICES)}")

    migrate(engine)
    # Metrics outermost: they count the faults injected as what the callers saw.
    interceptors: list[grpc.aio.ServerInterceptor] = [MetricsInterceptor()]  # type: ignore[type-arg]
    if rate > 0:
        interceptors.append(FaultInjector(rate, seed))
    server = grpc.aio.server(interceptors=interceptors)
    servicers: dict[str, Any] = {}
    # Inventory first: the product servicer sets imported stock through it when it is here.
    for name in sorted(chosen, key=lambda n: n != "inventory"):
        spec = specs[name]
        if name == "product":
            inventory = servicers.get("inventory") or RemoteInventory(
                inventory_target or settings.grpc_target, channel_credentials(settings)
            )
            servicers[name] = ProductServicer(engine, inventory)
        else:
            servicers[name] = spec.servicer(engine)
        spec.add(servicers[name], server)
    names = [specs[name].full_name for name in chosen]
    health = _Health(names)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*names, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    credentials = server_credentials(settings)
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if rate > 0:
        log.warning("fault injection on: rate %s, seed %s", rate, seed)
    return Built(server, port, health, chosen)


def create_server(
    address: str,
    engine: Engine,
    services: Iterable[str] = ALL_SERVICES,
    *,
    fault_rate: float | None = None,
    fault_seed: int | None = None,
    inventory_target: str | None = None,
    settings: Settings | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Builds (does not start) a server for `services`, bound to `address`.

    Migrates the database to the latest schema (core.db.migrate). Bind "127.0.0.1:0" for a
    free port, which is returned. `settings` (default: get_settings()) give the fault
    injection (Settings.fault_rate / fault_seed unless given here) and mutual TLS
    (GRPC_TLS_*). Then `await server.start()`.
    Product served without inventory sets imported stock through InventoryService at
    `inventory_target` (default Settings.grpc_target).
    """
    built = build_server(
        address,
        engine,
        services,
        fault_rate=fault_rate,
        fault_seed=fault_seed,
        inventory_target=inventory_target,
        settings=settings,
    )
    return built.server, built.port


def listen_address(settings: Settings) -> str:
    """GRPC_HOST:GRPC_PORT as gRPC spells it (an IPv6 host in brackets)."""
    host = f"[{settings.grpc_host}]" if ":" in settings.grpc_host else settings.grpc_host
    return f"{host}:{settings.grpc_port}"


async def serve(services: Iterable[str] = ALL_SERVICES) -> None:
    """Serves on GRPC_HOST:GRPC_PORT until SIGTERM / SIGINT, then stops gracefully."""
    settings = get_settings()
    engine = make_engine(settings.database_url)
    built = build_server(listen_address(settings), engine, services, settings=settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await built.server.start()
    telemetry.serve_metrics(settings.metrics_host, settings.metrics_port_services)
    freeze_startup_objects()
    log.info(
        "gRPC services ready on port %d of %s, %s: %s (database %s)",
        built.port,
        settings.grpc_host,
        "mutual TLS" if settings.grpc_tls else "plaintext",
        ", ".join(built.services),
        engine.url.render_as_string(hide_password=True),
    )
    try:
        await stop.wait()
    finally:
        log.info("shutting down (grace %.0fs)", GRACE_SECONDS)
        await built.health.enter_graceful_shutdown()
        await built.server.stop(GRACE_SECONDS)
        engine.dispose()
        telemetry.shutdown()
        if INJECTED:
            log.info("injected faults: %s", dict(INJECTED))
        log.info("stopped")


def main(services: Iterable[str] = ALL_SERVICES) -> None:
    telemetry.setup(telemetry.SERVICES, get_settings())
    asyncio.run(serve(services))


__all__ = ["ALL_SERVICES", "Built", "build_server", "create_server", "main", "serve"]
