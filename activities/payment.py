from __future__ import annotations

import grpc
from temporalio import activity

from activities.grpc_errors import translate
from core.messages import ChargeInput, FailureReason, PaymentInfo, RefundInput
from proto.shop.v1 import payment_pb2, payment_pb2_grpc

RPC_TIMEOUT = 5.0


def _info(r: payment_pb2.PaymentResult) -> PaymentInfo:
    status = payment_pb2.PaymentStatus.Name(r.status).removeprefix("PAYMENT_STATUS_")
    return PaymentInfo(
        order_id=r.order_id, status=status, amount_cents=r.amount_cents, card_last4=r.card_last4
    )


class PaymentActivities:
    def __init__(self, stub: payment_pb2_grpc.PaymentServiceStub) -> None:
        self._stub = stub

    @activity.defn(name="charge")
    async def charge(self, inp: ChargeInput) -> PaymentInfo:
        """Captures the order's total once (idempotency key); PAYMENT_DECLINED is final.

        The provider's transient processing errors come back UNAVAILABLE and are retried.
        """
        req = payment_pb2.ChargeRequest(
            order_id=inp.order_id,
            amount_cents=inp.amount_cents,
            card_number=inp.card_number,
            idempotency_key=inp.idempotency_key,
        )
        try:
            return _info(await self._stub.Charge(req, timeout=RPC_TIMEOUT))
        except grpc.aio.AioRpcError as err:
            business = {grpc.StatusCode.FAILED_PRECONDITION: FailureReason.PAYMENT_DECLINED.value}
            raise translate(err, business) from None

    @activity.defn(name="refund")
    async def refund(self, inp: RefundInput) -> PaymentInfo:
        """Compensation of charge: refunds the capture once; voids an order never captured."""
        req = payment_pb2.RefundRequest(order_id=inp.order_id, idempotency_key=inp.idempotency_key)
        try:
            return _info(await self._stub.Refund(req, timeout=RPC_TIMEOUT))
        except grpc.aio.AioRpcError as err:
            raise translate(err, {}) from None
