from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc

from core.messages import NotificationKind
from proto.shop.v1 import notification_pb2 as note
from tests.harness import uid

if TYPE_CHECKING:
    from core.grpc_client import Stubs
from tests.services_fixtures import ExpectError


def send(user_id: str, order_id: str, kind: str, **kw: str) -> note.SendNotificationRequest:
    fields = {"idempotency_key": f"{order_id}:{kind}", "message": f"{kind} {order_id}", **kw}
    return note.SendNotificationRequest(user_id=user_id, order_id=order_id, kind=kind, **fields)


async def test_send_is_idempotent_and_listed_oldest_first(stubs: Stubs) -> None:
    user_id, o1, o2 = uid("u-"), uid("o-"), uid("o-")
    first = await stubs.notification.SendNotification(send(user_id, o1, "ORDER_CONFIRMED"))
    repeats = await asyncio.gather(
        *(
            stubs.notification.SendNotification(send(user_id, o1, "ORDER_CONFIRMED"))
            for _ in range(5)
        )
    )
    assert all(r == first for r in repeats)
    await stubs.notification.SendNotification(send(user_id, o2, "ORDER_FAILED"))
    await stubs.notification.SendNotification(send(user_id, o1, "ORDER_SHIPPED"))
    await stubs.notification.SendNotification(send(uid("u-"), o1, "ORDER_DELIVERED"))

    listed = await stubs.notification.ListNotifications(
        note.ListNotificationsRequest(user_id=user_id)
    )
    assert [(n.order_id, n.kind) for n in listed.notifications] == [
        (o1, "ORDER_CONFIRMED"),
        (o2, "ORDER_FAILED"),
        (o1, "ORDER_SHIPPED"),
    ]
    assert listed.notifications[0] == first and first.created_at.endswith("Z")
    only_o1 = await stubs.notification.ListNotifications(
        note.ListNotificationsRequest(user_id=user_id, order_id=o1)
    )
    assert [n.kind for n in only_o1.notifications] == ["ORDER_CONFIRMED", "ORDER_SHIPPED"]
    nobody = await stubs.notification.ListNotifications(
        note.ListNotificationsRequest(user_id=uid())
    )
    assert list(nobody.notifications) == []


async def test_invalid_notifications(stubs: Stubs, expect_error: ExpectError) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    user_id, order_id = uid("u-"), uid("o-")
    for req in [
        send("", order_id, "ORDER_CONFIRMED"),
        send(user_id, "", "ORDER_CONFIRMED"),
        send(user_id, order_id, "ORDER_LOST"),
        send(user_id, order_id, ""),
        send(user_id, order_id, "ORDER_CONFIRMED", idempotency_key=""),
        send(user_id, order_id, "ORDER_CONFIRMED", idempotency_key="k" * 129),
        send(user_id, order_id, "ORDER_CONFIRMED", message="m" * 2001),
    ]:
        await expect_error(stubs.notification.SendNotification(req), invalid)
    await expect_error(
        stubs.notification.ListNotifications(note.ListNotificationsRequest()), invalid
    )


async def test_every_notification_kind_is_accepted(stubs: Stubs) -> None:
    user_id, order_id = uid("u-"), uid("o-")
    for kind in NotificationKind:
        await stubs.notification.SendNotification(send(user_id, order_id, kind))
    listed = await stubs.notification.ListNotifications(
        note.ListNotificationsRequest(user_id=user_id)
    )
    assert [n.kind for n in listed.notifications] == [k.value for k in NotificationKind]
