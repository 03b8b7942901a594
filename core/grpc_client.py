"""The one way to reach the five gRPC services: a channel with gRPC's own retry policy, and
their stubs on it, over mutual TLS when GRPC_TLS_* is set (`channel_credentials`). The API,
the worker, the seeding, the product service (for inventory), `make run` and the tests all
use it. The worker's channel goes without the policy: Temporal retries its activities, and
each retry shows in the workflow's history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2_grpc

from core.config import Settings
from proto.shop.v1 import (
    inventory_pb2_grpc,
    notification_pb2_grpc,
    payment_pb2_grpc,
    product_pb2_grpc,
    user_pb2_grpc,
)

# The calls that are safe to repeat, and only those, are retried: reads, and mutations
# that the service applies once per idempotency key (CreateUser and CreateProduct: per id,
# which the API and the seeding always send; UpsertUser: per email; a repeated TokenizeCard
# makes a second token that nothing uses). A call that failed with UNAVAILABLE (the service
# restarting, or a fault injected before or after its commit) is sent again, up to 5
# attempts within the call's deadline. Streams and health checks are never retried.
RETRIED_METHODS: dict[str, tuple[str, ...]] = {
    "shop.v1.UserService": ("CreateUser", "GetUser", "Authenticate", "UpsertUser"),
    "shop.v1.ProductService": (
        "CreateProduct",
        "UpdateProduct",
        "GetProduct",
        "ListProducts",
        "ListCategories",
    ),
    "shop.v1.InventoryService": (
        "AdjustStock",
        "ReserveStock",
        "ReleaseStock",
        "GetStock",
        "ListStock",
        "GetReservation",
        "SetLowStockThreshold",
        "ListStockMovements",
    ),
    "shop.v1.PaymentService": (
        "TokenizeCard",
        "Charge",
        "Refund",
        "GetPayment",
        "ListLedger",
    ),
    "shop.v1.NotificationService": ("SendNotification", "ListNotifications"),
}
SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [
                {"service": service, "method": method}
                for service, methods in RETRIED_METHODS.items()
                for method in methods
            ],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.1s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}
CHANNEL_OPTIONS = (
    ("grpc.enable_retries", 1),
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
)


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """This process's mutual-TLS credentials for the services (it trusts the CA and presents
    its certificate), or None for plaintext when GRPC_TLS_* is not set."""
    if settings.grpc_tls is None:
        return None
    ca, cert, key = settings.grpc_tls
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )


def open_channel(
    target: str, credentials: grpc.ChannelCredentials | None = None, *, retry: bool = True
) -> grpc.aio.Channel:
    """A channel to `target` with the retry policy (unless `retry=False`); TLS when
    `credentials` are given."""
    options = CHANNEL_OPTIONS if retry else (("grpc.enable_retries", 0),)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, credentials, options=options)


@dataclass(frozen=True)
class Stubs:
    """The five services' stubs and the health stub, on one channel.

    `async with Stubs.open(target) as stubs:` closes the channel at the end.
    """

    channel: grpc.aio.Channel
    user: user_pb2_grpc.UserServiceAsyncStub
    product: product_pb2_grpc.ProductServiceAsyncStub
    inventory: inventory_pb2_grpc.InventoryServiceAsyncStub
    payment: payment_pb2_grpc.PaymentServiceAsyncStub
    notification: notification_pb2_grpc.NotificationServiceAsyncStub
    health: health_pb2_grpc.HealthStub

    @classmethod
    def on(cls, channel: grpc.aio.Channel) -> Stubs:
        return cls(
            channel=channel,
            user=user_pb2_grpc.UserServiceStub(channel),
            product=product_pb2_grpc.ProductServiceStub(channel),
            inventory=inventory_pb2_grpc.InventoryServiceStub(channel),
            payment=payment_pb2_grpc.PaymentServiceStub(channel),
            notification=notification_pb2_grpc.NotificationServiceStub(channel),
            health=health_pb2_grpc.HealthStub(channel),
        )

    @classmethod
    def open(
        cls, target: str, credentials: grpc.ChannelCredentials | None = None, *, retry: bool = True
    ) -> Stubs:
        return cls.on(open_channel(target, credentials, retry=retry))

    async def close(self) -> None:
        await self.channel.close(grace=None)

    async def __aenter__(self) -> Stubs:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
