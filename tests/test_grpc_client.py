"""The services' channel (core.grpc_client): gRPC's own retry policy, on the calls that are
safe to repeat, turns injected faults into answers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import grpc
import httpx
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from core.config import Settings
from core.grpc_client import RETRIED_METHODS, Stubs
from proto.shop.v1 import (
    inventory_pb2,
    notification_pb2,
    payment_pb2,
    product_pb2,
    user_pb2,
)
from services.faults import INJECTED, MUTATING
from services.server import create_server
from tests.api_fixtures import PASSWORD
from tests.harness import uid

FAULT_RATE = 0.3
FAULT_SEED = 11
CALLS = 20


def test_the_retried_methods_are_the_unary_ones_safe_to_repeat() -> None:
    descriptors = {
        s.full_name: s
        for module in (user_pb2, product_pb2, inventory_pb2, payment_pb2, notification_pb2)
        for s in module.DESCRIPTOR.services_by_name.values()
    }
    for service, methods in RETRIED_METHODS.items():
        for name in methods:
            method = descriptors[service].methods_by_name[name]
            assert not (method.client_streaming or method.server_streaming), name
    retried = {f"/{service}/{name}" for service, names in RETRIED_METHODS.items() for name in names}
    # Every mutation the fault injector fails carries an idempotency key or its id: retried.
    assert MUTATING <= retried


def injected() -> Counter[str]:
    return Counter(INJECTED)


async def test_injected_faults_are_retried_and_applied_once(engine: Engine) -> None:
    server, port = create_server(
        "127.0.0.1:0", engine, ("inventory",), fault_rate=FAULT_RATE, fault_seed=FAULT_SEED
    )
    await server.start()
    product_id = uid("p-")
    before = injected()
    try:
        async with Stubs.open(f"127.0.0.1:{port}") as stubs:
            for _ in range(CALLS):
                request = inventory_pb2.AdjustStockRequest(
                    product_id=product_id, delta=1, idempotency_key=uid()
                )
                await stubs.inventory.AdjustStock(request, timeout=10)
            level = await stubs.inventory.GetStock(
                inventory_pb2.GetStockRequest(product_id=product_id), timeout=10
            )
        faults = injected() - before
        # Faults after the commit too: the retry found the key applied and added nothing.
        assert faults["before"] > 0 and faults["after"] > 0, faults
        assert level.available == CALLS

        # The same faults without the retry policy (the worker's channel) reach the caller.
        failed = 0
        async with Stubs.open(f"127.0.0.1:{port}", retry=False) as plain:
            for _ in range(CALLS):
                request = inventory_pb2.AdjustStockRequest(
                    product_id=product_id, delta=1, idempotency_key=uid()
                )
                try:
                    await plain.inventory.AdjustStock(request, timeout=10)
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.UNAVAILABLE
                    failed += 1
        assert failed > 0
    finally:
        await server.stop(None)


async def test_the_api_answers_despite_injected_faults(
    engine: Engine, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    server, port = create_server(
        "127.0.0.1:0", engine, fault_rate=FAULT_RATE, fault_seed=FAULT_SEED
    )
    await server.start()
    settings = Settings(
        data_dir=tmp_path, database_url=engine.url.render_as_string(hide_password=False)
    )
    settings.grpc_target = f"127.0.0.1:{port}"
    app = create_app(settings, client=dev_env.client)
    before = injected()
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                keyed = {"Idempotency-Key": uid()}
                for i in range(CALLS):
                    # With a key and without one: either way the API sends an id, so the
                    # create is safe to repeat.
                    body = {
                        "email": f"{uid()}@example.com",
                        "name": f"Retry {i}",
                        "password": PASSWORD,
                    }
                    r = await http.post("/users", json=body, headers=keyed if i == 0 else {})
                    assert r.status_code == 201, r.text
        assert sum((injected() - before).values()) > 0
    finally:
        await server.stop(None)
