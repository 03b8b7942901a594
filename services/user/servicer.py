from __future__ import annotations

import asyncio

from pwdlib import PasswordHash
from sqlalchemy import Engine
from sqlmodel import Session, select

from core.errors import AlreadyExists, InvalidArgument, NotFound, Reason, Unauthenticated
from core.tokens import CUSTOMER_ROLE, ROLES
from proto.shop.v1 import user_pb2, user_pb2_grpc
from services.common import (
    Context,
    get_row,
    grpc_method,
    ident,
    new_id,
    read,
    rfc3339,
    text,
    transact,
)
from services.user.models import UserRow

EMAIL_MAX = 254
PASSWORD_MIN, PASSWORD_MAX = 8, 128

# Argon2id with pwdlib's recommended parameters.
_HASHER = PasswordHash.recommended()
# Verified against when the email is unknown, so that answer takes as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("not anyone's password")


def _to_pb(row: UserRow) -> user_pb2.User:
    return user_pb2.User(
        id=row.id,
        email=row.email,
        name=row.name,
        created_at=rfc3339(row.created_at),
        role=row.role,
    )


def _email(value: str) -> str:
    email = text("email", value.strip(), EMAIL_MAX)
    local, _, domain = email.partition("@")
    if not local or not domain or " " in email:
        raise InvalidArgument("email must look like name@domain", reason=Reason.INVALID_EMAIL)
    return email


async def _password_hash(password: str) -> str | None:
    """The password's Argon2 hash (None for no password), computed off the event loop."""
    if not password:
        return None
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidArgument(f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    return await asyncio.to_thread(_HASHER.hash, password)


def _role(value: str) -> str:
    role = value or CUSTOMER_ROLE
    if role not in ROLES:
        raise InvalidArgument(f"role must be one of {', '.join(ROLES)}")
    return role


def _by_email(session: Session, key: str) -> UserRow | None:
    return session.exec(select(UserRow).where(UserRow.email_key == key)).first()


class UserServicer(user_pb2_grpc.UserServiceServicer):
    """Customers and admins of the shop; emails are unique regardless of case. Passwords
    are kept as Argon2 hashes only, and never returned."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @grpc_method
    async def CreateUser(
        self, request: user_pb2.CreateUserRequest, context: Context
    ) -> user_pb2.User:
        """Creates a user. A repeat with the same id and email returns the existing user."""
        email = _email(request.email)
        name = text("name", request.name.strip())
        user_id = ident("id", request.id) if request.id else new_id()
        role = _role(request.role)
        key = email.lower()
        password_hash = await _password_hash(request.password)

        def work(session: Session) -> UserRow:
            same_id = session.get(UserRow, user_id)
            if same_id is not None:
                if same_id.email_key == key:
                    return same_id
                raise AlreadyExists(f"user id {user_id} is taken", reason=Reason.USER_ID_TAKEN)
            if _by_email(session, key) is not None:
                # Not the email itself: the message travels into logs and trace spans.
                raise AlreadyExists("this email is taken", reason=Reason.EMAIL_TAKEN)
            row = UserRow(
                id=user_id,
                email=email,
                email_key=key,
                name=name,
                password_hash=password_hash,
                role=role,
            )
            session.add(row)
            session.flush()
            return row

        return _to_pb(await transact(self._engine, work))

    @grpc_method
    async def UpsertUser(
        self, request: user_pb2.CreateUserRequest, context: Context
    ) -> user_pb2.User:
        """Creates the user with this email, or updates its name, password and role."""
        email = _email(request.email)
        name = text("name", request.name.strip())
        role = _role(request.role)
        key = email.lower()
        password_hash = await _password_hash(request.password)

        def work(session: Session) -> UserRow:
            row = _by_email(session, key)
            if row is None:
                user_id = ident("id", request.id) if request.id else new_id()
                row = UserRow(id=user_id, email=email, email_key=key, name=name)
            row.name, row.role = name, role
            if password_hash is not None:
                row.password_hash = password_hash
            session.add(row)
            session.flush()
            return row

        return _to_pb(await transact(self._engine, work))

    @grpc_method
    async def GetUser(self, request: user_pb2.GetUserRequest, context: Context) -> user_pb2.User:
        """Reads a user; NOT_FOUND (USER_NOT_FOUND) when no user has this id."""
        user_id = ident("id", request.id)
        row = await get_row(self._engine, UserRow, user_id)
        if row is None:
            raise NotFound(f"user {user_id} not found", reason=Reason.USER_NOT_FOUND)
        return _to_pb(row)

    @grpc_method
    async def Authenticate(
        self, request: user_pb2.AuthenticateRequest, context: Context
    ) -> user_pb2.User:
        """The user with this email and password; UNAUTHENTICATED (INVALID_CREDENTIALS)
        otherwise, the same for an unknown email as for a wrong password."""
        key = request.email.strip().lower()
        looked_up = 0 < len(key) <= EMAIL_MAX and "\x00" not in key
        row = await read(self._engine, lambda s: _by_email(s, key)) if looked_up else None
        stored = row.password_hash if row is not None and row.password_hash else _DUMMY_HASH
        ok = await asyncio.to_thread(_HASHER.verify, request.password, stored)
        if row is None or row.password_hash is None or not ok:
            raise Unauthenticated("wrong email or password", reason=Reason.INVALID_CREDENTIALS)
        return _to_pb(row)
