"""Seeds a demo customer (who can log in) and a demo catalogue through the gRPC services,
idempotently. (The admin account is the API's to make, at its start.)

`make run` calls `seed` once the services answer; `python -m core.seed` does the same
against `GRPC_TARGET`. Every id is fixed and stock is added with an idempotency key, so
seeding any number of times leaves the same users, products and stock.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import grpc

from core.config import get_settings
from core.grpc_client import Stubs, channel_credentials
from core.messages import INITIAL_STOCK_REASON, initial_stock_key
from proto.shop.v1 import inventory_pb2, product_pb2, user_pb2

log = logging.getLogger("seed")

DEMO_USER_ID = "demo-user"
DEMO_USER_EMAIL = "demo@example.com"
DEMO_USER_NAME = "Demo Customer"
# A demo account's password is no secret: `make run` prints it, the README uses it.
DEMO_USER_PASSWORD = "demo-password"


@dataclass(frozen=True)
class DemoProduct:
    id: str
    sku: str
    name: str
    description: str
    price_cents: int
    category: str
    stock: int


# fmt: off
DEMO_PRODUCTS: tuple[DemoProduct, ...] = (
    DemoProduct("prod-espresso", "COF-ESP-250", "Espresso beans 250 g",
                "Dark roast, chocolate and cherry.", 1290, "coffee", 100),
    DemoProduct("prod-filter-roast", "COF-FIL-250", "Filter beans 250 g",
                "Light roast, citrus and jasmine.", 1150, "coffee", 100),
    DemoProduct("prod-grinder", "EQP-GRN-01", "Hand grinder",
                "Steel burrs, 40 settings.", 8900, "equipment", 20),
    DemoProduct("prod-kettle", "EQP-KTL-01", "Gooseneck kettle",
                "1 litre, temperature control.", 6400, "equipment", 15),
    DemoProduct("prod-paper-filters", "ACC-FLT-100", "Paper filters x100",
                "Size 02, unbleached.", 590, "accessories", 500),
)
# fmt: on


@dataclass
class SeedResult:
    user_id: str = DEMO_USER_ID
    product_ids: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


async def _created_or_exists(call: grpc.aio.UnaryUnaryCall[Any, Any]) -> bool:
    """True when created, False when it already existed."""
    try:
        await call
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.ALREADY_EXISTS:
            return False
        raise
    return True


async def _exists(call: grpc.aio.UnaryUnaryCall[Any, Any]) -> bool:
    try:
        await call
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            return False
        raise
    return True


async def seed(stubs: Stubs, timeout: float = 10.0) -> SeedResult:
    """Creates the demo user and products (or finds them) and gives each product its stock."""
    result = SeedResult()

    demo = user_pb2.CreateUserRequest(
        id=DEMO_USER_ID, email=DEMO_USER_EMAIL, name=DEMO_USER_NAME, password=DEMO_USER_PASSWORD
    )
    if not await _created_or_exists(stubs.user.CreateUser(demo, timeout=timeout)):
        # ALREADY_EXISTS also means "email taken by someone else": check the id is ours.
        try:
            got = await stubs.user.GetUser(
                user_pb2.GetUserRequest(id=DEMO_USER_ID), timeout=timeout
            )
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
            result.warnings.append(
                f"user {DEMO_USER_ID!r} not created: {DEMO_USER_EMAIL} belongs to another user"
            )
        else:
            if got.email.lower() == DEMO_USER_EMAIL:
                # A demo user from before passwords (or with another one) can log in again.
                await stubs.user.UpsertUser(demo, timeout=timeout)

    for p in DEMO_PRODUCTS:
        await _created_or_exists(
            stubs.product.CreateProduct(
                product_pb2.CreateProductRequest(
                    id=p.id,
                    sku=p.sku,
                    name=p.name,
                    description=p.description,
                    price_cents=p.price_cents,
                    category=p.category,
                ),
                timeout=timeout,
            )
        )
        get = stubs.product.GetProduct(product_pb2.GetProductRequest(id=p.id), timeout=timeout)
        if not await _exists(get):
            result.warnings.append(f"product {p.id!r} not created: sku {p.sku} is taken")
            continue
        await stubs.inventory.AdjustStock(
            inventory_pb2.AdjustStockRequest(
                product_id=p.id,
                delta=p.stock,
                idempotency_key=initial_stock_key(p.id),
                reason=INITIAL_STOCK_REASON,
                actor="seed",
            ),
            timeout=timeout,
        )
        result.product_ids.append(p.id)
    return result


async def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    async with Stubs.open(settings.grpc_target, channel_credentials(settings)) as stubs:
        await asyncio.wait_for(stubs.channel.channel_ready(), timeout=30)
        result = await seed(stubs)
    for warning in result.warnings:
        log.warning("%s", warning)
    print(f"demo user: {result.user_id} ({DEMO_USER_EMAIL} / {DEMO_USER_PASSWORD})")
    print(f"demo products: {', '.join(result.product_ids)}")


if __name__ == "__main__":
    asyncio.run(main())
