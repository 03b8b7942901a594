"""The whole stack for API tests: SQLite in tmp or PostgreSQL, the real gRPC services on
port 0, a real worker on the dev server, and the app driven in-process through httpx.

A pytest plugin (tests/conftest.py loads it): test modules use the `stack` fixture by name
and import only the `Stack` type and the test cards from here."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import worker
from api.main import create_app
from core.config import Settings
from core.db import make_engine
from core.grpc_client import Stubs
from core.secrets import resolved_admin_password, resolved_jwt_secret
from core.tokens import CUSTOMER_ROLE, issue_access_token
from services.server import create_server

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
FLAKY_CARD = "4000000000000119"
FINAL = {"DELIVERED", "FAILED", "CANCELLED"}
SHIPPING_ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 St James's Square",
    "city": "London",
    "postal_code": "SW1Y 4JH",
    "country": "GB",
}


PASSWORD = "correct horse battery"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def log_in(http: httpx.AsyncClient, email: str, password: str) -> str:
    """POST /auth/token as a client does: the access token."""
    r = await http.post("/auth/token", data={"username": email, "password": password})
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


@dataclass
class Stack:
    """`http` sends the admin's token; a customer's requests go with `as_user(user_id)`."""

    http: httpx.AsyncClient
    app: FastAPI
    client: Client
    engine: Engine
    settings: Settings
    tokens: dict[str, str] = field(default_factory=dict)

    async def create_user(self, name: str = "Ada") -> dict[str, Any]:
        """Registers a customer and logs them in (their token then goes with `as_user`)."""
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        body = {"email": email, "name": name, "password": PASSWORD}
        r = await self.http.post("/users", json=body)
        assert r.status_code == 201, r.text
        user: dict[str, Any] = r.json()
        self.tokens[user["id"]] = await log_in(self.http, email, PASSWORD)
        return user

    def as_user(self, user_id: str) -> dict[str, str]:
        """The headers of a request by this customer. An id no customer has gets a token
        signed for it, as one whose user was deleted since."""
        if user_id not in self.tokens:
            secret = resolved_jwt_secret(self.settings)
            self.tokens[user_id] = issue_access_token(
                secret, user_id, CUSTOMER_ROLE, timedelta(hours=1)
            )
        return bearer(self.tokens[user_id])

    async def create_product(
        self, stock: int = 10, price_cents: int = 1500, category: str = "books"
    ) -> dict[str, Any]:
        body = {
            "sku": f"sku-{uuid.uuid4().hex[:10]}",
            "name": "A book",
            "description": "with pages",
            "price_cents": price_cents,
            "stock": stock,
            "category": category,
        }
        r = await self.http.post("/products", json=body)
        assert r.status_code == 201, r.text
        product: dict[str, Any] = r.json()
        return product

    async def checkout(
        self,
        user_id: str,
        items: list[tuple[str, int]],
        card: str = GOOD_CARD,
        key: str | None = None,
    ) -> httpx.Response:
        body = {
            "user_id": user_id,
            "items": [{"product_id": p, "quantity": q} for p, q in items],
            "payment": {"card_number": card},
            "shipping_address": SHIPPING_ADDRESS,
        }
        headers = self.as_user(user_id) | ({"Idempotency-Key": key} if key else {})
        return await self.http.post("/checkout", json=body, headers=headers)

    async def place(self, user_id: str, items: list[tuple[str, int]], card: str = GOOD_CARD) -> str:
        r = await self.checkout(user_id, items, card)
        assert r.status_code == 202, r.text
        order_id: str = r.json()["order_id"]
        return order_id

    async def wait_for(
        self, order_id: str, statuses: set[str] | str, timeout: float = 20.0
    ) -> dict[str, Any]:
        """Polls GET /orders/{id} until its status is one of `statuses` (or any final one)."""
        wanted = {statuses} if isinstance(statuses, str) else statuses
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            r = await self.http.get(f"/orders/{order_id}")
            if r.status_code == 200:
                last = r.json()
                if last["status"] in wanted or last["status"] in FINAL:
                    return last
            await asyncio.sleep(0.2)
        raise AssertionError(f"order {order_id} not in {wanted} after {timeout}s: {last}")


@pytest.fixture(scope="module")
async def stack(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory, db_url: str
) -> AsyncIterator[Stack]:
    """Once per backend: `db_url` is a fresh SQLite file or PostgreSQL database."""
    tmp = tmp_path_factory.mktemp("api")
    settings = Settings(
        data_dir=tmp,
        database_url=db_url,
        temporal_task_queue=f"api-{uuid.uuid4().hex[:12]}",
        # Rate limits are tested on an app of their own (tests/test_authz.py).
        rate_limit="0",
        login_rate_limit="0",
    )
    engine = make_engine(settings.database_url)
    server, port = create_server("127.0.0.1:0", engine, fault_rate=0.0)
    await server.start()
    settings.grpc_target = f"127.0.0.1:{port}"
    app = create_app(settings, client=dev_env.client)
    async with Stubs.open(settings.grpc_target) as stubs:
        w = worker.build_worker(
            dev_env.client, settings.temporal_task_queue, worker.build_activities(stubs, engine)
        )
        async with w, app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://api", timeout=60
            ) as http:
                admin = await log_in(http, settings.admin_email, resolved_admin_password(settings))
                http.headers.update(bearer(admin))
                yield Stack(
                    http=http, app=app, client=dev_env.client, engine=engine, settings=settings
                )
    await server.stop(grace=1)
    engine.dispose()
