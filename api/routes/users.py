"""/users: create and read users (UserService) and their notifications."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import GRPC_TIMEOUT, IdempotencyKey, PathId, StubsDep, created_id_for
from api.models import NotificationPublic, UserCreate, UserPublic, error_responses
from proto.shop.v1 import notification_pb2, user_pb2

router = APIRouter(prefix="/users", tags=["users"])


def _public(u: user_pb2.User) -> UserPublic:
    return UserPublic(id=u.id, email=u.email, name=u.name)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses=error_responses(409, 422, 502, 503),
)
async def create_user(
    body: UserCreate, stubs: StubsDep, idempotency_key: IdempotencyKey = None
) -> UserPublic:
    """Creates a user; 409 when the email is taken (or the key was used for another email).
    With an `Idempotency-Key`, a retry answers 201 with the same user."""
    user = await stubs.user.CreateUser(
        user_pb2.CreateUserRequest(
            email=body.email, name=body.name, id=created_id_for("user", idempotency_key)
        ),
        timeout=GRPC_TIMEOUT,
    )
    return _public(user)


@router.get("/{user_id}", response_model=UserPublic, responses=error_responses(404, 422, 502, 503))
async def get_user(user_id: PathId, stubs: StubsDep) -> UserPublic:
    user = await stubs.user.GetUser(user_pb2.GetUserRequest(id=user_id), timeout=GRPC_TIMEOUT)
    return _public(user)


@router.get(
    "/{user_id}/notifications",
    response_model=list[NotificationPublic],
    responses=error_responses(404, 422, 502, 503),
)
async def list_notifications(user_id: PathId, stubs: StubsDep) -> list[NotificationPublic]:
    """What the user was told about their orders, oldest first."""
    await stubs.user.GetUser(user_pb2.GetUserRequest(id=user_id), timeout=GRPC_TIMEOUT)
    resp = await stubs.notification.ListNotifications(
        notification_pb2.ListNotificationsRequest(user_id=user_id), timeout=GRPC_TIMEOUT
    )
    return [
        NotificationPublic(
            kind=n.kind, order_id=n.order_id, message=n.message, created_at=n.created_at
        )
        for n in resp.notifications
    ]
