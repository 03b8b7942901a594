from __future__ import annotations

import re
from typing import TYPE_CHECKING

import grpc
from sqlalchemy import Engine
from sqlmodel import Session

from proto.shop.v1 import user_pb2
from services.user.models import UserRow
from tests.harness import uid

if TYPE_CHECKING:
    from core.grpc_client import Stubs
from tests.services_fixtures import ExpectError

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def test_create_and_get(stubs: Stubs) -> None:
    email = f"{uid()}@example.com"
    user = await stubs.user.CreateUser(user_pb2.CreateUserRequest(email=email, name="Ada"))
    assert re.fullmatch(r"[0-9a-f]{32}", user.id)
    assert (user.email, user.name) == (email, "Ada")
    assert RFC3339.match(user.created_at)
    assert await stubs.user.GetUser(user_pb2.GetUserRequest(id=user.id)) == user


async def test_duplicate_email_is_case_insensitive(stubs: Stubs, expect_error: ExpectError) -> None:
    email = f"{uid()}@Example.com"
    await stubs.user.CreateUser(user_pb2.CreateUserRequest(email=email, name="A"))
    err = await expect_error(
        stubs.user.CreateUser(user_pb2.CreateUserRequest(email=email.upper(), name="B")),
        grpc.StatusCode.ALREADY_EXISTS,
        "EMAIL_TAKEN",
    )
    # The refusal does not quote the email: its message reaches logs and trace spans.
    assert email.lower() not in (err.details() or "").lower()


async def test_caller_chosen_id_is_idempotent(stubs: Stubs, expect_error: ExpectError) -> None:
    user_id, email = uid("u-"), f"{uid()}@example.com"
    req = user_pb2.CreateUserRequest(id=user_id, email=email, name="Seed")
    first = await stubs.user.CreateUser(req)
    assert first.id == user_id
    assert await stubs.user.CreateUser(req) == first
    other = user_pb2.CreateUserRequest(id=user_id, email=f"{uid()}@example.com", name="X")
    await expect_error(stubs.user.CreateUser(other), grpc.StatusCode.ALREADY_EXISTS)


async def test_get_unknown_user(stubs: Stubs, expect_error: ExpectError) -> None:
    await expect_error(
        stubs.user.GetUser(user_pb2.GetUserRequest(id=uid())),
        grpc.StatusCode.NOT_FOUND,
        "USER_NOT_FOUND",
    )


async def test_invalid_users(stubs: Stubs, expect_error: ExpectError) -> None:
    bad = [
        user_pb2.CreateUserRequest(email="no-at-sign", name="A"),
        user_pb2.CreateUserRequest(email="@example.com", name="A"),
        user_pb2.CreateUserRequest(email=f"{uid()}@example.com", name=" "),
        user_pb2.CreateUserRequest(email=f"{uid()}@example.com", name="A" * 201),
        user_pb2.CreateUserRequest(email=f"{uid()}@example.com", name="A\x00"),
        user_pb2.CreateUserRequest(email=f"{uid()}@example.com", name="A", id="x" * 65),
    ]
    for req in bad:
        await expect_error(stubs.user.CreateUser(req), grpc.StatusCode.INVALID_ARGUMENT)
    for user_id in ["", "x" * 65, "a\nb"]:
        await expect_error(
            stubs.user.GetUser(user_pb2.GetUserRequest(id=user_id)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )


async def test_authenticate_checks_the_password(
    stubs: Stubs, expect_error: ExpectError, engine: Engine
) -> None:
    email, password = f"{uid()}@example.com", "correct horse battery"
    user = await stubs.user.CreateUser(
        user_pb2.CreateUserRequest(email=email, name="Ada", password=password)
    )
    assert user.role == "customer"
    # Only the Argon2 hash is stored.
    with Session(engine) as session:
        stored = session.get(UserRow, user.id)
    assert stored is not None and stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$") and password not in stored.password_hash
    found = await stubs.user.Authenticate(
        user_pb2.AuthenticateRequest(email=email.upper(), password=password)
    )
    assert found == user
    # A wrong password, an unknown email and a user without a password: the same answer.
    no_password = f"{uid()}@example.com"
    await stubs.user.CreateUser(user_pb2.CreateUserRequest(email=no_password, name="Old"))
    for who, pw in [
        (email, "wrong password"),
        (f"{uid()}@example.com", password),
        (no_password, ""),
    ]:
        await expect_error(
            stubs.user.Authenticate(user_pb2.AuthenticateRequest(email=who, password=pw)),
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_CREDENTIALS",
        )


async def test_passwords_and_roles_are_checked(stubs: Stubs, expect_error: ExpectError) -> None:
    for req in [
        user_pb2.CreateUserRequest(email=f"{uid()}@example.com", name="A", password="short"),
        user_pb2.CreateUserRequest(email=f"{uid()}@example.com", name="A", password="x" * 129),
        user_pb2.CreateUserRequest(email=f"{uid()}@example.com", name="A", role="root"),
    ]:
        await expect_error(stubs.user.CreateUser(req), grpc.StatusCode.INVALID_ARGUMENT)


async def test_upsert_creates_then_updates_by_email(stubs: Stubs) -> None:
    email = f"{uid()}@example.com"
    first = await stubs.user.UpsertUser(
        user_pb2.CreateUserRequest(
            email=email, name="Admin", password="first password", role="admin"
        )
    )
    assert first.role == "admin"
    again = await stubs.user.UpsertUser(
        user_pb2.CreateUserRequest(
            email=email, name="Boss", password="second password", role="admin"
        )
    )
    assert (again.id, again.name) == (first.id, "Boss")
    auth = user_pb2.AuthenticateRequest(email=email, password="second password")
    assert (await stubs.user.Authenticate(auth)).id == first.id
