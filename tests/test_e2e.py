"""End to end, one smoke path: the real processes (`python -m services`, `worker.py`,
`python -m api`, started as `make run` starts them) on the session's Temporal dev server,
driven through REST and the `temporal` CLI. The API's behaviour in detail is tests/test_api.py's.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from core.secrets import resolved_admin_password
from tests.api_fixtures import GOOD_CARD, PASSWORD, SHIPPING_ADDRESS, bearer, log_in
from tests.conftest import binary
from tests.harness import RunningStack, running_stack, uid

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
async def processes(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningStack]:
    address = dev_env.client.service_client.config.target_host
    async with running_stack(address, tmp_path_factory.mktemp("e2e")) as stack:
        yield stack


async def until_status(
    http: httpx.AsyncClient, order_id: str, status: str, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = await http.get(f"/orders/{order_id}")
        if r.status_code == 200 and r.json()["status"] == status:
            return dict(r.json())
        if time.monotonic() > deadline:
            raise AssertionError(f"order {order_id} not {status}: {r.status_code} {r.text}")
        await asyncio.sleep(0.2)


async def test_checkout_pays_and_a_cli_cancel_refunds(processes: RunningStack) -> None:
    settings = processes.settings
    async with httpx.AsyncClient(base_url=processes.api_url, timeout=30) as http:
        email = f"{uid()}@example.com"
        r = await http.post("/users", json={"email": email, "name": "E2E", "password": PASSWORD})
        assert r.status_code == 201, r.text
        user = r.json()["id"]
        customer = bearer(await log_in(http, email, PASSWORD))
        # The admin account the API made at its start, with the password in DATA_DIR.
        admin_password = resolved_admin_password(settings)
        http.headers.update(bearer(await log_in(http, settings.admin_email, admin_password)))
        product = {
            "sku": uid("SKU-"), "name": "Widget", "description": "e2e",
            "price_cents": 1999, "stock": 3, "category": "e2e",
        }  # fmt: skip
        r = await http.post("/products", json=product)
        assert r.status_code == 201, r.text
        product_id = r.json()["id"]
        body = {
            "user_id": user,
            "items": [{"product_id": product_id, "quantity": 2}],
            "payment": {"card_number": GOOD_CARD},
            "shipping_address": SHIPPING_ADDRESS,
        }
        r = await http.post("/checkout", json=body, headers={"Idempotency-Key": uid()} | customer)
        assert r.status_code == 202, r.text
        order_id = r.json()["order_id"]

        order = await until_status(http, order_id, "PAID")
        assert (order["payment_status"], order["total_cents"]) == ("CAPTURED", 2 * 1999)
        assert (await http.get(f"/products/{product_id}")).json()["stock"] == 1

        cli = [
            binary("temporal"), "workflow", "signal", "--address", processes.temporal_address,
            "--workflow-id", f"order-{order_id}", "--name", "cancel", "--input", '{"reason":"x"}',
        ]  # fmt: skip
        done = subprocess.run(cli, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr

        order = await until_status(http, order_id, "CANCELLED")
        assert (order["failure_reason"], order["cancel_reason"]) == ("CANCELLED_BY_CUSTOMER", "x")
        assert order["payment_status"] == "REFUNDED"
        assert (await http.get(f"/products/{product_id}")).json()["stock"] == 3
        # The customer follows their own order; the admin could, too.
        ledger = (await http.get(f"/orders/{order_id}/payments", headers=customer)).json()
        assert [(e["type"], e["amount_cents"]) for e in ledger] == [
            ("CAPTURE", 2 * 1999),
            ("REFUND", 2 * 1999),
        ]
