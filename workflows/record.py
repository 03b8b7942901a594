"""Records workflow histories of real runs, for the replay tests in tests/histories.

    python -m workflows.record --out tests/histories            # its own dev server
    python -m workflows.record --out DIR --address HOST:PORT     # an existing server

Starts a Temporal dev server (the `temporal` binary in the venv) unless `--address` is
given, the real gRPC services on a free port over a SQLite database in a temporary
directory, and a real worker on a fresh task queue; seeds a user and two products, then
runs one PlaceOrder (or Cart) per scenario, waits for each to complete and writes its
history as `<workflow_id>.json` (each run of a chain that continued as new:
`<workflow_id>-<n>.json`), in the format `temporal workflow show -o json` writes. Each
file is also fetched with the `temporal` CLI, when it is installed, and must parse to the
same events. Prints one line per file.

Over 400 lines: the scenarios of both workflows, each a few lines, read best side by side.

Payloads are encrypted with the keys in `--keys` (default: `payload-keys.txt` in the
output folder, generated there when missing): the test keys the replay tests read.

Until a release is tagged, an intended change to a workflow re-records them; after a tag,
a change goes behind `workflow.patched` and the old histories stay (docs/changing-workflows.md).
Never re-record to make a nondeterminism error go away: the old histories are what running
workflows look like.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from core.codec import data_converter, generate_payload_key
from core.config import Settings
from core.db import make_engine
from core.grpc_client import Stubs
from core.messages import (
    CUSTOMER_ID,
    ORDER_STATUS,
    SEARCH_ATTRIBUTES,
    CancelRequest,
    CartCheckedOut,
    CartInput,
    CartState,
    ClearCart,
    FailureReason,
    OrderItem,
    OrderSnapshot,
    OrderStatus,
    PaymentStatus,
    PlaceOrderInput,
    ProductInfo,
    SetCartItem,
    ShippingAddress,
    cancel_workflow_id_for,
    cart_workflow_id_for,
    initial_stock_key,
    workflow_id_for,
)
from core.runtime import exit_now
from core.temporal import connect_config
from proto.shop.v1 import (
    inventory_pb2,
    payment_pb2,
    product_pb2,
    user_pb2,
)
from services.server import create_server
from worker import build_activities, build_worker

PAYS = "4242424242424242"
DECLINED = "4000000000000002"
# Fails with a transient processing error on its first two attempts, then pays: the
# retries keep the order RESERVED for a second or two, long enough to cancel it there.
FLAKY = "4000000000000119"

USER_ID = "user-replay"
EMAIL = "replay@example.com"
ADDRESS = ShippingAddress(
    name="Ada Replay", line1="1 Recording Lane", city="Histon", postal_code="CB24 9ZZ", country="GB"
)
BOOK = "product-book"  # plenty of stock
SCARCE = "product-scarce"  # one unit
WAIT = timedelta(seconds=60)

Handle = WorkflowHandle[object, OrderSnapshot]


@dataclass(frozen=True)
class Recorded:
    """One run to record; `name` (the file's stem) tells apart the runs of one chain."""

    workflow_id: str
    run_id: str | None = None
    name: str | None = None

    @property
    def stem(self) -> str:
        return self.name or self.workflow_id


@dataclass
class Recorder:
    client: Client
    task_queue: str
    stubs: Stubs

    async def start(
        self,
        order_id: str,
        card: str = PAYS,
        product: str = BOOK,
        quantity: int = 1,
        fulfilment_deadline_seconds: int | None = None,
    ) -> Handle:
        # As the API does: the card number goes to the payment service, the token on.
        token = await self.stubs.payment.TokenizeCard(
            payment_pb2.TokenizeCardRequest(user_id=USER_ID, card_number=card)
        )
        inp = PlaceOrderInput(
            order_id=order_id,
            user_id=USER_ID,
            items=[OrderItem(product_id=product, quantity=quantity)],
            card_token=token.token,
            shipping_address=ADDRESS,
            fulfilment_deadline_seconds=fulfilment_deadline_seconds,
        )
        # Started as the API starts an order, search attributes set.
        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(ORDER_STATUS, OrderStatus.PENDING.value),
                SearchAttributePair(CUSTOMER_ID, USER_ID),
            ]
        )
        return await self.client.start_workflow(
            "PlaceOrder",
            inp,
            id=workflow_id_for(order_id),
            task_queue=self.task_queue,
            result_type=OrderSnapshot,
            execution_timeout=WAIT,
            search_attributes=attributes,
        )

    async def set_item(self, inp: CartInput, product_id: str, quantity: int) -> CartState:
        """As the API changes a cart: the product looked up, then update-with-start."""
        p = await self.stubs.product.GetProduct(product_pb2.GetProductRequest(id=product_id))
        info = ProductInfo(
            id=p.id, sku=p.sku, name=p.name, price_cents=p.price_cents, active=p.active
        )
        start: WithStartWorkflowOperation[Any, CartState] = WithStartWorkflowOperation(
            "Cart",
            inp,
            id=cart_workflow_id_for(inp.user_id),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            result_type=CartState,
        )
        req = SetCartItem(product_id=product_id, quantity=quantity, product=info)
        state: CartState = await self.client.execute_update_with_start_workflow(
            "set_item", req, start_workflow_operation=start, result_type=CartState
        )
        return state


async def status_of(handle: Handle) -> OrderStatus:
    snap: OrderSnapshot = await handle.query("status", result_type=OrderSnapshot)
    return snap.status


async def wait_status(handle: Handle, status: OrderStatus) -> None:
    """Polls the `status` query (queries leave no trace in the history)."""
    for _ in range(int(WAIT.total_seconds() / 0.02)):
        now = await status_of(handle)
        if now == status:
            return
        if now.is_final:
            raise RuntimeError(f"{handle.id} ended {now} before reaching {status}")
        await asyncio.sleep(0.02)
    raise RuntimeError(f"{handle.id} never reached {status}")


def expect(snap: OrderSnapshot, status: OrderStatus, reason: FailureReason | None = None) -> None:
    if snap.status != status or snap.failure_reason != reason:
        raise RuntimeError(
            f"{snap.order_id}: expected {status} {reason}, got {snap.status} {snap.failure_reason}"
        )


# --- scenarios: each returns the workflow ids whose histories it records ----------------


async def paid_delivered(r: Recorder) -> list[str | Recorded]:
    h = await r.start("paid-delivered", quantity=2)
    await wait_status(h, OrderStatus.PAID)
    await h.execute_update("request_ship", result_type=OrderSnapshot)
    await h.execute_update("request_deliver", result_type=OrderSnapshot)
    expect(await h.result(), OrderStatus.DELIVERED)
    return [h.id]


async def payment_declined(r: Recorder) -> list[str | Recorded]:
    h = await r.start("payment-declined", card=DECLINED)
    expect(await h.result(), OrderStatus.FAILED, FailureReason.PAYMENT_DECLINED)
    return [h.id]


async def out_of_stock(r: Recorder) -> list[str | Recorded]:
    h = await r.start("out-of-stock", product=SCARCE, quantity=2)
    expect(await h.result(), OrderStatus.FAILED, FailureReason.OUT_OF_STOCK)
    return [h.id]


async def cancel_before_payment(r: Recorder) -> list[str | Recorded]:
    h = await r.start("cancel-before-payment", card=FLAKY)
    await wait_status(h, OrderStatus.RESERVED)
    await h.signal("cancel", CancelRequest(reason="changed my mind"))
    snap = await h.result()
    expect(snap, OrderStatus.CANCELLED, FailureReason.CANCELLED_BY_CUSTOMER)
    if snap.payment_status != PaymentStatus.NONE:
        raise RuntimeError(f"{h.id}: the cancel came after the charge ({snap.payment_status})")
    return [h.id]


async def cancel_after_payment(r: Recorder) -> list[str | Recorded]:
    order_id = "cancel-after-payment"
    h = await r.start(order_id)
    await wait_status(h, OrderStatus.PAID)
    await h.execute_update(
        "request_cancel", CancelRequest(reason="too late"), result_type=OrderSnapshot
    )
    expect(await h.result(), OrderStatus.CANCELLED, FailureReason.CANCELLED_BY_CUSTOMER)
    child = r.client.get_workflow_handle(cancel_workflow_id_for(order_id))
    await child.result()
    return [h.id, child.id]


async def fulfilment_deadline(r: Recorder) -> list[str | Recorded]:
    h = await r.start("fulfilment-deadline", fulfilment_deadline_seconds=3)
    expect(await h.result(), OrderStatus.CANCELLED, FailureReason.NOT_SHIPPED)
    return [h.id]


async def cart_reminded(r: Recorder) -> list[str | Recorded]:
    """A cart filled and changed, reminded once, checked out by version, emptied, closed."""
    inp = CartInput(user_id=f"{USER_ID}-reminded", reminder_seconds=1, idle_close_seconds=2)
    await r.set_item(inp, BOOK, 2)
    await r.set_item(inp, SCARCE, 1)
    try:  # refused by the validator: never in the history
        await r.set_item(inp, BOOK, 100)
        raise RuntimeError("a quantity of 100 was accepted")
    except WorkflowUpdateFailedError:
        pass
    state = await r.set_item(inp, SCARCE, 0)
    handle = r.client.get_workflow_handle(cart_workflow_id_for(inp.user_id), result_type=CartState)
    for _ in range(int(WAIT.total_seconds() / 0.05)):
        if (await handle.query("cart", result_type=CartState)).reminded_version == state.version:
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError(f"{handle.id} sent no reminder")
    read = await r.set_item(inp, BOOK, 3)
    await r.set_item(inp, SCARCE, 1)
    done = CartCheckedOut(order_id="order-from-cart", version=read.version)
    left = await handle.execute_update("checked_out", done, result_type=CartState)
    if [li.product_id for li in left.items] != [SCARCE]:
        raise RuntimeError(f"{handle.id}: the checkout took {left.items}")
    await handle.execute_update("clear", ClearCart(), result_type=CartState)
    if (await handle.result()).items:
        raise RuntimeError(f"{handle.id} closed with items")
    return [handle.id]


async def cart_continued(r: Recorder) -> list[str | Recorded]:
    """A cart whose history grows past its bound: it continues as new, then closes."""
    inp = CartInput(
        user_id=f"{USER_ID}-continued",
        reminder_seconds=3600,
        idle_close_seconds=1,
        max_history_events=12,
    )
    wid = cart_workflow_id_for(inp.user_id)
    runs: list[str] = []
    for quantity in range(1, 7):
        await r.set_item(inp, BOOK, quantity)
        run_id = (await r.client.get_workflow_handle(wid).describe()).run_id
        if run_id not in runs:
            runs.append(run_id)
    final = await r.client.get_workflow_handle(wid, result_type=CartState).result()
    if len(runs) < 2 or final.version != 6:
        raise RuntimeError(f"{wid}: {len(runs)} run(s), version {final.version}")
    return [Recorded(wid, run, f"{wid}-{n}") for n, run in enumerate(runs, start=1)]


SCENARIOS: dict[str, Callable[[Recorder], Awaitable[list[str | Recorded]]]] = {
    "paid_delivered": paid_delivered,
    "payment_declined": payment_declined,
    "out_of_stock": out_of_stock,
    "cancel_before_payment": cancel_before_payment,
    "cancel_after_payment": cancel_after_payment,
    "fulfilment_deadline": fulfilment_deadline,
    "cart_reminded": cart_reminded,
    "cart_continued": cart_continued,
}


# --- the stack ---------------------------------------------------------------------------


def temporal_cli() -> str | None:
    path = Path(sys.executable).parent / "temporal"
    return str(path) if path.exists() else shutil.which("temporal")


async def seed(stubs: Stubs) -> None:
    users, products, inventory = stubs.user, stubs.product, stubs.inventory
    await users.CreateUser(user_pb2.CreateUserRequest(id=USER_ID, email=EMAIL, name="Replay"))
    for pid, stock in ((BOOK, 100), (SCARCE, 1)):
        await products.CreateProduct(
            product_pb2.CreateProductRequest(
                id=pid,
                sku=pid.upper(),
                name=pid.removeprefix("product-").title(),
                description="for the replay tests",
                price_cents=1500,
                category="books",
            )
        )
        await inventory.AdjustStock(
            inventory_pb2.AdjustStockRequest(
                product_id=pid, delta=stock, idempotency_key=initial_stock_key(pid)
            )
        )


def check_with_cli(cli: str, address: str, namespace: str, path: Path, run: Recorded) -> None:
    """The CLI's own `workflow show -o json` must parse to the same events as our file."""
    which = ["--run-id", run.run_id] if run.run_id else []
    shown = subprocess.run(
        [cli, "workflow", "show", "--workflow-id", run.workflow_id, *which, "-o", "json"]
        + ["--address", address, "--namespace", namespace],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    ours = WorkflowHistory.from_json(path.stem, path.read_text())
    theirs = WorkflowHistory.from_json(path.stem, shown)
    if list(ours.events) != list(theirs.events):
        raise RuntimeError(f"{path.name} differs from `temporal workflow show -o json`")


async def record(
    out: Path, client: Client, address: str, scenarios: list[str], check_cli: bool
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    cli = temporal_cli() if check_cli else None
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="record-") as tmp:
        engine = make_engine(f"sqlite:///{tmp}/shop.db")
        server, port = create_server("127.0.0.1:0", engine, fault_rate=0.0)
        await server.start()
        try:
            async with Stubs.open(f"127.0.0.1:{port}") as stubs:
                await seed(stubs)
                task_queue = f"record-{uuid.uuid4().hex[:8]}"
                recorder = Recorder(client, task_queue, stubs)
                async with build_worker(client, task_queue, build_activities(stubs, engine)):
                    for name in scenarios:
                        for done in await SCENARIOS[name](recorder):
                            run = Recorded(done) if isinstance(done, str) else done
                            handle = client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
                            history = await handle.fetch_history()
                            path = out / f"{run.stem}.json"
                            path.write_text(history.to_json() + "\n")
                            if cli:
                                check_with_cli(cli, address, client.namespace, path, run)
                            written.append(path)
                            size = path.stat().st_size
                            print(f"{path}\t{len(history.events)} events\t{size} bytes", flush=True)
        finally:
            await server.stop(grace=1)
            engine.dispose()
    return written


def converter_for(keys_file: Path) -> DataConverter:
    """The shop's encrypting converter with the keys in `keys_file` (generated if missing)."""
    if not keys_file.exists():
        keys_file.parent.mkdir(parents=True, exist_ok=True)
        keys_file.write_text(generate_payload_key("test1") + "\n")
    keys = SecretStr(keys_file.read_text().strip())
    return data_converter(Settings(payload_keys=keys))


async def amain(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workflows.record", description=__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--out", type=Path, default=Path("tests/histories"))
    p.add_argument("--address", help="an existing Temporal server (default: start a dev server)")
    p.add_argument("--namespace", default="default")
    p.add_argument("--keys", type=Path, help="PAYLOAD_KEYS file (default: OUT/payload-keys.txt)")
    p.add_argument(
        "--scenario", action="append", choices=list(SCENARIOS), help="only these (repeatable)"
    )
    p.add_argument(
        "--no-cli-check", action="store_true", help="skip comparing with `temporal workflow show`"
    )
    args = p.parse_args(argv)
    # The declined, out-of-stock and flaky-card scenarios fail activities on purpose.
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    scenarios = args.scenario or list(SCENARIOS)
    converter = converter_for(args.keys or args.out / "payload-keys.txt")
    if args.address:
        settings = Settings(temporal_address=args.address, temporal_namespace=args.namespace)
        client = await Client.connect(**connect_config(settings), data_converter=converter)
        await record(args.out, client, args.address, scenarios, not args.no_cli_check)
        return 0
    cli = temporal_cli()
    if cli is None:
        p.error("the `temporal` CLI is not installed: run `make install` or give --address")
    env = await WorkflowEnvironment.start_local(
        namespace=args.namespace,
        data_converter=converter,
        dev_server_existing_path=cli,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    try:
        address = env.client.service_client.config.target_host
        await record(args.out, env.client, address, scenarios, not args.no_cli_check)
    finally:
        await env.shutdown()
    return 0


def main() -> None:
    exit_now(asyncio.run(amain()))


if __name__ == "__main__":
    main()
