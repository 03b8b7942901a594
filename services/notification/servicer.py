from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from sqlalchemy import Connection, Engine, bindparam, insert
from sqlalchemy import select as sql_select  # Core; sqlmodel's `select` is for the ORM
from sqlmodel import Session, col, select

from core.errors import InvalidArgument
from core.messages import NotificationKind
from proto.shop.v1 import notification_pb2, notification_pb2_grpc
from services.broadcast import Broadcaster
from services.common import (
    KEY_MAX,
    TEXT_MAX,
    Context,
    grpc_method,
    grpc_stream,
    ident,
    new_id,
    read,
    rfc3339,
    table_of,
    text,
    transact_sql,
)
from services.notification.models import NotificationRow

log = logging.getLogger(__name__)

# SendNotification's statements, built once (it runs for every order).
_TABLE = table_of(NotificationRow)
_BY_KEY = sql_select(_TABLE).where(_TABLE.c.idempotency_key == bindparam("b_key"))
_INSERT = insert(_TABLE).returning(_TABLE.c.seq)


def _to_pb(row: NotificationRow) -> notification_pb2.Notification:
    return notification_pb2.Notification(
        id=row.id,
        user_id=row.user_id,
        order_id=row.order_id,
        kind=row.kind,
        message=row.message,
        created_at=rfc3339(row.created_at),
    )


class NotificationServicer(notification_pb2_grpc.NotificationServiceServicer):
    """Messages to customers about their orders, each sent once per idempotency key."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # StreamNotifications' in-process notifier: (seq, notification), after the commit.
        self._sent: Broadcaster[tuple[int, notification_pb2.Notification]] = Broadcaster()

    @grpc_method
    async def SendNotification(
        self, request: notification_pb2.SendNotificationRequest, context: Context
    ) -> notification_pb2.Notification:
        """Records (sends) a notification; a repeated idempotency_key returns the first one."""
        user_id = ident("user_id", request.user_id)
        key = ident("idempotency_key", request.idempotency_key, KEY_MAX)
        try:
            kind = NotificationKind(request.kind)
        except ValueError:
            raise InvalidArgument(f"kind must be one of {', '.join(NotificationKind)}") from None
        # A cart reminder is about no order; every other kind is about one.
        no_order = kind == NotificationKind.CART_REMINDER and not request.order_id
        order_id = "" if no_order else ident("order_id", request.order_id)
        message = text("message", request.message, TEXT_MAX, required=False)

        def work(conn: Connection) -> tuple[NotificationRow, bool]:
            first = conn.execute(_BY_KEY, {"b_key": key}).first()
            if first is not None:
                return NotificationRow(**first._mapping), False
            row = NotificationRow(
                id=new_id(),
                user_id=user_id,
                order_id=order_id,
                kind=kind,
                message=message,
                idempotency_key=key,
            )
            row.seq = conn.execute(_INSERT, row.model_dump(exclude={"seq"})).scalar_one()
            return row, True

        sent, created = await transact_sql(self._engine, work)
        if created:
            # The simulated delivery: a log line (no real e-mail in this reference project).
            log.info("notify user %s: %s for order %s", user_id, sent.kind, order_id)
            assert sent.seq is not None
            self._sent.publish((sent.seq, _to_pb(sent)))
        return _to_pb(sent)

    @grpc_method
    async def ListNotifications(
        self, request: notification_pb2.ListNotificationsRequest, context: Context
    ) -> notification_pb2.ListNotificationsResponse:
        """A user's notifications (optionally of one order), oldest first."""
        user_id = ident("user_id", request.user_id)
        order_id = ident("order_id", request.order_id) if request.order_id else ""

        def work(session: Session) -> list[NotificationRow]:
            query = select(NotificationRow).where(NotificationRow.user_id == user_id)
            if order_id:
                query = query.where(NotificationRow.order_id == order_id)
            return list(session.exec(query.order_by(col(NotificationRow.seq))).all())

        rows = await read(self._engine, work)
        return notification_pb2.ListNotificationsResponse(notifications=[_to_pb(r) for r in rows])

    @grpc_stream
    async def StreamNotifications(
        self,
        request: notification_pb2.StreamNotificationsRequest,
        context: Context,
    ) -> AsyncIterator[notification_pb2.Notification]:
        """A user's notifications as they are sent, optionally the existing ones first."""
        user_id = ident("user_id", request.user_id)

        def existing(session: Session) -> list[NotificationRow]:
            query = select(NotificationRow).where(NotificationRow.user_id == user_id)
            return list(session.exec(query.order_by(col(NotificationRow.seq))).all())

        # Subscribe first so nothing sent while reading is lost; `seen` drops what the read
        # already returned (by seq, not "seq <= max": PostgreSQL commits out of seq order).
        with self._sent.subscribe(lambda item: item[1].user_id == user_id) as sub:
            await context.send_initial_metadata(())  # tells the client it is subscribed
            seen: set[int] = set()
            if request.include_existing:
                for row in await read(self._engine, existing):
                    seen.add(row.seq or 0)
                    yield _to_pb(row)
            while True:
                seq, notification = await sub.get()
                if seq not in seen:
                    yield notification
