"""The Temporal Web UI, in a real headless Chromium, shows an order's input decoded through
the codec server, while the server holds it encrypted.

Needs Debian's `chromium` on the machine (nothing is installed at run time): skipped where
it is missing unless REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

import pytest
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from playwright.async_api import async_playwright
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from core.messages import OrderItem, PlaceOrderInput, ShippingAddress, workflow_id_for
from tests.api_fixtures import SHIPPING_ADDRESS
from tests.conftest import CONVERTER, TEST_PAYLOAD_KEYS, binary
from tests.harness import free_port
from tests.test_codec import serving

pytestmark = pytest.mark.timeout(120)

HOST = "127.0.0.1"


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("REQUIRE_BROWSER", "") not in ("", "0", "false"):
            pytest.fail("chromium is not installed (REQUIRE_BROWSER=1)")
        pytest.skip("chromium is not installed; REQUIRE_BROWSER=1 makes this a failure")
    return found


async def page_text(browser: str, url: str, wanted: str) -> str:
    """Opens `url` in headless Chromium (Playwright driving Debian's browser) and waits up to
    60 s for the page to show `wanted`; the page's text."""
    async with async_playwright() as pw:
        chromium_ = await pw.chromium.launch(
            executable_path=browser, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = await chromium_.new_page()
            await page.goto(url)
            with contextlib.suppress(PlaywrightTimeoutError):  # the assertion below says why
                await page.get_by_text(wanted).first.wait_for(timeout=60_000)
            return await page.inner_text("body")
        finally:
            await chromium_.close()


async def test_the_web_ui_shows_an_orders_input_decoded_by_the_codec_server(
    tmp_path: Path,
) -> None:
    browser = chromium()
    ui_port = free_port()
    settings = Settings(
        data_dir=tmp_path,
        payload_keys=TEST_PAYLOAD_KEYS,
        jwt_secret=SecretStr("web-ui-test"),
        codec_cors_origins=[f"http://{HOST}:{ui_port}"],
    )
    async with serving(settings) as codec:
        env = await WorkflowEnvironment.start_local(
            data_converter=CONVERTER,
            dev_server_existing_path=binary("temporal"),
            ui=True,
            ui_port=ui_port,
            dev_server_extra_args=["--ui-codec-endpoint", str(codec.base_url).rstrip("/")],
            dev_server_log_level="error",
        )
        try:
            order_id = uuid.uuid4().hex
            token = f"tok_{uuid.uuid4().hex}"
            # No worker: the started event's input is what the page shows.
            handle = await env.client.start_workflow(
                "PlaceOrder",
                PlaceOrderInput(
                    order_id=order_id,
                    user_id="ui-customer",
                    items=[OrderItem(product_id="p-1", quantity=1)],
                    card_token=token,
                    shipping_address=ShippingAddress(**SHIPPING_ADDRESS),
                ),
                id=workflow_id_for(order_id),
                task_queue=f"ui-{order_id}",
            )
            stored = await handle.fetch_history()
            assert token.encode() not in stored.events[0].SerializeToString()

            url = (
                f"http://{HOST}:{ui_port}/namespaces/{env.client.namespace}/workflows/"
                f"{handle.id}/{handle.result_run_id}/history"
            )
            page = await page_text(browser, url, token)
        finally:
            await env.shutdown()
    assert token in page, page[-3000:]
    assert SHIPPING_ADDRESS["postal_code"] in page
