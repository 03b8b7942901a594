"""Nothing lost under faults: the real processes, injected faults, kills, and every invariant.
(Over 400 lines: the client, the plan and the invariant checks are one experiment.)

The stack (`python -m services`, `worker.py`, `python -m api`, started by tests/harness.py as
`make run` starts them) runs on the session's Temporal dev server with its own SQLite file,
ports and task queue; the services inject faults
(FAULT_RATE=0.2, a fixed FAULT_SEED: mutating RPCs fail with UNAVAILABLE, half of them after
committing). Two hundred checkouts are sent 20 at a time, each with an Idempotency-Key and
retried with the same key on network errors and 5xx (some deliberately sent twice), while
the worker is SIGKILLed and restarted, then the services, then the API. A third of the paid
orders are then cancelled (some twice at once) while the worker is killed again. Once every
order has settled, the contract's invariants are checked against the services' own tables
(read directly from the SQLite file) and against the REST API, and the figures are printed.

Run it alone: `.venv/bin/python -m pytest tests/chaos -s`.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from sqlalchemy import create_engine
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from core.messages import initial_stock_key
from core.secrets import resolved_admin_password
from orders.models import OrderRecord
from proto.shop.v1 import inventory_pb2, inventory_pb2_grpc
from services.inventory.models import AdjustmentRow, ReservationLineRow, ReservationRow, StockRow
from services.notification.models import NotificationRow
from services.payment.models import LedgerRow, PaymentRow
from tests.api_fixtures import DECLINED_CARD as DECLINED
from tests.api_fixtures import FLAKY_CARD as FLAKY
from tests.api_fixtures import GOOD_CARD as PAYS
from tests.api_fixtures import PASSWORD, SHIPPING_ADDRESS, bearer
from tests.harness import RunningStack, running_stack

pytestmark = pytest.mark.timeout(400)

FAULT_RATE = 0.2
FAULT_SEED = 4242
PLAN_SEED = 7
N_ORDERS = 200
N_USERS = 10
CONCURRENCY = 20
# (price_cents, stock): the last one sells out early, the others part-way.
PRODUCTS = [(1250, 80), (990, 70), (4500, 60), (2999, 50), (350, 40), (15000, 5)]
LIVE = {"PAID", "SHIPPED", "DELIVERED"}
NOTICE = {"PAID": "ORDER_CONFIRMED", "FAILED": "ORDER_FAILED", "CANCELLED": "ORDER_CANCELLED"}
REQUEST_DEADLINE = 150.0  # how long a client keeps retrying one request
SETTLE_TIMEOUT = 180.0
INJECTED = re.compile(r"injected fault (before|after) /shop\.v1\.(\w+)/(\w+)")


async def until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


# --- the processes -------------------------------------------------------------------------


def faults(stack: RunningStack) -> Counter[str]:
    """Injected faults counted from the services' log (every start): by when and by method."""
    found: Counter[str] = Counter()
    for when, _service, method in INJECTED.findall(stack.log("services")):
        found["total"] += 1
        found[when] += 1
        found[method] += 1
    return found


@dataclass
class Chaos:
    stack: RunningStack
    db: Path
    client: Client


@pytest.fixture
async def chaos(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Chaos]:
    data = tmp_path_factory.mktemp("chaos")
    address = dev_env.client.service_client.config.target_host
    # Only the services read FAULT_RATE: the worker and the API inject nothing.
    # No rate limits: every client of the test comes from one address.
    settings = {
        "fault_rate": FAULT_RATE,
        "fault_seed": FAULT_SEED,
        "log_level": "INFO",
        "rate_limit": "0",
        "login_rate_limit": "0",
    }
    async with running_stack(address, data, **settings) as stack:
        try:
            yield Chaos(stack, data / "shop.db", dev_env.client)
        finally:
            # PAID orders' workflows wait for shipping for days: end them with the test.
            await _terminate_running(dev_env.client, stack.task_queue)


async def _terminate_running(client: Client, task_queue: str) -> None:
    """Ends the run's open workflows: the session's dev server serves the next tests."""
    query = f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'"
    ids = [wf.id async for wf in client.list_workflows(query)]
    sem = asyncio.Semaphore(CONCURRENCY)

    async def end(wf_id: str) -> None:
        async with sem:
            try:
                await client.get_workflow_handle(wf_id).terminate("chaos test over")
            except RPCError as err:  # it may have ended meanwhile
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise

    await asyncio.gather(*(end(i) for i in ids))


# --- the client ----------------------------------------------------------------------------


class Api:
    """REST calls retried on network errors and 5xx (the same request, the same key), as
    the admin unless a customer's headers (`as_user`) are given."""

    def __init__(self, base: str) -> None:
        self.tokens: dict[str, str] = {}
        self.http = httpx.AsyncClient(
            base_url=base,
            timeout=httpx.Timeout(45.0, connect=5.0),
            limits=httpx.Limits(max_connections=60, max_keepalive_connections=30),
        )
        self.stats: Counter[str] = Counter()

    async def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        delay, deadline = 0.2, time.monotonic() + REQUEST_DEADLINE
        while True:
            self.stats["requests"] += 1
            try:
                r = await self.http.request(method, path, **kw)
            except httpx.TransportError as err:
                self.stats["network errors"] += 1
                last = f"{type(err).__name__}: {err}"
            else:
                if r.status_code < 500:
                    return r
                self.stats[f"http {r.status_code}"] += 1
                last = f"{r.status_code} {r.text[:300]}"
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} still failing after retries: {last}")
            self.stats["retries"] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def log_in(self, email: str, password: str) -> str:
        r = await self.call("POST", "/auth/token", data={"username": email, "password": password})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def as_user(self, user_id: str) -> dict[str, str]:
        return bearer(self.tokens[user_id])


async def adjust_stock(target: str, product_id: str, delta: int) -> None:
    """The initial stocking POST /products does, with its idempotency key, retried."""
    req = inventory_pb2.AdjustStockRequest(
        product_id=product_id, delta=delta, idempotency_key=initial_stock_key(product_id)
    )
    async with grpc.aio.insecure_channel(target) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        for _ in range(100):
            try:
                await stub.AdjustStock(req, timeout=5)
                return
            except grpc.aio.AioRpcError as err:
                if err.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    raise
                await asyncio.sleep(0.2)
    raise AssertionError(f"could not stock {product_id}")


async def create_product(api: Api, target: str, n: int, price: int, stock: int) -> str:
    sku = f"chaos-{uuid.uuid4().hex[:10]}"
    body = {
        "sku": sku,
        "name": f"Chaos product {n}",
        "description": "chaos test",
        "price_cents": price,
        "stock": stock,
        "category": "chaos",
    }
    r = await api.call("POST", "/products", json=body)
    if r.status_code == 201:
        return str(r.json()["id"])
    # An earlier attempt created the product, then failed (a fault after commit, or one in
    # the initial stocking): find it by sku and finish its stocking under the same key.
    assert r.status_code == 409, r.text
    api.stats["products found by sku after 409"] += 1
    listing = await api.call("GET", "/products", params={"category": "chaos"})
    assert listing.status_code == 200, listing.text
    (found,) = [p for p in listing.json() if p["sku"] == sku]
    await adjust_stock(target, found["id"], stock)
    return str(found["id"])


async def create_user(api: Api, n: int) -> str:
    # POST /users has no idempotency key and users cannot be looked up by email: when an
    # attempt committed and then failed, the retry's 409 leaves an orphan; use a new email.
    for _ in range(10):
        email = f"chaos-{n}-{uuid.uuid4().hex[:8]}@example.com"
        body = {"email": email, "name": f"User {n}", "password": PASSWORD}
        r = await api.call("POST", "/users", json=body)
        if r.status_code == 201:
            user_id = str(r.json()["id"])
            api.tokens[user_id] = await api.log_in(email, PASSWORD)
            return user_id
        assert r.status_code == 409, r.text
        api.stats["users re-created after 409"] += 1
    raise AssertionError("could not create a user")


# --- the plan ------------------------------------------------------------------------------


@dataclass
class Planned:
    key: str
    user: str
    items: list[tuple[str, int]]
    card: str
    twice: bool
    order_id: str = ""

    @property
    def body(self) -> dict[str, Any]:
        return {
            "user_id": self.user,
            "items": [{"product_id": p, "quantity": q} for p, q in self.items],
            "payment": {"card_number": self.card},
            "shipping_address": SHIPPING_ADDRESS,
        }


def plan_orders(rng: random.Random, users: list[str], products: list[str]) -> list[Planned]:
    plan = []
    for _ in range(N_ORDERS):
        roll = rng.random()
        card = DECLINED if roll < 0.12 else FLAKY if roll < 0.25 else PAYS
        chosen = rng.sample(products, 2 if rng.random() < 0.3 else 1)
        items = [(p, rng.choices((1, 2, 3), weights=(6, 3, 1))[0]) for p in chosen]
        plan.append(
            Planned(uuid.uuid4().hex, rng.choice(users), items, card, twice=rng.random() < 0.1)
        )
    return plan


# --- the truth -----------------------------------------------------------------------------


@dataclass
class Truth:
    orders: dict[str, OrderRecord]
    stock: dict[str, int]
    stocked: dict[str, int]
    reservations: dict[str, str]
    lines: dict[str, dict[str, int]]
    payments: dict[str, PaymentRow]
    ledger: dict[str, list[LedgerRow]]
    notices: dict[str, Counter[str]]
    notice_users: dict[str, set[str]]


def read_truth(db: Path) -> Truth:
    """Every table that matters, read straight from the SQLite file (no service in between)."""
    engine = create_engine(f"sqlite:///{db}", connect_args={"timeout": 30})
    try:
        with Session(engine) as s:
            stocked: dict[str, int] = defaultdict(int)
            for adj in s.exec(select(AdjustmentRow)):
                stocked[adj.product_id] += adj.delta
            lines: dict[str, dict[str, int]] = defaultdict(dict)
            for line in s.exec(select(ReservationLineRow)):
                lines[line.order_id][line.product_id] = line.quantity
            ledger: dict[str, list[LedgerRow]] = defaultdict(list)
            for entry in s.exec(select(LedgerRow).order_by(col(LedgerRow.id))):
                ledger[entry.order_id].append(entry)
            notices: dict[str, Counter[str]] = defaultdict(Counter)
            users: dict[str, set[str]] = defaultdict(set)
            for n in s.exec(select(NotificationRow)):
                notices[n.order_id][n.kind] += 1
                users[n.order_id].add(n.user_id)
            return Truth(
                orders={o.order_id: o for o in s.exec(select(OrderRecord))},
                stock={r.product_id: r.available for r in s.exec(select(StockRow))},
                stocked=dict(stocked),
                reservations={r.order_id: r.status for r in s.exec(select(ReservationRow))},
                lines=dict(lines),
                payments={p.order_id: p for p in s.exec(select(PaymentRow))},
                ledger=dict(ledger),
                notices=dict(notices),
                notice_users=dict(users),
            )
    finally:
        engine.dispose()


def unsettled(truth: Truth, wanted: dict[str, set[str]]) -> list[str]:
    """Orders not yet in a wanted status with that status's notification sent."""
    out = []
    for oid, statuses in wanted.items():
        rec = truth.orders.get(oid)
        status = rec.status if rec else "(no record)"
        if status not in statuses or not truth.notices.get(oid, Counter())[NOTICE[status]]:
            out.append(f"{oid}: {status}, notified {dict(truth.notices.get(oid, {}))}")
    return out


async def settle(chaos: Chaos, wanted: dict[str, set[str]]) -> Truth:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        truth = await asyncio.to_thread(read_truth, chaos.db)
        stuck = unsettled(truth, wanted)
        if not stuck:
            return truth
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(stuck)} order(s) did not settle in {SETTLE_TIMEOUT:.0f}s, e.g.\n"
                + "\n".join(stuck[:10])
                + f"\n--- worker log\n{chaos.stack.log('worker')[-3000:]}"
            )
        await asyncio.sleep(1.0)


# --- the invariants ------------------------------------------------------------------------


def check_invariants(
    truth: Truth,
    plan: list[Planned],
    initial: dict[str, int],
    cancelled: set[str],
) -> list[str]:
    """Every invariant of the contract, on the services' tables; the violations found."""
    problems: list[str] = []
    by_id = {o.order_id: o for o in plan}

    def bad(msg: str) -> None:
        problems.append(msg)

    # Every order settles; outcomes match the card and the cancels.
    for oid, o in by_id.items():
        rec = truth.orders[oid]
        reason = rec.failure_reason
        if oid in cancelled:
            if rec.status != "CANCELLED":
                bad(f"order {oid} was cancelled while PAID but is {rec.status}")
        elif rec.status == "FAILED":
            allowed = {"OUT_OF_STOCK"} | ({"PAYMENT_DECLINED"} if o.card == DECLINED else set())
            if reason not in allowed:
                bad(f"order {oid} (card {o.card[-4:]}) FAILED with {reason}")
        elif rec.status != "PAID" or o.card == DECLINED:
            bad(f"order {oid} (card {o.card[-4:]}) ended {rec.status}")
    if set(truth.orders) - set(by_id):
        bad(f"orders nobody placed: {sorted(set(truth.orders) - set(by_id))[:5]}")

    live = {oid for oid, r in truth.orders.items() if r.status in LIVE}

    # Stock is never oversold, and what is gone is exactly what live orders hold.
    held: Counter[str] = Counter()
    for oid in live:
        for product_id, qty in truth.lines.get(oid, {}).items():
            held[product_id] += qty
    for product_id, start in initial.items():
        if truth.stocked.get(product_id) != start:
            bad(f"product {product_id} stocked {truth.stocked.get(product_id)} != {start}")
        sold = sum(q for oid in live for p, q in by_id[oid].items if p == product_id)
        available = truth.stock.get(product_id, 0)
        if available < 0 or start - available != sold:
            bad(f"product {product_id}: {start} - {available} available != {sold} in live orders")
        if held[product_id] != sold:
            bad(f"product {product_id}: live reservations hold {held[product_id]} != {sold} sold")

    for oid, rec in truth.orders.items():
        entries = truth.ledger.get(oid, [])
        types = Counter(e.type for e in entries)
        captured = sum(e.amount_cents for e in entries if e.type == "CAPTURE")
        refunded = sum(e.amount_cents for e in entries if e.type == "REFUND")
        reserved = truth.reservations.get(oid) == "RESERVED"
        history = [h["status"] for h in rec.history]
        merged: Counter[str] = Counter()
        for p, q in by_id[oid].items:
            merged[p] += q
        if rec.status in LIVE:
            if not reserved or Counter(truth.lines.get(oid, {})) != merged:
                bad(
                    f"live order {oid} reservation {truth.reservations.get(oid)} "
                    f"{truth.lines.get(oid)} != its items {dict(merged)}"
                )
            if types != Counter({"CAPTURE": 1}) or captured != rec.total_cents:
                bad(f"live order {oid} (total {rec.total_cents}): ledger {_fmt(entries)}")
        elif rec.status == "CANCELLED":
            if reserved:
                bad(f"cancelled order {oid} still holds stock {truth.lines.get(oid)}")
            if "PAID" in history and (
                types != Counter({"CAPTURE": 1, "REFUND": 1})
                or captured != rec.total_cents
                or refunded != captured
            ):
                bad(f"cancelled paid order {oid} (total {rec.total_cents}): {_fmt(entries)}")
        elif rec.status == "FAILED":
            if reserved:
                bad(f"failed order {oid} still holds stock {truth.lines.get(oid)}")
            if captured != refunded:
                bad(f"failed order {oid} holds money: {_fmt(entries)}")
        if "PAID" not in history and set(types) - {"DECLINE"}:
            bad(f"order {oid} never reached payment but has ledger entries {_fmt(entries)}")
        if rec.failure_reason == "OUT_OF_STOCK" and entries:
            bad(f"order {oid} failed OUT_OF_STOCK but has ledger entries {_fmt(entries)}")
        if rec.failure_reason == "PAYMENT_DECLINED" and types != Counter({"DECLINE": 1}):
            bad(f"declined order {oid}: ledger {_fmt(entries)}")
        payment = truth.payments.get(oid)
        expected_payment = {"PAID": "CAPTURED", "CANCELLED": "REFUNDED"}.get(rec.status)
        if rec.failure_reason == "PAYMENT_DECLINED":
            expected_payment = "DECLINED"
        if expected_payment and (payment is None or payment.status != expected_payment):
            bad(f"order {oid} {rec.status}: payment {payment and payment.status}")

        # Each final state notified once; nothing notified twice.
        want = Counter({NOTICE[s]: 1 for s in ("PAID", rec.status) if s in history})
        got = truth.notices.get(oid, Counter())
        if got != want:
            bad(f"order {oid} {rec.status}: notifications {dict(got)} != {dict(want)}")
        if truth.notice_users.get(oid, set()) - {rec.user_id}:
            bad(f"order {oid}: notified users {truth.notice_users[oid]} != {rec.user_id}")

    for oid in set(truth.ledger) - set(truth.orders):
        bad(f"ledger entries for unknown order {oid}: {_fmt(truth.ledger[oid])}")
    for oid in set(truth.notices) - set(truth.orders):
        bad(f"notifications for unknown order {oid}: {dict(truth.notices[oid])}")
    return problems


def _fmt(entries: list[LedgerRow]) -> str:
    return str([(e.type, e.amount_cents) for e in entries])


async def check_api(api: Api, truth: Truth, users: list[str], products: list[str]) -> list[str]:
    """The REST API tells the same story as the tables."""
    problems: list[str] = []
    sem = asyncio.Semaphore(10)

    async def one(oid: str) -> None:
        async with sem:
            rec = truth.orders[oid]
            # Each customer reads their own orders.
            mine = api.as_user(rec.user_id)
            r = await api.call("GET", f"/orders/{oid}", headers=mine)
            if r.status_code != 200 or r.json()["status"] != rec.status:
                problems.append(
                    f"GET /orders/{oid}: {r.status_code} {r.text[:200]} != {rec.status}"
                )
            r = await api.call("GET", f"/orders/{oid}/payments", headers=mine)
            seen = (
                [(e["type"], e["amount_cents"]) for e in r.json()]
                if r.status_code == 200
                else r.text
            )
            stored = [(e.type, e.amount_cents) for e in truth.ledger.get(oid, [])]
            if seen != stored:
                problems.append(f"GET /orders/{oid}/payments: {seen} != {stored}")

    await asyncio.gather(*(one(oid) for oid in truth.orders))
    r = await api.call("GET", "/products", params={"category": "chaos"})
    shown = {p["id"]: p["stock"] for p in r.json()}
    for product_id in products:
        if shown.get(product_id) != truth.stock.get(product_id):
            problems.append(
                f"GET /products: {product_id} stock {shown.get(product_id)} "
                f"!= {truth.stock.get(product_id)}"
            )
    for user in users:
        r = await api.call("GET", f"/users/{user}/notifications", headers=api.as_user(user))
        got = Counter((n["order_id"], n["kind"]) for n in r.json())
        want = Counter(
            (oid, kind)
            for oid, kinds in truth.notices.items()
            if truth.orders[oid].user_id == user
            for kind, n in kinds.items()
            for _ in range(n)
        )
        if got != want:
            problems.append(f"GET /users/{user}/notifications differs from the table")
    return problems


async def running_workflows(chaos: Chaos, expected: int) -> int:
    """Waits (bounded) until visibility shows `expected` running workflows on the queue."""
    query = f"TaskQueue = '{chaos.stack.task_queue}' AND ExecutionStatus = 'Running'"
    deadline = time.monotonic() + 60
    while True:
        count = (await chaos.client.count_workflows(query)).count
        if count == expected or time.monotonic() > deadline:
            return count
        await asyncio.sleep(1.0)


# --- the test ------------------------------------------------------------------------------


async def test_nothing_lost_under_faults_and_kills(
    chaos: Chaos, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    stack = chaos.stack
    api = Api(stack.api_url)
    admin_password = resolved_admin_password(stack.settings)
    api.http.headers.update(bearer(await api.log_in(stack.settings.admin_email, admin_password)))
    rng = random.Random(PLAN_SEED)
    phases: dict[str, float] = {}
    try:
        # Setup through the API, which the faults hit too.
        sem = asyncio.Semaphore(5)

        async def bounded(coro: Any) -> Any:
            async with sem:
                return await coro

        products = await asyncio.gather(
            *(
                bounded(create_product(api, stack.grpc_target, n, price, stock))
                for n, (price, stock) in enumerate(PRODUCTS)
            )
        )
        initial = {p: stock for p, (_, stock) in zip(products, PRODUCTS, strict=True)}
        users = await asyncio.gather(*(bounded(create_user(api, n)) for n in range(N_USERS)))
        plan = plan_orders(rng, users, products)
        phases["setup"] = time.monotonic() - started

        # Checkouts, while the worker, the services and the API are killed in turn.
        t0 = time.monotonic()
        accepted = 0
        doubles_agreed = 0
        sem = asyncio.Semaphore(CONCURRENCY)

        async def place(o: Planned) -> None:
            nonlocal accepted, doubles_agreed
            async with sem:
                headers = {"Idempotency-Key": o.key} | api.as_user(o.user)
                sends = [
                    api.call("POST", "/checkout", json=o.body, headers=headers)
                    for _ in range(2 if o.twice else 1)
                ]
                answers = await asyncio.gather(*sends)
            for r in answers:
                assert r.status_code == 202, f"checkout {o.key}: {r.status_code} {r.text}"
            ids = {r.json()["order_id"] for r in answers}
            assert len(ids) == 1, f"key {o.key} answered different orders {ids}"
            o.order_id = ids.pop()
            doubles_agreed += o.twice
            accepted += 1

        async def kill_when(name: str, cond: Callable[[], bool], pause: float) -> None:
            await until(cond, SETTLE_TIMEOUT, f"the moment to kill {name}")
            await stack.restart(name, pause)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(kill_when("worker", lambda: accepted >= 30, 1.0))
            tg.create_task(kill_when("services", lambda: accepted >= 80, 2.0))
            tg.create_task(kill_when("api", lambda: accepted >= 130, 2.0))
            for o in plan:
                tg.create_task(place(o))
        phases["checkouts"] = time.monotonic() - t0
        assert len({o.order_id for o in plan}) == N_ORDERS, "two keys answered the same order"

        t0 = time.monotonic()
        first = await settle(chaos, {o.order_id: {"PAID", "FAILED"} for o in plan})
        phases["settle"] = time.monotonic() - t0

        # Cancel a third of the paid orders, a third of those twice at once, while the
        # worker is killed once more.
        t0 = time.monotonic()
        paid = sorted(oid for oid, r in first.orders.items() if r.status == "PAID")
        targets = sorted(rng.sample(paid, len(paid) // 3))
        twice = set(targets[::3])
        cancel_answers: Counter[int] = Counter()
        cancel_problems: list[str] = []
        sent = 0

        async def cancel(oid: str) -> None:
            nonlocal sent
            async with sem:
                sent += 1
                # The customer cancels their own order.
                mine = api.as_user(first.orders[oid].user_id)
                calls = [
                    api.call(
                        "POST", f"/orders/{oid}/cancel", json={"reason": "chaos"}, headers=mine
                    )
                    for _ in range(2 if oid in twice else 1)
                ]
                try:
                    answers = await asyncio.gather(*calls)
                except AssertionError as err:
                    cancel_problems.append(f"cancel {oid}: {err}")
                    return
            for r in answers:
                cancel_answers[r.status_code] += 1
                if r.status_code not in (200, 409):
                    cancel_problems.append(f"cancel {oid}: {r.status_code} {r.text[:200]}")
                elif r.status_code == 200 and r.json()["status"] != "CANCELLED":
                    cancel_problems.append(f"cancel {oid}: 200 with status {r.json()['status']}")

        async with asyncio.TaskGroup() as tg:
            tg.create_task(kill_when("worker", lambda: sent >= len(targets) // 3, 1.0))
            for oid in targets:
                tg.create_task(cancel(oid))
        wanted = {oid: {r.status} for oid, r in first.orders.items()}
        wanted.update({oid: {"CANCELLED"} for oid in targets})
        truth = await settle(chaos, wanted)
        phases["cancels"] = time.monotonic() - t0

        # Every invariant, from the tables and from the API.
        t0 = time.monotonic()
        problems = cancel_problems + check_invariants(truth, plan, initial, set(targets))
        problems += await check_api(api, truth, users, products)
        live = sum(r.status in LIVE for r in truth.orders.values())
        running = await running_workflows(chaos, live)
        if running != live:
            problems.append(f"{running} workflows still running, expected {live} (PAID ones)")
        phases["checks"] = time.monotonic() - t0
    finally:
        await api.http.aclose()

    outcomes = Counter(
        r.status + (f" {r.failure_reason}" if r.failure_reason else "")
        for r in truth.orders.values()
    )
    found = faults(stack)
    sold = {p: initial[p] - truth.stock[p] for p in products}
    lines = [
        "",
        "=== chaos test figures ===",
        f"orders: {N_ORDERS} planned, {len(truth.orders)} recorded, "
        f"{sum(o.twice for o in plan)} sent twice at once (same order both times: "
        f"{doubles_agreed})",
        f"outcomes: {dict(sorted(outcomes.items()))}",
        f"cancels: {len(targets)} of {len(paid)} paid orders, {len(twice)} twice at once; "
        f"answers {dict(sorted(cancel_answers.items()))}",
        f"units sold per product: {list(sold.values())} of {[s for _, s in PRODUCTS]}",
        f"faults injected: {found['total']} ({found['before']} before, {found['after']} "
        f"after commit); by method "
        f"{ {k: v for k, v in sorted(found.items()) if k not in ('total', 'before', 'after')} }",
        f"restarts (SIGKILL + start): {dict(stack.restarts)}",
        f"client: {dict(sorted(api.stats.items()))}",
        f"running workflows at the end: {running} (PAID orders: {live})",
        "phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()),
        f"total {time.monotonic() - started:.1f}s; data in {chaos.db.parent}",
        f"invariants: {'all hold' if not problems else f'{len(problems)} VIOLATED'}",
    ]
    with capsys.disabled():
        print("\n".join(lines), flush=True)
        for p in problems[:50]:
            print("  VIOLATION:", p, flush=True)
    assert stack.restarts == Counter({"worker": 2, "services": 1, "api": 1})
    assert found["total"] > 0, "no fault was injected: FAULT_RATE did not reach the services"
    assert not problems, f"{len(problems)} invariant violation(s):\n" + "\n".join(problems[:50])
