from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import Engine

from core.errors import reason_of
from proto.shop.v1 import user_pb2, user_pb2_grpc
from services.faults import INJECTED
from services.server import create_server
from tests.harness import free_port

if TYPE_CHECKING:
    from core.grpc_client import Stubs
from tests.services_fixtures import ExpectError

SERVICE_NAMES = {
    "shop.v1.UserService",
    "shop.v1.ProductService",
    "shop.v1.InventoryService",
    "shop.v1.PaymentService",
    "shop.v1.NotificationService",
}


async def test_health_and_reflection(stubs: Stubs) -> None:
    health = health_pb2_grpc.HealthStub(stubs.channel)
    for name in ["", *SERVICE_NAMES]:
        got = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert got.status == health_pb2.HealthCheckResponse.SERVING, name
    reflect = reflection_pb2_grpc.ServerReflectionStub(stubs.channel)
    call = reflect.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    answer = await call.read()
    await call.done_writing()
    names = {s.name for s in answer.list_services_response.service}
    assert SERVICE_NAMES | {"grpc.health.v1.Health"} <= names


async def test_faults_at_rate_one(stubs: Stubs, engine: Engine) -> None:
    server, port = create_server("127.0.0.1:0", engine, ("user",), fault_rate=1.0, fault_seed=7)
    await server.start()
    before = dict(INJECTED)
    ids = [f"fault-{uuid.uuid4().hex}" for _ in range(12)]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            faulty = user_pb2_grpc.UserServiceStub(channel)
            for user_id in ids:
                req = user_pb2.CreateUserRequest(id=user_id, email=f"{user_id}@x.io", name="F")
                try:
                    await faulty.CreateUser(req)
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.UNAVAILABLE
                    assert (err.details(), reason_of(err)) == ("injected fault", "INJECTED_FAULT")
                else:
                    raise AssertionError("no fault injected at rate 1.0")
    finally:
        await server.stop(None)
    after = INJECTED["after"] - before.get("after", 0)
    early = INJECTED["before"] - before.get("before", 0)
    assert after + early == len(ids) and after > 0 and early > 0
    committed = 0
    for user_id in ids:
        try:
            await stubs.user.GetUser(user_pb2.GetUserRequest(id=user_id))
            committed += 1
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND
    assert committed == after


async def test_reads_are_not_faulted(
    stubs: Stubs, engine: Engine, expect_error: ExpectError
) -> None:
    server, port = create_server("127.0.0.1:0", engine, ("user",), fault_rate=1.0, fault_seed=1)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            faulty = user_pb2_grpc.UserServiceStub(channel)
            await expect_error(
                faulty.GetUser(user_pb2.GetUserRequest(id=uuid.uuid4().hex)),
                grpc.StatusCode.NOT_FOUND,
                "USER_NOT_FOUND",
            )
    finally:
        await server.stop(None)


async def test_python_m_services_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/shop.db",
        "GRPC_PORT": str(port),
        "FAULT_RATE": "0",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services",
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        lines: list[bytes] = []  # a fresh database: the migration's line comes first
        while not lines or b"ready on port" not in lines[-1]:
            lines.append(await asyncio.wait_for(proc.stdout.readline(), 20))
            assert lines[-1], lines
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            got = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="shop.v1.PaymentService"), timeout=5
            )
            assert got.status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        rest = await proc.stdout.read()
        assert b"stopped" in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
