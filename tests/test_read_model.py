"""The order read model: newest version wins, whatever order the saves arrive in, on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import Connection, Engine, delete, update

from api import watch as watch_module
from api.errors import ApiError
from api.order_reads import current_order, order_to_follow
from api.watch import OrderWatch
from core.db import make_engine, migrate, run_sql
from core.messages import OrderLine, OrderSnapshot, OrderStatus, PaymentStatus, StatusChange
from orders import store
from tests.api_fixtures import Stack
from tests.net import Relay

# Above a 32-bit INTEGER's 2,147,483,647: a million units of a $5,000 item.
BIG_TOTAL = 500_000_000_000


def snapshot(order_id: str, version: int, status: OrderStatus) -> OrderSnapshot:
    now = datetime.now(UTC)
    return OrderSnapshot(
        order_id=order_id,
        user_id="u-1",
        status=status,
        items=[OrderLine(product_id="p-1", quantity=2, unit_price_cents=150)],
        total_cents=300,
        payment_status=PaymentStatus.CAPTURED if version >= 3 else PaymentStatus.NONE,
        history=[StatusChange(status=status, at=now)] * version,
        version=version,
    )


def big(snap: OrderSnapshot) -> OrderSnapshot:
    line = OrderLine(product_id="p-big", quantity=1_000_000, unit_price_cents=500_000)
    return snap.model_copy(update={"items": [line], "total_cents": BIG_TOTAL})


async def save(engine: Engine, snap: OrderSnapshot) -> bool:
    """As the save_order activity writes: SQL on a plain connection."""
    return await run_sql(engine, lambda c: store.apply_snapshot(c, snap))


async def stored(engine: Engine, order_id: str) -> OrderSnapshot | None:
    return await run_sql(engine, lambda c: store.get_order(c, order_id), read_only=True)


async def test_newer_versions_win_and_late_or_repeated_saves_are_no_ops(engine: Engine) -> None:
    migrate(engine)
    order_id = uuid.uuid4().hex
    assert await stored(engine, order_id) is None
    assert await save(engine, snapshot(order_id, 2, OrderStatus.RESERVED)) is True
    # A late retry of an older save changes nothing.
    assert await save(engine, snapshot(order_id, 1, OrderStatus.PENDING)) is False
    got = await stored(engine, order_id)
    assert got is not None and got.status == OrderStatus.RESERVED and got.version == 2
    assert await save(engine, snapshot(order_id, 3, OrderStatus.PAID)) is True
    # The same save again (an activity retried after it committed) is a no-op.
    assert await save(engine, snapshot(order_id, 3, OrderStatus.PAID)) is False
    got = await stored(engine, order_id)
    assert got is not None
    assert got == snapshot(order_id, 3, OrderStatus.PAID).model_copy(
        update={"history": got.history}
    )
    assert got.payment_status == PaymentStatus.CAPTURED and len(got.history) == 3
    assert got.items[0].unit_price_cents == 150


async def test_concurrent_saves_keep_the_newest(engine: Engine) -> None:
    migrate(engine)
    order_id = uuid.uuid4().hex
    statuses = [OrderStatus.PENDING, OrderStatus.RESERVED, OrderStatus.PAID, OrderStatus.SHIPPED]
    snaps = [snapshot(order_id, v, statuses[(v - 1) % 4]) for v in range(1, 13)]
    random.Random(7).shuffle(snaps)
    wrote = await asyncio.gather(*(save(engine, s) for s in snaps))
    newest = snaps.index(max(snaps, key=lambda s: s.version))
    assert wrote[newest] is True  # nothing can be newer, so it always writes
    got = await stored(engine, order_id)
    assert got is not None and got.version == 12


async def test_the_watch_hands_each_stream_its_order_when_it_changes(engine: Engine) -> None:
    migrate(engine)
    watch = OrderWatch(engine, tick=0.01)
    watch.start()
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    try:
        with watch.subscribe(a) as sub_a, watch.subscribe(b) as sub_b:
            await save(engine, snapshot(a, 1, OrderStatus.PENDING))
            await asyncio.wait_for(sub_a.changed.wait(), 5)
            got = sub_a.take()
            assert got is not None and got.version == 1 and got.status == OrderStatus.PENDING
            assert not sub_a.changed.is_set() and sub_a.take() is None
            # Two saves between ticks: the stream gets the newest; an older one is no news.
            await save(engine, snapshot(a, 2, OrderStatus.RESERVED))
            await save(engine, snapshot(a, 3, OrderStatus.PAID))
            await save(engine, snapshot(a, 2, OrderStatus.RESERVED))
            await asyncio.wait_for(sub_a.changed.wait(), 5)
            got = sub_a.take()
            if got is not None and got.version == 2:  # a tick fell between the saves
                await asyncio.wait_for(sub_a.changed.wait(), 5)
                got = sub_a.take()
            assert got is not None and got.version == 3 and got.status == OrderStatus.PAID
            await asyncio.sleep(0.1)
            assert not sub_a.changed.is_set()
            assert not sub_b.changed.is_set()  # nothing stored for b: no wake-up
            # A stream that joins late, from an older read, still gets what is newer for it,
            # although another stream of the same order already has it.
            with watch.subscribe(a, 1) as late:
                await asyncio.wait_for(late.changed.wait(), 5)
                got = late.take()
                assert got is not None and got.version == 3
            # One that joins up to date is not woken.
            with watch.subscribe(a, 3) as current:
                await asyncio.sleep(0.1)
                assert not current.changed.is_set()
    finally:
        await watch.stop()


async def _until(condition: Callable[[], bool], what: str, within: float = 10.0) -> None:
    """Waits for `condition` (a liveness bound, not a timing figure)."""
    try:
        async with asyncio.timeout(within):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what}") from None


async def test_a_save_on_postgresql_is_announced_when_it_commits(engine: Engine) -> None:
    """Each save that writes NOTIFYs "<order id> <version>" at commit; one that does not
    write (an older version) and one rolled back announce nothing. SQLite has no such thing:
    the same saves work there and announce nothing."""
    migrate(engine)
    order_id = uuid.uuid4().hex
    if engine.dialect.name == "sqlite":
        assert await save(engine, snapshot(order_id, 1, OrderStatus.PENDING)) is True
        return
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    async with await psycopg.AsyncConnection.connect(
        *cargs, **cparams, autocommit=True
    ) as listener:
        await listener.execute(f"LISTEN {store.CHANGES_CHANNEL}")

        async def next_change() -> tuple[str, int] | None:
            # Other tests' saves share the channel (a database's): this order's only.
            async for note in listener.notifies(timeout=10):
                change = store.parse_change(note.payload)
                if change and change[0] == order_id:
                    return change
            return None

        assert await save(engine, snapshot(order_id, 2, OrderStatus.RESERVED)) is True
        assert await next_change() == (order_id, 2)
        assert await save(engine, snapshot(order_id, 1, OrderStatus.PENDING)) is False

        def rolled_back(conn: Connection) -> None:
            store.apply_snapshot(conn, snapshot(order_id, 4, OrderStatus.SHIPPED))
            raise LookupError("rolled back")

        with pytest.raises(LookupError):
            await run_sql(engine, rolled_back)
        assert await save(engine, snapshot(order_id, 3, OrderStatus.PAID)) is True
        # The next announcement is version 3's: neither the older save nor the rolled-back one.
        assert await next_change() == (order_id, 3)
    assert store.parse_change("not a change") is None and store.parse_change(" 3") is None


async def test_the_watch_listens_on_postgresql_and_reads_on_ticks_on_sqlite(
    engine: Engine,
) -> None:
    """On PostgreSQL the watch learns of a save from its announcement: with ticks and
    resyncs an hour apart, the streams still get each change. When its listening connection
    is cut it reconnects, and a save made meanwhile reaches the stream then. On SQLite it
    reads on its ticks and never listens."""
    migrate(engine)
    postgres = engine.dialect.name == "postgresql"
    hour = 3600.0
    if postgres:
        # Options with a space in the URL, as people write them: the listener connects with
        # the engine's own arguments (a URL rendered again turned the space into "+").
        spaced = engine.url.update_query_dict({"options": "-c statement_timeout=60s"})
        engine = make_engine(spaced.render_as_string(hide_password=False))
    watch = OrderWatch(engine, tick=hour, resync=hour) if postgres else OrderWatch(engine, 0.01)
    a = uuid.uuid4().hex
    watch.start()
    try:
        if postgres:
            await _until(lambda: watch.listening, "the watch listens")
        with watch.subscribe(a) as sub:
            for version, status in enumerate(
                (OrderStatus.PENDING, OrderStatus.RESERVED, OrderStatus.PAID), start=1
            ):
                await save(engine, snapshot(a, version, status))
                await asyncio.wait_for(sub.changed.wait(), 10)
                got = sub.take()
                assert got is not None and got.version == version and got.status == status
            # A stream that subscribes after the save was announced, from an older read.
            with watch.subscribe(a, 1) as late:
                await asyncio.wait_for(late.changed.wait(), 10)
                got = late.take()
                assert got is not None and got.version == 3
            if postgres:
                # Cut the listener's connection, save while it is away: the save reaches
                # the stream once it has reconnected (its first read takes everything).
                pid = watch.listener_pid
                cargs, cparams = engine.dialect.create_connect_args(engine.url)
                with psycopg.connect(*cargs, **cparams, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                await _until(lambda: watch.listener_pid != pid, "the listener went away")
                await save(engine, snapshot(a, 4, OrderStatus.SHIPPED))
                await asyncio.wait_for(sub.changed.wait(), 10)
                got = sub.take()
                assert got is not None and got.version == 4
                assert watch.listening
            else:
                assert not watch.listening
    finally:
        await watch.stop()
        if postgres:
            engine.dispose()
    assert not watch.listening


async def test_a_listener_whose_connection_goes_silent_is_replaced(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listening connection that stops answering (no error, no close) is found by the
    listener's next probe and replaced: meanwhile the watch reads on ticks. On SQLite there
    is no listener at all."""
    if engine.dialect.name == "sqlite":
        watch = OrderWatch(engine)
        watch.start()
        await asyncio.sleep(0.1)
        assert not watch.listening and watch.listener_pid is None
        await watch.stop()
        return
    monkeypatch.setattr(watch_module, "PROBE_EVERY", 0.2)
    monkeypatch.setattr(watch_module, "PROBE_WAIT", 0.5)
    monkeypatch.setattr(watch_module, "LISTEN_RETRY", (0.1, 0.2))
    relay = Relay(f"{engine.url.host or '127.0.0.1'}:{engine.url.port or 5432}")
    await relay.up()
    relayed = make_engine(
        engine.url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    )
    watch = OrderWatch(relayed)  # followed by nobody: only its listener talks to the server
    watch.start()
    try:
        await _until(lambda: watch.listening, "the watch listens")
        first = watch.listener_pid
        relay.flowing.clear()
        await _until(lambda: not watch.listening, "the silent connection is given up")
        relay.flowing.set()
        await _until(lambda: watch.listening, "the watch listens again")
        assert watch.listener_pid != first
    finally:
        await watch.stop()
        await relay.down()
        relayed.dispose()


async def test_announcements_never_put_off_the_read_of_every_order(engine: Engine) -> None:
    """A change that was not announced (written by something else than a save, or before
    the listener connected) reaches its stream at the next read of every order, however
    busy the channel is with another order's saves; on SQLite, at the next tick."""
    migrate(engine)
    watch = OrderWatch(engine, tick=0.01, resync=0.2)
    busy, quiet = uuid.uuid4().hex, uuid.uuid4().hex
    await save(engine, snapshot(quiet, 1, OrderStatus.PENDING))
    watch.start()

    async def keep_saving() -> None:
        for version in itertools.count(1):
            await save(engine, snapshot(busy, version, OrderStatus.PENDING))
            await asyncio.sleep(0.02)

    saving = asyncio.create_task(keep_saving())
    try:
        if engine.dialect.name == "postgresql":
            await _until(lambda: watch.listening, "the watch listens")
        with watch.subscribe(busy) as followed, watch.subscribe(quiet, 1) as sub:
            # The watch has read since both subscribed (the busy order's news came in)...
            await asyncio.wait_for(followed.changed.wait(), 10)
            # ... when this changes behind the read model's back: no announcement.
            stmt = update(store.ORDERS).where(store.ORDERS.c.order_id == quiet)
            await run_sql(engine, lambda c: c.execute(stmt.values(version=2)))
            await asyncio.wait_for(sub.changed.wait(), 10)
            got = sub.take()
            assert got is not None and got.version == 2
    finally:
        saving.cancel()
        await watch.stop()


async def test_a_just_started_order_is_followed_without_temporal(engine: Engine) -> None:
    migrate(engine)
    watch = OrderWatch(engine, tick=0.01)
    order_id = uuid.uuid4().hex
    # Unknown, and no Temporal client to ask: 503 rather than a guess.
    with pytest.raises(ApiError) as err:
        await order_to_follow(None, engine, watch, order_id)
    assert err.value.status == 503
    # Started by this API: its PENDING view, before the workflow's first save.
    pending = snapshot(order_id, 0, OrderStatus.PENDING)
    watch.started(pending)
    assert await order_to_follow(None, engine, watch, order_id) == pending
    # Stored meanwhile: a stream from the just-started view gets the stored order at the
    # watch's next tick, and from then on the view is forgotten; the read model answers.
    await save(engine, snapshot(order_id, 2, OrderStatus.RESERVED))
    watch.start()
    try:
        with watch.subscribe(order_id, pending.version) as sub:
            await asyncio.wait_for(sub.changed.wait(), 5)
            got = sub.take()
            assert got is not None and got.version == 2 and got.status == OrderStatus.RESERVED
    finally:
        await watch.stop()
    assert watch.just_started(order_id) is None
    got = await order_to_follow(None, engine, watch, order_id)
    assert got.version == 2 and got.status == OrderStatus.RESERVED


async def test_a_total_beyond_32_bits_is_stored(engine: Engine) -> None:
    migrate(engine)
    order_id = uuid.uuid4().hex
    snap = big(snapshot(order_id, 1, OrderStatus.PENDING))
    assert await save(engine, snap) is True
    got = await stored(engine, order_id)
    assert got == snap.model_copy(update={"history": got.history if got else []})
    assert got is not None and got.total_cents == BIG_TOTAL


async def test_get_order_reads_the_row_or_else_what_was_just_started(engine: Engine) -> None:
    """No Temporal client at all: whatever answers comes from the read model or memory."""
    migrate(engine)
    watch = OrderWatch(engine)
    order_id = uuid.uuid4().hex
    # No row and not started here: only the workflow could tell; it cannot be asked.
    with pytest.raises(ApiError) as err:
        await current_order(None, engine, watch, order_id)
    assert err.value.status == 503
    pending = snapshot(order_id, 0, OrderStatus.PENDING)
    watch.started(pending)
    assert await current_order(None, engine, watch, order_id) == pending
    await save(engine, snapshot(order_id, 2, OrderStatus.RESERVED))
    got = await current_order(None, engine, watch, order_id)
    assert got.version == 2 and got.status == OrderStatus.RESERVED
    assert watch.just_started(order_id) is None  # seen stored: forgotten


MARK = "written into the read model by the test"


async def test_get_order_serves_the_read_model_and_consistent_asks_the_workflow(
    stack: Stack,
) -> None:
    user, other = await stack.create_user(), await stack.create_user("Bob")
    p = await stack.create_product(stock=5)
    order_id = await stack.place(user["id"], [(p["id"], 1)])
    mine, theirs = stack.as_user(user["id"]), stack.as_user(other["id"])
    assert (await stack.wait_for(order_id, "PAID"))["status"] == "PAID"
    path = f"/orders/{order_id}"
    orders = store.ORDERS
    # The stored row, marked (same version): a plain read shows the mark, a consistent one
    # the workflow's own state.
    with stack.engine.begin() as conn:
        conn.execute(update(orders).where(orders.c.order_id == order_id).values(cancel_reason=MARK))
    r = await stack.http.get(path, headers=mine)
    assert r.status_code == 200 and r.json()["status"] == "PAID"
    assert r.json()["cancel_reason"] == MARK
    r = await stack.http.get(path, params={"consistent": "true"}, headers=mine)
    assert r.status_code == 200 and r.json()["status"] == "PAID"
    assert r.json()["cancel_reason"] is None
    assert (await stack.http.get(path, params={"consistent": "maybe"})).status_code == 422
    # Another customer's order is not found, either way.
    for params in ({}, {"consistent": "true"}):
        r = await stack.http.get(path, params=params, headers=theirs)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", r.text
    # No row (and no longer remembered as just started): the workflow answers.
    with stack.engine.begin() as conn:
        conn.execute(delete(orders).where(orders.c.order_id == order_id))
    r = await stack.http.get(path, headers=mine)
    assert r.status_code == 200 and r.json()["status"] == "PAID"
    assert [h["status"] for h in r.json()["history"]] == ["PENDING", "RESERVED", "PAID"]
    assert r.json()["cancel_reason"] is None
    assert (await stack.http.get(path, headers=theirs)).status_code == 404
    # An update's answer is stored at once: the next read shows what it did.
    assert (await stack.http.post(f"{path}/ship")).status_code == 200
    r = await stack.http.get(path, headers=mine)
    assert r.status_code == 200 and r.json()["status"] == "SHIPPED"
