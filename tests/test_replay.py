"""Replay tests: recorded histories of real runs (tests/histories, written by
`make record-histories`) must replay against the current workflow code, and the replay
must catch a history or a workflow that changed underneath. The life of a patch
(docs/changing-workflows.md) is shown here too, on tests/changed_workflows.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker
from temporalio.workflow import NondeterminismError

import worker
from core.codec import generate_payload_key
from core.db import make_engine
from core.grpc_client import Stubs
from core.messages import OrderItem, OrderSnapshot, OrderStatus, PlaceOrderInput, workflow_id_for
from services.server import create_server
from tests.changed_workflows import ChangedPlaceOrder, DeprecatedPlaceOrder, PatchedPlaceOrder
from tests.conftest import CONVERTER, TEST_PAYLOAD_KEYS
from workflows.cancel_order import CancelOrder
from workflows.place_order import PlaceOrder
from workflows.record import ADDRESS
from workflows.replay import build_replayer, load_history_file, replay, workflow_type_of

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
HISTORIES = ROOT / "tests" / "histories"
# Every file, subfolders too: after a release, its recordings stay (in a subfolder named
# after it) beside those of the code since (docs/changing-workflows.md).
FILES = sorted(HISTORIES.rglob("*.json"))
SCENARIOS = [
    "order-paid-delivered",
    "order-payment-declined",
    "order-out-of-stock",
    "order-cancel-before-payment",
    "order-cancel-after-payment",
    "cancel-cancel-after-payment",
    "order-fulfilment-deadline",
    "cart-user-replay-reminded",
    # A Cart that continued as new: each run of the chain.
    "cart-user-replay-continued-1",
    "cart-user-replay-continued-2",
]


async def _iter(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history


def place_order_histories() -> list[WorkflowHistory]:
    histories = [load_history_file(p) for p in FILES]
    return [h for h in histories if workflow_type_of(h) == "PlaceOrder"]


def run_replay_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m workflows.replay ...` with the test keys (the recordings' PAYLOAD_KEYS)."""
    return subprocess.run(
        [sys.executable, "-m", "workflows.replay", *args],
        cwd=ROOT,
        env={**os.environ, "PAYLOAD_KEYS": TEST_PAYLOAD_KEYS.get_secret_value()},
        capture_output=True,
        text=True,
        timeout=60,
    )


def result_lines(out: str) -> list[str]:
    """The per-history lines, without the summary."""
    return [line for line in out.splitlines() if "\t" in line]


# --- the recorded histories --------------------------------------------------------------


def test_histories_cover_every_scenario_and_every_workflow_type() -> None:
    stems = [p.stem for p in FILES]
    missing = [s for s in SCENARIOS if not any(stem.startswith(s) for stem in stems)]
    assert not missing, f"no history for {missing}: run `make record-histories`"
    types = {workflow_type_of(load_history_file(p)) for p in FILES}
    assert {"PlaceOrder", "CancelOrder", "Cart"} <= types


async def test_every_recorded_history_replays() -> None:
    outcomes = await replay(_iter([load_history_file(p) for p in FILES]), build_replayer(CONVERTER))
    assert len(outcomes) == len(FILES)
    failed = [o.line() for o in outcomes if not o.ok]
    assert not failed, "\n".join(failed)


def test_replay_cli_on_the_histories_folder() -> None:
    # A folder is searched with its subfolders (the recordings of earlier releases).
    proc = run_replay_cli(str(HISTORIES.relative_to(ROOT)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = result_lines(proc.stdout)
    assert len(lines) == len(FILES)
    assert all(line.endswith("\tOK") for line in lines), proc.stdout
    assert {line.split("\t")[0] for line in lines} == {p.stem for p in FILES}


def test_replay_cli_with_other_keys_fails_naming_the_missing_key() -> None:
    other = generate_payload_key("prod1")
    env = {**os.environ, "PAYLOAD_KEYS": other}
    cmd = [sys.executable, "-m", "workflows.replay", str(HISTORIES / "order-paid-delivered.json")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "'test1', which is not in PAYLOAD_KEYS" in proc.stdout + proc.stderr
    malformed = subprocess.run(
        cmd, cwd=ROOT, env={**env, "PAYLOAD_KEYS": "k1:c2VjcmV0"}, capture_output=True, text=True
    )
    assert malformed.returncode == 1 and "AES-256 needs 32" in malformed.stderr
    assert "c2VjcmV0" not in malformed.stderr


# --- teeth: a changed history ------------------------------------------------------------


def tampered(data: dict[str, Any]) -> dict[str, Any]:
    """The history with its first scheduled activity renamed: not what the code does."""
    for event in data["events"]:
        attrs = event.get("activityTaskScheduledEventAttributes")
        if attrs is not None:
            name = attrs["activityType"]["name"]
            attrs["activityType"]["name"] = "release_stock" if name == "refund" else "refund"
            return data
    raise AssertionError("no ActivityTaskScheduled event")


@pytest.mark.parametrize(
    "name",
    [
        "order-paid-delivered.json",
        "cart-user-replay-reminded.json",
        "cancel-cancel-after-payment.json",
    ],
)
async def test_a_tampered_history_of_each_workflow_fails_replay(tmp_path: Path, name: str) -> None:
    """PlaceOrder, Cart and CancelOrder alike: a history that is not what the code does
    fails the gate."""
    bad = tmp_path / f"tampered-{name}"
    bad.write_text(json.dumps(tampered(json.loads((HISTORIES / name).read_text())), indent=2))
    [outcome] = await replay(_iter([load_history_file(bad)]), build_replayer(CONVERTER))
    assert not outcome.ok
    assert "nondetermin" in (outcome.error or "").lower(), outcome.error


async def test_a_tampered_history_fails_the_replay_cli(tmp_path: Path) -> None:
    source = HISTORIES / "order-paid-delivered.json"
    bad = tmp_path / "order-tampered.json"
    bad.write_text(json.dumps(tampered(json.loads(source.read_text())), indent=2))

    # Together with a good one: the good one is OK, the bad one fails, the exit code says so.
    (tmp_path / source.name).write_text(source.read_text())
    proc = run_replay_cli(str(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    verdicts = {line.split("\t")[0]: line.split("\t")[-1] for line in result_lines(proc.stdout)}
    assert verdicts["order-paid-delivered"] == "OK"
    assert verdicts["order-tampered"].startswith("FAIL"), proc.stdout


# --- teeth: a changed workflow, and the life of a patch ---------------------------------


async def replay_failure(workflow: type, history: WorkflowHistory) -> Exception | None:
    """Why `history` does not replay on `workflow` (registered as PlaceOrder), or None."""
    replayer = Replayer(
        workflows=[workflow, CancelOrder],
        data_converter=CONVERTER,
        workflow_runner=worker.WORKFLOW_RUNNER,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return result.replay_failure


async def test_a_new_activity_without_patched_is_nondeterministic() -> None:
    histories = place_order_histories()
    assert histories
    for history in histories:
        failure = await replay_failure(ChangedPlaceOrder, history)
        assert isinstance(failure, NondeterminismError), history.workflow_id


async def test_the_same_change_behind_patched_replays() -> None:
    for history in place_order_histories():
        failure = await replay_failure(PatchedPlaceOrder, history)
        assert failure is None, f"{history.workflow_id}: {failure}"


@pytest.fixture(scope="module")
async def services(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Stubs, Engine]]:
    """The real services on a free port over SQLite (migrated), and stubs to them."""
    tmp = tmp_path_factory.mktemp("replay")
    engine = make_engine(f"sqlite:///{tmp}/shop.db")
    server, port = create_server("127.0.0.1:0", engine, fault_rate=0.0)
    await server.start()
    try:
        async with Stubs.open(f"127.0.0.1:{port}") as stubs:
            yield stubs, engine
    finally:
        await server.stop(grace=1)
        engine.dispose()


async def run_order(
    env: WorkflowEnvironment, services: tuple[Stubs, Engine], workflow: type
) -> WorkflowHistory:
    """Runs one order on a worker with `workflow` as PlaceOrder; its history. The customer
    is unknown, so the order fails at once."""
    order_id = f"replay-{uuid.uuid4().hex[:8]}"
    task_queue = f"replay-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[workflow, CancelOrder],
        activities=worker.build_activities(*services),
        workflow_runner=worker.WORKFLOW_RUNNER,
    ):
        handle = await env.client.start_workflow(
            "PlaceOrder",
            PlaceOrderInput(
                order_id=order_id,
                user_id="nobody",
                items=[OrderItem(product_id="nothing", quantity=1)],
                card_token="tok_never_charged",
                shipping_address=ADDRESS,
            ),
            id=workflow_id_for(order_id),
            task_queue=task_queue,
            result_type=OrderSnapshot,
        )
        snap = await handle.result()
    assert snap.status == OrderStatus.FAILED and snap.failure_reason == "USER_NOT_FOUND"
    return await handle.fetch_history()


def patch_markers(history: WorkflowHistory) -> int:
    return sum(e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED for e in history.events)


def first_activity(history: WorkflowHistory) -> str:
    return next(
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )


async def test_the_life_of_a_patch(
    dev_env: WorkflowEnvironment, services: tuple[Stubs, Engine]
) -> None:
    before = place_order_histories()  # recorded before the change
    # 1. The change behind `patched`: the runs from before it replay (above), and new runs
    #    take the new path and record the patch's marker.
    assert {first_activity(h) for h in before} == {"save_order"}
    patched = await run_order(dev_env, services, PatchedPlaceOrder)
    assert (patch_markers(patched), first_activity(patched)) == (1, "send_notification")
    assert await replay_failure(PatchedPlaceOrder, patched) is None

    # 2. Once no run from before the change is left: `deprecate_patch` and only the new
    #    path. It replays the runs of step 1, but would break one from before the change.
    assert await replay_failure(DeprecatedPlaceOrder, patched) is None
    assert isinstance(await replay_failure(DeprecatedPlaceOrder, before[0]), NondeterminismError)
    deprecated = await run_order(dev_env, services, DeprecatedPlaceOrder)

    # 3. Once no run from step 1 is left either: the call removed. It replays the runs of
    #    step 2 (their marker is marked deprecated), but not those of step 1.
    assert await replay_failure(ChangedPlaceOrder, deprecated) is None
    failure = await replay_failure(ChangedPlaceOrder, patched)
    assert isinstance(failure, NondeterminismError)
    assert "patch marker" in str(failure), failure


# --- histories fetched from a server -----------------------------------------------------


@pytest.fixture(scope="module")
async def finished_order(dev_env: WorkflowEnvironment, services: tuple[Stubs, Engine]) -> str:
    """A PlaceOrder run to its end on the dev server: an unknown customer, so it fails fast."""
    workflow_id = (await run_order(dev_env, services, PlaceOrder)).workflow_id
    # Visibility (what --query lists) catches up with the workflow's end asynchronously.
    query = f'WorkflowId="{workflow_id}" AND ExecutionStatus="Completed"'
    for _ in range(300):
        if [wf async for wf in dev_env.client.list_workflows(query)]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"{query} listed nothing within 30 s")
    return workflow_id


def address_of(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


@pytest.mark.parametrize("mode", ["--workflow-id", "--query"])
def test_replay_cli_fetches_from_the_server(
    dev_env: WorkflowEnvironment, finished_order: str, mode: str
) -> None:
    arg = finished_order if mode == "--workflow-id" else f'WorkflowId="{finished_order}"'
    proc = run_replay_cli("--address", address_of(dev_env), mode, arg)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [line] = result_lines(proc.stdout)
    wid, wtype, _events, verdict = line.split("\t")
    assert (wid, wtype, verdict) == (finished_order, "PlaceOrder", "OK")
