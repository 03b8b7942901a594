from __future__ import annotations

import grpc
from temporalio import activity

from activities.rpc import RPC_TIMEOUT, to_application_error
from core.messages import NotifyInput
from proto.shop.v1 import notification_pb2, notification_pb2_grpc


class NotificationActivities:
    def __init__(self, stub: notification_pb2_grpc.NotificationServiceAsyncStub) -> None:
        self._stub = stub

    @activity.defn(name="send_notification")
    async def send_notification(self, inp: NotifyInput) -> None:
        """Sends the customer a notification once per idempotency key."""
        req = notification_pb2.SendNotificationRequest(
            user_id=inp.user_id,
            order_id=inp.order_id,
            kind=inp.kind.value,
            message=inp.message,
            idempotency_key=inp.idempotency_key,
        )
        try:
            await self._stub.SendNotification(req, timeout=RPC_TIMEOUT)
        except grpc.aio.AioRpcError as err:
            raise to_application_error(err) from None
