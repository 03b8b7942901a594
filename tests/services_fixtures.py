"""Fixtures of the service tests: the five real services on port 0, once per backend.

Test modules load this with `pytest_plugins` (and import from it only for type checking,
so pytest can rewrite its asserts), so each backend's database and server are made once
per session. Every backend gets a fresh database: a SQLite file in a temporary
directory, and a `test_<random>` PostgreSQL database dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Protocol

import grpc
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from core.db import make_engine
from core.errors import reason_of
from core.grpc_client import Stubs
from services.server import create_server

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def postgres_required() -> bool:
    return os.environ.get("REQUIRE_POSTGRES", "") not in ("", "0", "false")


def _admin_conninfo(url: str) -> str:
    """libpq conninfo of the server's `postgres` database (where databases are created)."""
    parsed = make_url(url).set(drivername="postgresql", database="postgres")
    return parsed.render_as_string(hide_password=False)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh, empty database URL per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('services')}/shop.db"
        return
    admin = _admin_conninfo(POSTGRES_URL)
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as err:
        safe_url = make_url(POSTGRES_URL).render_as_string(hide_password=True)
        message = f"PostgreSQL unreachable at {safe_url}: {err}".strip()
        if postgres_required():
            pytest.fail(f"{message} (REQUIRE_POSTGRES=1)")
        pytest.skip(f"{message}; set REQUIRE_POSTGRES=1 to make this a failure")
    name = f"test_{uuid.uuid4().hex[:16]}"
    with conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
async def stubs(engine: Engine) -> AsyncIterator[Stubs]:
    """Stubs of the five services, served on port 0 over the backend's database."""
    server, port = create_server("127.0.0.1:0", engine, fault_rate=0.0)
    await server.start()
    # Without the channel's retry policy (core.grpc_client, tested in test_grpc_client.py):
    # these tests see each call's own answer, a transient PROCESSING_ERROR included.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Stubs.on(channel)
    await server.stop(None)


async def _expect_error(
    call: Awaitable[object], code: grpc.StatusCode, reason: str | None = None
) -> grpc.aio.AioRpcError:
    """Awaits a call that must fail with `code` (and the `error-reason`, when given)."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    if reason is not None:
        assert reason_of(info.value) == reason, info.value.details()
    return info.value


class ExpectError(Protocol):
    def __call__(
        self, call: Awaitable[object], code: grpc.StatusCode, reason: str | None = None
    ) -> Awaitable[grpc.aio.AioRpcError]: ...


@pytest.fixture
def expect_error() -> ExpectError:
    """`await expect_error(call, code, reason=None)`: the call must fail so."""
    return _expect_error
