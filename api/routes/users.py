"""/users: registration, the caller's own user, and their notifications (UserService)."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.auth import CallerDep, ensure_reaches
from api.deps import GRPC_TIMEOUT, IdempotencyKey, PathId, StubsDep, created_id_for
from api.models import NotificationPublic, UserCreate, UserPublic, error_responses
from api.rate_limits import RateLimited
from core.tokens import CUSTOMER_ROLE
from proto.shop.v1 import notification_pb2, user_pb2

router = APIRouter(prefix="/users", tags=["users"])


def _public(u: user_pb2.User) -> UserPublic:
    return UserPublic(id=u.id, email=u.email, name=u.name, role=u.role)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses=error_responses(409, 422, 429, 502, 503),
    dependencies=[RateLimited],
)
async def create_user(
    body: UserCreate, stubs: StubsDep, idempotency_key: IdempotencyKey = None
) -> UserPublic:
    """Registers a customer; 409 when the email is taken (or the key was used for another
    email). With an `Idempotency-Key`, a retry answers 201 with the same user."""
    user = await stubs.user.CreateUser(
        user_pb2.CreateUserRequest(
            email=body.email,
            name=body.name,
            id=created_id_for("user", idempotency_key),
            password=body.password.get_secret_value(),
            role=CUSTOMER_ROLE,
        ),
        timeout=GRPC_TIMEOUT,
    )
    return _public(user)


@router.get("/me", response_model=UserPublic, responses=error_responses(401, 404, 502, 503))
async def get_me(caller: CallerDep, stubs: StubsDep) -> UserPublic:
    """The caller's own user."""
    return await get_user(caller.sub, caller, stubs)


@router.get(
    "/{user_id}", response_model=UserPublic, responses=error_responses(401, 404, 422, 502, 503)
)
async def get_user(user_id: PathId, caller: CallerDep, stubs: StubsDep) -> UserPublic:
    """A user: the caller's own, or anyone's for an admin."""
    ensure_reaches(caller, user_id, "user", user_id)
    user = await stubs.user.GetUser(user_pb2.GetUserRequest(id=user_id), timeout=GRPC_TIMEOUT)
    return _public(user)


@router.get(
    "/{user_id}/notifications",
    response_model=list[NotificationPublic],
    responses=error_responses(401, 404, 422, 502, 503),
)
async def list_notifications(
    user_id: PathId, caller: CallerDep, stubs: StubsDep
) -> list[NotificationPublic]:
    """What the user was told about their orders, oldest first."""
    ensure_reaches(caller, user_id, "user", user_id)
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
