"""The whole stack for API tests: SQLite in tmp or PostgreSQL, the real gRPC services on
port 0, a real worker on the dev server, and the app driven in-process through httpx.

A pytest plugin (tests/conftest.py loads it): test modules use the `stack` fixture by name
and import only the `Stack` type and the test cards from here."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
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


@dataclass
class Stack:
    http: httpx.AsyncClient
    app: FastAPI
    client: Client
    engine: Engine
    settings: Settings

    async def create_user(self, name: str = "Ada") -> dict[str, Any]:
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        r = await self.http.post("/users", json={"email": email, "name": name})
        assert r.status_code == 201, r.text
        return r.json()

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
        return r.json()

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
        headers = {"Idempotency-Key": key} if key else {}
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
                yield Stack(
                    http=http, app=app, client=dev_env.client, engine=engine, settings=settings
                )
    await server.stop(grace=1)
    engine.dispose()
