from __future__ import annotations

import grpc
from temporalio import activity

from activities.grpc_errors import translate
from core.messages import FailureReason, GetUserInput, UserInfo
from proto.shop.v1 import user_pb2, user_pb2_grpc

RPC_TIMEOUT = 5.0


class UserActivities:
    def __init__(self, stub: user_pb2_grpc.UserServiceStub) -> None:
        self._stub = stub

    @activity.defn(name="get_user")
    async def get_user(self, inp: GetUserInput) -> UserInfo:
        """Looks the customer up; USER_NOT_FOUND (non-retryable) when there is none."""
        try:
            user = await self._stub.GetUser(
                user_pb2.GetUserRequest(id=inp.user_id), timeout=RPC_TIMEOUT
            )
        except grpc.aio.AioRpcError as err:
            business = {grpc.StatusCode.NOT_FOUND: FailureReason.USER_NOT_FOUND.value}
            raise translate(err, business) from None
        return UserInfo(id=user.id, email=user.email, name=user.name)
