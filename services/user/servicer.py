from __future__ import annotations

import grpc
from sqlalchemy import Engine
from sqlmodel import Session, select

from core.errors import AlreadyExists, InvalidArgument, NotFound, Reason
from proto.shop.v1 import user_pb2, user_pb2_grpc
from services.common import grpc_method, ident, new_id, read, rfc3339, text, transact
from services.user.models import UserRow

EMAIL_MAX = 254


def _to_pb(row: UserRow) -> user_pb2.User:
    return user_pb2.User(
        id=row.id, email=row.email, name=row.name, created_at=rfc3339(row.created_at)
    )


class UserServicer(user_pb2_grpc.UserServiceServicer):
    """Customers of the shop; emails are unique regardless of case."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @grpc_method
    async def CreateUser(
        self, request: user_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.User:
        """Creates a user. A repeat with the same id and email returns the existing user."""
        email = text("email", request.email.strip(), EMAIL_MAX)
        local, _, domain = email.partition("@")
        if not local or not domain or " " in email:
            raise InvalidArgument("email must look like name@domain", reason=Reason.INVALID_EMAIL)
        name = text("name", request.name.strip())
        user_id = ident("id", request.id) if request.id else new_id()
        key = email.lower()

        def work(session: Session) -> UserRow:
            same_id = session.get(UserRow, user_id)
            if same_id is not None:
                if same_id.email_key == key:
                    return same_id
                raise AlreadyExists(f"user id {user_id} is taken", reason=Reason.USER_ID_TAKEN)
            taken = session.exec(select(UserRow).where(UserRow.email_key == key)).first()
            if taken is not None:
                raise AlreadyExists(f"email {email} is taken", reason=Reason.EMAIL_TAKEN)
            row = UserRow(id=user_id, email=email, email_key=key, name=name)
            session.add(row)
            session.flush()
            return row

        return _to_pb(await transact(self._engine, work))

    @grpc_method
    async def GetUser(
        self, request: user_pb2.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.User:
        """Reads a user; NOT_FOUND (USER_NOT_FOUND) when no user has this id."""
        user_id = ident("id", request.id)
        row = await read(self._engine, lambda s: s.get(UserRow, user_id))
        if row is None:
            raise NotFound(f"user {user_id} not found", reason=Reason.USER_NOT_FOUND)
        return _to_pb(row)
