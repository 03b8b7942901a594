"""The Temporal worker for task queue `orders`: every workflow and activity.

Run: `.venv/bin/python worker.py`. SIGTERM or Ctrl-C stops polling, lets in-flight
activities finish (up to the graceful timeout) and exits.
"""

from __future__ import annotations

import asyncio
import compileall
import logging
import signal
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.inventory import InventoryActivities
from activities.notification import NotificationActivities
from activities.orders import OrderActivities
from activities.payment import PaymentActivities
from activities.product import ProductActivities
from activities.user import UserActivities
from core import telemetry
from core.codec import data_converter
from core.config import Settings, get_settings
from core.db import make_engine, migrate
from core.grpc_client import Stubs, channel_credentials
from core.runtime import exit_now, freeze_startup_objects
from core.temporal import client_interceptors, connect_config
from workflows.cancel_order import CancelOrder
from workflows.cart import Cart
from workflows.place_order import PlaceOrder

log = logging.getLogger("worker")

WORKFLOWS: Sequence[type] = (PlaceOrder, CancelOrder, Cart)
# The worker's configuration that decides how workflow code runs; the replayer
# (`python -m workflows.replay`) uses exactly the same, with `core.codec.data_converter`.
WORKFLOW_RUNNER = SandboxedWorkflowRunner()
WORKFLOWS_DIR = Path(__file__).resolve().parent / "workflows"
# How the worker polls and runs tasks; the benchmark's no-op worker uses the same. More
# pollers than the SDK's 5 each: with ten orders in flight, workflow tasks became ready
# while every sticky poller was busy and waited for one to poll again (`make bench`:
# checkout throughput up about 4%, the no-op's unchanged). Long polls cost the server little.
WORKER_OPTIONS: dict[str, Any] = {
    "graceful_shutdown_timeout": timedelta(seconds=10),
    "max_concurrent_workflow_task_polls": 20,
    "max_concurrent_activity_task_polls": 20,
    # A PAID order's workflow stays open until it ships, and the SDK's default cache keeps
    # 1,000 of them: a full cache made every order cost the worker more (its CPU per order
    # +18% from the first 500 orders to the last of 2,000, peak memory 365 MiB). The orders
    # in flight need a few dozen entries; one that waits to ship replays its ~30 events when
    # `ship` comes. With 100: flat (114 and 112 ms), 195 MiB (docs/benchmarks.md).
    "max_cached_workflows": 100,
}


def compile_sandboxed_modules(*packages: Path) -> None:
    """Byte-compiles the workflow modules. The sandbox runs them afresh for every workflow it
    starts; without a .pyc (PYTHONDONTWRITEBYTECODE=1, a read-only install) that is a
    compile from source each time. Best effort: an unwritable tree only costs speed."""
    for package in packages:
        try:
            compileall.compile_dir(package, quiet=2)
        except OSError as err:
            log.debug("cannot byte-compile %s: %s", package, err)


def build_activities(stubs: Stubs, engine: Engine) -> list[Callable[..., Any]]:
    """Every activity of both workflows, bound to the services' stubs."""
    user = UserActivities(stubs.user)
    product = ProductActivities(stubs.product)
    inventory = InventoryActivities(stubs.inventory)
    payment = PaymentActivities(stubs.payment)
    notification = NotificationActivities(stubs.notification)
    orders = OrderActivities(engine)
    return [
        user.get_user,
        product.get_product,
        inventory.reserve_stock,
        inventory.release_stock,
        payment.charge,
        payment.refund,
        notification.send_notification,
        orders.save_order,
    ]


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A client whose every payload is encrypted with PAYLOAD_KEYS (core.codec); traced when
    tracing is on, on `runtime` (metrics) when given."""
    return await Client.connect(
        **connect_config(settings),
        data_converter=data_converter(settings),
        interceptors=client_interceptors(),
        runtime=runtime,
    )


def build_worker(
    client: Client, task_queue: str, activities: Sequence[Callable[..., Any]]
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=list(activities),
        workflow_runner=WORKFLOW_RUNNER,
        **WORKER_OPTIONS,
    )


async def main() -> None:
    settings = get_settings()
    telemetry.setup(telemetry.WORKER, settings)
    compile_sandboxed_modules(WORKFLOWS_DIR)
    engine = make_engine(settings.database_url)
    migrate(engine)
    client = await connect(settings, telemetry.worker_runtime(settings))
    # No retries in the channel: Temporal retries each activity, visibly in its history.
    async with Stubs.open(
        settings.grpc_target, channel_credentials(settings), retry=False
    ) as stubs:
        worker = build_worker(client, settings.temporal_task_queue, build_activities(stubs, engine))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with worker:
            freeze_startup_objects()
            log.info(
                "worker polling task queue %r on %s",
                settings.temporal_task_queue,
                settings.temporal_target,
            )
            await stop.wait()
            log.info("shutting down: finishing in-flight activities")
    engine.dispose()
    telemetry.shutdown()
    log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
    exit_now(0)
