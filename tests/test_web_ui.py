"""The Temporal Web UI, in a real headless Chromium, shows an order's input decoded through
the codec server, while the server holds it encrypted.

Needs Debian's `chromium` on the machine (nothing is installed at run time): skipped where
it is missing unless REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
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


async def page_text_once(browser: str, url: str, profile: Path, wanted: str) -> str:
    """Opens `url` in headless Chromium and reads the page's text (over the DevTools
    protocol) until it contains `wanted` or 60 s pass; the last text read."""
    proc = await asyncio.create_subprocess_exec(
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        active = profile / "DevToolsActivePort"
        async with asyncio.timeout(30):
            while not active.exists() or not active.read_text().strip():
                await asyncio.sleep(0.1)
        port = active.read_text().split()[0]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            [page] = [t for t in (await http.get("/json/list")).json() if t["type"] == "page"]
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            calls = itertools.count(1)

            async def call(method: str, **params: Any) -> dict[str, Any]:
                call_id = next(calls)
                await ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
                while True:
                    reply = json.loads(await ws.recv())
                    if reply.get("id") == call_id:
                        result: dict[str, Any] = reply.get("result", {})
                        return result

            await call("Page.navigate", url=url)
            text = ""
            deadline = asyncio.get_running_loop().time() + 60
            while wanted not in text and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.5)
                got = await call(
                    "Runtime.evaluate",
                    expression="document.body ? document.body.innerText : ''",
                    returnByValue=True,
                )
                text = str(got.get("result", {}).get("value", ""))
            return text
    finally:
        proc.terminate()
        await proc.wait()


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
            page = await page_text_once(browser, url, tmp_path / "profile", token)
        finally:
            await env.shutdown()
    assert token in page, page[-3000:]
    assert SHIPPING_ADDRESS["postal_code"] in page
