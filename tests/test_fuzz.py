"""Fuzzing the REST API from its own OpenAPI schema with schemathesis.

Every operation gets a bounded, derandomized set of generated requests (valid and invalid),
sent to the app in-process (ASGI) on SQLite, with the real gRPC services and worker running
as processes on the session's Temporal dev server. Checks: no 5xx, successful answers match
their documented content type and schema, and the contract's one error shape: every 4xx
body is `{"error": {"code": str, "message": str, ...}}`. (Schemathesis's stricter checks of
how precisely the schema documents validation, e.g. a 422 for a schema-valid card number
such as "", are left out: the validators check more than JSON Schema can say.)

`GET /orders/{order_id}/events` is fuzzed like the rest: generated ids name no order, so it
answers 404 before any stream starts; a request timeout bounds it should one ever stream.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import schemathesis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, settings
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from api.models import PaymentDetails, UserCreate
from core.config import Settings
from tests.harness import free_port

ROOT = Path(__file__).resolve().parent.parent
MAX_EXAMPLES = 25
REQUEST_TIMEOUT = 10.0



def _wait_for_services(target: str, procs: list[subprocess.Popen[bytes]], log: Path) -> None:
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError(f"services did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)


# The schema is the app's own; its routes do not depend on settings. (Built from the dict, not
# with `from_asgi`, so that no lifespan starts at import; `from_fixture` fails on pytest 9.)
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@pytest.fixture(scope="module")
def fuzz_app(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The app, reached in-process; the services and the worker run as processes."""
    data = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(data),
        "DATABASE_URL": f"sqlite:///{data}/shop.db",
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TEMPORAL_TASK_QUEUE": f"fuzz-{uuid.uuid4().hex[:8]}",
        "GRPC_PORT": str(port),
        "GRPC_TARGET": f"127.0.0.1:{port}",
        "FAULT_RATE": "0",
    }
    procs: list[subprocess.Popen[bytes]] = []
    for name, args in (("services", ["-m", "services"]), ("worker", ["worker.py"])):
        with (data / f"{name}.log").open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
                )
            )
    try:
        _wait_for_services(env["GRPC_TARGET"], procs, data / "services.log")
        yield create_app(
            Settings(
                data_dir=data,
                database_url=env["DATABASE_URL"],
                temporal_address=env["TEMPORAL_ADDRESS"],
                temporal_task_queue=env["TEMPORAL_TASK_QUEUE"],
                grpc_target=env["GRPC_TARGET"],
            )
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


@schemathesis.check
def error_shape(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Any) -> None:
    """Every 4xx answers the contract's one error shape."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the error shape: {body}"
    err = body["error"]
    assert isinstance(err, dict), f"not the error shape: {body}"
    assert isinstance(err.get("code"), str) and err["code"], f"no error code: {body}"
    assert isinstance(err.get("message"), str) and err["message"], f"no error message: {body}"
    return None


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_never_fails_on_any_input(case: schemathesis.Case, fuzz_app: Any) -> None:
    checks = schemathesis.checks
    case.call_and_validate(
        app=fuzz_app,
        timeout=REQUEST_TIMEOUT,
        checks=[
            checks.not_a_server_error,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            error_shape,
        ],
    )


@pytest.mark.parametrize(
    "card",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        " 424242424242 ",
        "1234567890123456789",
        "42424242424",  # 11 digits
        "12345678901234567890",  # 20
        "4242-4242-4242-4242",
        "",
        "４２４２４２４２４２４２４２４２",  # full-width digits
    ],
)
def test_the_documented_card_pattern_is_what_checkout_accepts(card: str) -> None:
    schema = create_app().openapi()["components"]["schemas"]["PaymentDetails"]
    documented = re.fullmatch(schema["properties"]["card_number"]["pattern"], card, re.ASCII)
    try:
        PaymentDetails(card_number=card)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == (documented is not None)


@pytest.mark.parametrize(
    "email",
    [
        "ada@example.com",
        "  ada@example.com ",
        "a@b",
        "a@b@c",  # the first @ splits; the rest is the domain
        "ada example@x.com",
        "ada@exa mple.com",
        "@example.com",
        "ada@",
        "ada",
        "ada\u2003@example.com",  # an em space
    ],
)
def test_the_documented_email_pattern_is_what_sign_up_accepts(email: str) -> None:
    schema = create_app().openapi()["components"]["schemas"]["UserCreate"]
    documented = re.fullmatch(schema["properties"]["email"]["pattern"], email)
    try:
        UserCreate(email=email, name="Ada")
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == (documented is not None)
