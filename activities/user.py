from __future__ import annotations

import grpc
from temporalio import activity

from activities.rpc import RPC_TIMEOUT, to_application_error
from core.messages import GetUserInput, UserInfo
from proto.shop.v1 import user_pb2, user_pb2_grpc


class UserActivities:
    def __init__(self, stub: user_pb2_grpc.UserServiceAsyncStub) -> None:
        self._stub = stub

    @activity.defn(name="get_user")
    async def get_user(self, inp: GetUserInput) -> UserInfo:
        """Looks the customer up; USER_NOT_FOUND (non-retryable) when there is none."""
        try:
            user = await self._stub.GetUser(
                user_pb2.GetUserRequest(id=inp.user_id), timeout=RPC_TIMEOUT
            )
        except grpc.aio.AioRpcError as err:
            raise to_application_error(err) from None
        return UserInfo(id=user.id, email=user.email, name=user.name)
