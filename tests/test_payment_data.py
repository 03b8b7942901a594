"""The card number never reaches Temporal, and nothing personal is readable there.

Histories are scanned raw, as the server stores them (and its Web UI and CLI show them
without the codec): no card number, address or email in any byte, every payload but the
search attributes `binary/encrypted`. With the codec the same histories decode and replay.
Scanned: a fresh run of every scenario (paid, declined, out of stock, cancelled before and
after payment, shipped, delivered, past the fulfilment deadline), the committed histories,
and an order placed through the REST API.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.api.history.v1 import History
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from core.messages import OrderStatus, PlaceOrderInput
from tests.api_fixtures import DECLINED_CARD, FLAKY_CARD, GOOD_CARD, SHIPPING_ADDRESS, Stack
from tests.conftest import CONVERTER, HISTORIES, TEST_PAYLOAD_KEYS
from tests.test_codec import parsed, payloads_in, post_payloads, serving
from workflows import record
from workflows.replay import build_replayer, load_history_file, replay, workflow_type_of

pytestmark = pytest.mark.timeout(120)

CARDS = (GOOD_CARD, DECLINED_CARD, FLAKY_CARD)
# The recorder's customer; a country code (two letters) is too short to look for in bytes.
RECORDED_SECRETS = (*CARDS, record.EMAIL, *record.ADDRESS.model_dump(exclude={"country"}).values())
SCENARIO_STATUSES = {
    "order-paid-delivered": OrderStatus.DELIVERED,
    "order-payment-declined": OrderStatus.FAILED,
    "order-out-of-stock": OrderStatus.FAILED,
    "order-cancel-before-payment": OrderStatus.CANCELLED,
    "order-cancel-after-payment": OrderStatus.CANCELLED,
    "order-fulfilment-deadline": OrderStatus.CANCELLED,
}


def assert_sealed(history: WorkflowHistory, secrets: tuple[str | None, ...]) -> None:
    """No secret in the stored bytes; every payload but the search attributes encrypted."""
    stored = History(events=history.events)
    raw = stored.SerializeToString()
    for secret in filter(None, secrets):
        assert secret.encode() not in raw, f"{history.workflow_id} holds {secret!r} in clear"
    found = list(payloads_in(stored))
    clear = [p for path, p in found if ".search_attributes." in path]
    sealed = [(path, p) for path, p in found if ".search_attributes." not in path]
    assert sealed, history.workflow_id
    for path, p in sealed:
        assert p.metadata["encoding"] == b"binary/encrypted", f"{history.workflow_id}{path}"
        assert p.metadata["encryption-key-id"] == b"test1", f"{history.workflow_id}{path}"
    # Readable, so the Web UI and `--query 'OrderStatus="PAID"'` can filter on them.
    for p in clear:
        assert p.metadata["encoding"] == b"json/plain"
        assert isinstance(json.loads(p.data), str)


async def assert_decodes_and_replays(histories: list[WorkflowHistory]) -> None:
    """With the test keys every PlaceOrder input reads back (a token, never a number) and
    every history replays."""
    for history in histories:
        if workflow_type_of(history) != "PlaceOrder":
            continue
        started = history.events[0].workflow_execution_started_event_attributes
        [payload] = await CONVERTER.payload_codec.decode(started.input.payloads)  # type: ignore[union-attr]
        inp = CONVERTER.payload_converter.from_payload(payload, PlaceOrderInput)
        assert inp.card_token.startswith("tok_") and inp.shipping_address is not None
        assert not any(card in payload.data.decode() for card in CARDS)
    outcomes = await replay(_iter(histories), build_replayer(CONVERTER))
    assert [o.line() for o in outcomes if not o.ok] == []
    assert len(outcomes) == len(histories)


async def _iter(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history


async def test_a_run_of_every_scenario_is_sealed_on_the_server(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    address = dev_env.client.service_client.config.target_host
    written = await record.record(
        tmp_path, dev_env.client, address, list(record.SCENARIOS), check_cli=False
    )
    histories = [load_history_file(p) for p in written]
    # Every scenario ran to the end it is named after (shipped and delivered on the way).
    for history in histories:
        if history.workflow_id in SCENARIO_STATUSES:
            [result] = history.events[
                -1
            ].workflow_execution_completed_event_attributes.result.payloads
            [clear] = await CONVERTER.payload_codec.decode([result])  # type: ignore[union-attr]
            status = json.loads(clear.data)["status"]
            assert status == SCENARIO_STATUSES[history.workflow_id], history.workflow_id
    assert set(SCENARIO_STATUSES) <= {h.workflow_id for h in histories}
    for history in histories:
        assert_sealed(history, RECORDED_SECRETS)
    await assert_decodes_and_replays(histories)


async def test_the_committed_histories_are_sealed_and_replay_with_the_test_keys() -> None:
    histories = [load_history_file(p) for p in sorted(HISTORIES.rglob("*.json"))]
    assert {h.workflow_id for h in histories} >= set(SCENARIO_STATUSES)
    for history in histories:
        assert_sealed(history, RECORDED_SECRETS)
    await assert_decodes_and_replays(histories)


async def test_checkout_sends_a_token_and_keeps_the_address_from_every_log_and_history(
    stack: Stack, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    user = await stack.create_user()
    product = await stack.create_product()
    order_id = await stack.place(user["id"], [(product["id"], 1)], card=GOOD_CARD)
    await stack.wait_for(order_id, "PAID")
    assert (await stack.http.post(f"/orders/{order_id}/ship")).status_code in (200, 202)
    assert (await stack.http.post(f"/orders/{order_id}/deliver")).status_code in (200, 202)
    order = await stack.wait_for(order_id, "DELIVERED")

    # The order keeps its address and shows it; the shipment notice names it.
    assert order["shipping_address"] == SHIPPING_ADDRESS | {"line2": None}
    notes = (await stack.http.get(f"/users/{user['id']}/notifications")).json()
    [shipped] = [n for n in notes if n["kind"] == "ORDER_SHIPPED"]
    assert (
        "12 St James's Square" in shipped["message"] and "SW1Y 4JH London, GB" in shipped["message"]
    )

    # Temporal has neither the card nor the address nor the email in clear, anywhere.
    handle = stack.client.get_workflow_handle(f"order-{order_id}")
    history = await handle.fetch_history()
    address = tuple(v for k, v in SHIPPING_ADDRESS.items() if k != "country")
    assert_sealed(history, (GOOD_CARD, user["email"], *address))
    await assert_decodes_and_replays([history])

    # The codec server, as the Web UI calls it, gives the operator the order back: a token.
    settings = Settings(
        data_dir=tmp_path, payload_keys=TEST_PAYLOAD_KEYS, jwt_secret=SecretStr("x")
    )
    started = history.events[0].workflow_execution_started_event_attributes
    async with serving(settings) as http:
        [decoded] = parsed(await post_payloads(http, "/decode", list(started.input.payloads)))
    shown = json.loads(decoded.data)
    assert shown["card_token"].startswith("tok_") and "card_number" not in shown
    assert shown["shipping_address"]["postal_code"] == "SW1Y 4JH"

    # Nor does any log line of the API, the worker or the services.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "tokenized" in logged  # the logs were captured
    assert GOOD_CARD not in logged
