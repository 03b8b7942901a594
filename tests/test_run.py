"""`make run`: as a whole against the session's dev server, and its pieces: the dev server
command line, the supervisor, and idempotent seeding."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

import core.supervisor
from core.config import Settings
from core.db import make_engine
from core.grpc_client import Stubs
from core.run import banner, child_env, dev_server_command
from core.seed import (
    DEMO_PRODUCTS,
    DEMO_USER_EMAIL,
    DEMO_USER_ID,
    DEMO_USER_PASSWORD,
    SeedResult,
    seed,
)
from core.supervisor import Supervisor
from proto.shop.v1 import (
    inventory_pb2,
    inventory_pb2_grpc,
    product_pb2,
    product_pb2_grpc,
    user_pb2,
    user_pb2_grpc,
)
from tests.api_fixtures import bearer, log_in
from tests.harness import free_port, uid


async def test_make_run_starts_seeds_says_ready_and_stops_on_sigterm(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    api_port = free_port()
    env = dict(
        os.environ,
        DATA_DIR=str(tmp_path),
        TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
        TEMPORAL_TASK_QUEUE=uid("tq-"),
        GRPC_PORT=str(free_port()),
        API_PORT=str(api_port),
        CODEC_PORT=str(codec_port := free_port()),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.run", env=env, cwd=Path(__file__).resolve().parent.parent,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    out: list[str] = []
    try:
        async with asyncio.timeout(90):
            while "Ctrl-C stops everything." not in "".join(out[-3:]):
                line = await proc.stdout.readline()
                assert line, "".join(out)[-3000:]
                out.append(line.decode())
        banner_text = "".join(out)
        assert f"REST API        http://localhost:{api_port}" in banner_text
        assert f"Demo user       {DEMO_USER_ID}" in banner_text
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as http:
            listed = (await http.get("/products")).json()
            # Both printed logins work.
            logins = re.findall(r"log in as (\S+) / (\S+)", banner_text)
            assert len(logins) == 2, banner_text
            for (email, password), role in zip(logins, ("customer", "admin"), strict=True):
                token = await log_in(http, email, password)
                me = await http.get("/users/me", headers=bearer(token))
                assert (me.json()["email"], me.json()["role"]) == (email, role)
        assert {p.id for p in DEMO_PRODUCTS} <= {p["id"] for p in listed}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{codec_port}") as http:
            assert (await http.get("/health")).json() == {"status": "ok"}
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            rest = (await proc.stdout.read()).decode()
            code = await proc.wait()
    assert code == 0, rest[-3000:]
    names = ("api", "worker", "services", "codec")
    stops = [rest.find(f"run | stopping {name}") for name in names]
    assert -1 not in stops and stops == sorted(stops), rest[-3000:]  # in reverse order
    assert rest.rstrip().endswith("run | stopped")


def test_dev_server_command_persists_and_registers_search_attributes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, temporal_ui_port=18233)
    cmd = dev_server_command(settings)
    assert cmd[0] == str(Path(sys.executable).parent / "temporal")
    assert cmd[1:3] == ["server", "start-dev"]
    pairs = list(zip(cmd, cmd[1:], strict=False))
    assert ("--db-filename", str(tmp_path / "temporal.db")) in pairs
    assert ("--search-attribute", "OrderStatus=Keyword") in pairs
    assert ("--search-attribute", "CustomerId=Keyword") in pairs
    assert ("--ui-port", "18233") in pairs
    assert ("--ui-codec-endpoint", "http://localhost:8081") in pairs
    assert ("--ip", "127.0.0.1") in pairs and ("--port", "7233") in pairs
    assert ("--namespace", "default") in pairs
    elsewhere = Settings(data_dir=tmp_path, temporal_address="127.0.0.1:17233")
    other = dev_server_command(elsewhere)
    assert ("--port", "17233") in list(zip(other, other[1:], strict=False))


def test_children_get_one_consistent_environment(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, grpc_port=15051, api_port=18000)
    env = child_env(settings)
    assert env["DATA_DIR"] == str(tmp_path)
    assert env["DATABASE_URL"] == f"sqlite:///{tmp_path}/shop.db"
    assert env["GRPC_PORT"] == "15051"
    assert env["GRPC_TARGET"] == "localhost:15051"
    assert env["API_PORT"] == "18000"
    assert env["TEMPORAL_ADDRESS"] == "localhost:7233"
    assert env["TEMPORAL_TASK_QUEUE"] == "orders"
    # What the children will read back is what this process decided.
    again = Settings.model_validate(
        {k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields}
    )
    assert (again.database_url, again.grpc_target) == (settings.database_url, settings.grpc_target)


def test_banner_has_a_ready_to_paste_checkout(tmp_path: Path) -> None:
    settings = Settings(api_port=18000, data_dir=tmp_path)
    text = banner(settings, SeedResult(product_ids=["prod-espresso"]), dev_server=True)
    assert "curl -s -X POST localhost:18000/auth/token -d username=demo@example.com" in text
    assert 'curl -s -X POST localhost:18000/checkout -H "Authorization: Bearer $TOKEN"' in text
    assert "-H 'Idempotency-Key: demo-1'" in text
    assert '"product_id":"prod-espresso"' in text and "user_id" not in text
    assert "http://localhost:18000/docs" in text
    # The admin's password, generated once into DATA_DIR, is printed with its email.
    admin_password = (tmp_path / "admin_password").read_text().strip()
    assert f"log in as admin@example.com / {admin_password}" in text


async def test_supervisor_names_a_dead_child_and_stops_the_rest() -> None:
    sup = Supervisor(env={})
    await sup.spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    await sup.spawn("crasher", [sys.executable, "-c", "import sys; sys.exit(3)"])
    await asyncio.wait_for(sup.stop.wait(), 10)
    assert sup.failure == "crasher exited unexpectedly (exit code 3)"
    await asyncio.wait_for(sup.shutdown(), 20)
    assert all(proc.returncode is not None for proc in sup.children.values())


async def test_supervisor_passes_output_through_after_an_over_long_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 2 MiB without a newline (over the reader's 1 MiB limit), then far more than a pipe
    # holds: all of it comes through, and the child can write it and exit.
    code = (
        "import sys\n"
        "sys.stdout.write('x' * (2 << 20) + '\\n')\n"
        "for i in range(20000): print(f'line {i}')\n"
        "print('done')\n"
    )
    sup = Supervisor(env={})
    await sup.spawn("chatty", [sys.executable, "-c", code])
    proc = sup.children["chatty"]
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    await asyncio.wait_for(asyncio.gather(*sup.pumps.values()), 20)
    out = capsys.readouterr().out
    assert "  chatty | line 19999" in out and "  chatty | done" in out
    assert out.count("x") >= 2 << 20


async def test_supervisor_stops_children_in_reverse_order_with_sigterm() -> None:
    sup = Supervisor(env={})
    for name in ("first", "second"):
        await sup.spawn(name, [sys.executable, "-c", "import time; time.sleep(60)"])
    await asyncio.wait_for(sup.shutdown(), 20)
    assert sup.failure is None
    assert [proc.returncode for proc in sup.children.values()] == [-signal.SIGTERM] * 2


async def test_supervisor_logs_to_files_and_a_child_ended_on_purpose_is_no_failure(
    tmp_path: Path,
) -> None:
    code = "import sys, time; print('hello', sys.argv[1], flush=True); time.sleep(60)"
    log = tmp_path / "a.log"

    async def said(text: str) -> None:
        for _ in range(200):
            if log.exists() and text in log.read_text():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{text!r} not in {log}")

    sup = Supervisor(env={}, log_dir=tmp_path)
    await sup.spawn("a", [sys.executable, "-c", code, "1"])
    await sup.spawn("b", [sys.executable, "-c", code, "b"])
    first = sup.children["a"]
    await said("hello 1")
    assert await sup.end("a", signal.SIGKILL) == -signal.SIGKILL
    await sup.spawn("a", [sys.executable, "-c", code, "2"])
    await said("hello 2")
    assert list(sup.children) == ["a", "b"] and sup.children["a"] is not first
    await asyncio.wait_for(sup.shutdown(), 20)
    assert sup.failure is None
    assert log.read_text() == "hello 1\nhello 2\n"
    assert (tmp_path / "b.log").read_text() == "hello b\n"


async def test_supervisor_kills_a_child_that_ignores_sigterm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(core.supervisor, "STOP_TIMEOUT", 0.5)
    ready = tmp_path / "ready"
    code = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "pathlib.Path(sys.argv[1]).touch()\n"
        "time.sleep(60)\n"
    )
    sup = Supervisor(env={})
    await sup.spawn("stubborn", [sys.executable, "-c", code, str(ready)])
    for _ in range(200):  # until it ignores SIGTERM
        if ready.exists():
            break
        await asyncio.sleep(0.05)
    await asyncio.wait_for(sup.shutdown(), 20)
    assert sup.children["stubborn"].returncode == -signal.SIGKILL


@pytest.fixture
async def services_channel(tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    """The five real services on port 0, on a fresh SQLite database."""
    from services.server import create_server

    engine = make_engine(f"sqlite:///{tmp_path}/shop.db")
    server, port = create_server("127.0.0.1:0", engine, fault_rate=0)
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(None)
    engine.dispose()


async def snapshot(channel: grpc.aio.Channel) -> dict[str, object]:
    users = user_pb2_grpc.UserServiceStub(channel)
    products = product_pb2_grpc.ProductServiceStub(channel)
    inventory = inventory_pb2_grpc.InventoryServiceStub(channel)
    user = await users.GetUser(user_pb2.GetUserRequest(id=DEMO_USER_ID))
    listed = await products.ListProducts(product_pb2.ListProductsRequest())
    stock = {}
    for p in DEMO_PRODUCTS:
        level = await inventory.GetStock(inventory_pb2.GetStockRequest(product_id=p.id))
        stock[p.id] = level.available
    return {
        "user": (user.id, user.email),
        "products": sorted((p.id, p.sku, p.price_cents) for p in listed.products),
        "stock": stock,
    }


async def test_seeding_twice_leaves_the_same_users_products_and_stock(
    services_channel: grpc.aio.Channel,
) -> None:
    first = await seed(Stubs.on(services_channel))
    after_first = await snapshot(services_channel)
    second = await seed(Stubs.on(services_channel))
    after_second = await snapshot(services_channel)

    assert first.warnings == second.warnings == []
    assert first.product_ids == second.product_ids == [p.id for p in DEMO_PRODUCTS]
    assert after_first == after_second
    assert after_first["user"] == (DEMO_USER_ID, DEMO_USER_EMAIL)
    assert after_first["products"] == sorted((p.id, p.sku, p.price_cents) for p in DEMO_PRODUCTS)
    assert after_first["stock"] == {p.id: p.stock for p in DEMO_PRODUCTS}
    # The demo customer can log in with the password the banner prints.
    users = user_pb2_grpc.UserServiceStub(services_channel)
    login = user_pb2.AuthenticateRequest(email=DEMO_USER_EMAIL, password=DEMO_USER_PASSWORD)
    assert (await users.Authenticate(login)).id == DEMO_USER_ID
