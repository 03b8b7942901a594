"""The API while Temporal cannot be reached: it starts anyway, answers 503 in the error shape
where Temporal is needed (never hangs), keeps serving what the services and the read model
hold, and works again once Temporal is back, with no restart.

Temporal sits behind a TCP relay the test opens and closes: the real dev server, the real
services on port 0, the real app over ASGI.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

import worker
from api.deps import TEMPORAL_RETRY_AFTER
from api.main import create_app
from core.config import Settings
from core.db import make_engine
from core.grpc_client import Stubs
from core.secrets import resolved_admin_password
from services.server import create_server
from tests.api_fixtures import GOOD_CARD, PASSWORD, SHIPPING_ADDRESS, bearer, log_in
from tests.conftest import TEST_PAYLOAD_KEYS
from tests.net import Relay

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def outage(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, Relay]]:
    """The app with Temporal behind a relay that starts DOWN, and a worker on the server."""
    tmp = tmp_path_factory.mktemp("outage")
    relay = Relay(dev_env.client.service_client.config.target_host)
    settings = Settings(
        data_dir=tmp,
        database_url=f"sqlite:///{tmp}/shop.db",
        temporal_address=relay.address,
        temporal_task_queue=f"outage-{uuid.uuid4().hex[:12]}",
        payload_keys=TEST_PAYLOAD_KEYS,  # the worker's, on dev_env's client
    )
    engine = make_engine(settings.database_url)
    server, port = create_server("127.0.0.1:0", engine, fault_rate=0.0)
    await server.start()
    settings.grpc_target = f"127.0.0.1:{port}"
    app = create_app(settings)  # connects itself, through the relay
    try:
        async with Stubs.open(settings.grpc_target) as stubs:
            w = worker.build_worker(
                dev_env.client,
                settings.temporal_task_queue,
                worker.build_activities(stubs, engine),
            )
            async with w, app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://api", timeout=60
                ) as http:
                    admin = resolved_admin_password(settings)
                    http.headers.update(bearer(await log_in(http, settings.admin_email, admin)))
                    yield http, relay
    finally:
        await relay.down()
        await server.stop(grace=1)
        engine.dispose()


async def test_api_answers_503_while_temporal_is_down_and_recovers(
    outage: tuple[httpx.AsyncClient, Relay],
) -> None:
    http, relay = outage
    email = f"{uuid.uuid4().hex[:8]}@x.io"
    signup = {"email": email, "name": "A", "password": PASSWORD}
    user = await http.post("/users", json=signup)
    assert user.status_code == 201, user.text  # the services answer without Temporal
    customer = bearer(await log_in(http, email, PASSWORD))
    product = await http.post(
        "/products",
        json={"sku": uuid.uuid4().hex[:10], "name": "P", "description": "", "price_cents": 500,
              "stock": 3, "category": "c"},
    )  # fmt: skip
    assert product.status_code == 201, product.text
    body = {
        "user_id": user.json()["id"],
        "items": [{"product_id": product.json()["id"], "quantity": 1}],
        "payment": {"card_number": GOOD_CARD},
        "shipping_address": SHIPPING_ADDRESS,
    }

    health = await http.get("/health")
    assert health.status_code == 503, health.text
    report = health.json()
    assert report["temporal"] != "ok" and report["services"] == report["database"] == "ok"
    assert "temporal" in report["error"]["message"]

    down = await asyncio.wait_for(http.post("/checkout", json=body, headers=customer), timeout=30)
    assert down.status_code == 503, down.text
    assert down.json()["error"]["code"] == "TEMPORAL_UNAVAILABLE"
    assert "Temporal" in down.json()["error"]["message"]
    unknown = await asyncio.wait_for(http.get(f"/orders/{uuid.uuid4().hex}"), timeout=30)
    assert unknown.status_code == 503, unknown.text

    # Temporal is back: a request connects again, no restart of the API. (Right after a
    # failed attempt the API answers 503 at once for TEMPORAL_RETRY_AFTER seconds: retry
    # as a client would.)
    await relay.up()
    for _ in range(int(TEMPORAL_RETRY_AFTER / 0.2) + 20):
        placed = await http.post("/checkout", json=body, headers=customer)
        if placed.status_code != 503:
            break
        await asyncio.sleep(0.2)
    assert placed.status_code == 202, placed.text
    order_id = placed.json()["order_id"]
    order: dict[str, object] = {}
    for _ in range(100):
        order = (await http.get(f"/orders/{order_id}")).json()
        if order.get("status") == "PAID":
            break
        await asyncio.sleep(0.1)
    assert order.get("status") == "PAID", order
    assert (await http.get("/health")).status_code == 200

    # Down again while the API is connected: answers stay bounded and clear.
    await relay.down()
    paid = await asyncio.wait_for(http.get(f"/orders/{order_id}"), timeout=30)
    # The workflow cannot be asked: the read model answers (possibly stale, here current).
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "PAID"
    again = await asyncio.wait_for(http.post("/checkout", json=body, headers=customer), timeout=30)
    assert again.status_code == 503, again.text
    assert again.json()["error"]["code"] == "TEMPORAL_UNAVAILABLE"
