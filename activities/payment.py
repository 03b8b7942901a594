from __future__ import annotations

import grpc
from temporalio import activity

from activities.rpc import RPC_TIMEOUT, to_application_error
from core import shop_metrics
from core.messages import ChargeInput, FailureReason, PaymentInfo, PaymentStatus, RefundInput
from core.wire import payment_status_from_pb
from proto.shop.v1 import payment_pb2, payment_pb2_grpc


def _info(r: payment_pb2.PaymentResult) -> PaymentInfo:
    return PaymentInfo(
        order_id=r.order_id,
        status=payment_status_from_pb(r.status),
        amount_cents=r.amount_cents,
        card_last4=r.card_last4,
    )


class PaymentActivities:
    def __init__(self, stub: payment_pb2_grpc.PaymentServiceAsyncStub) -> None:
        self._stub = stub

    @activity.defn(name="charge")
    async def charge(self, inp: ChargeInput) -> PaymentInfo:
        """Captures the order's total once (idempotency key) with the customer's card token;
        PAYMENT_DECLINED is final, and so are PAYMENT_VOIDED (a refund of the order came
        first) and CARD_TOKEN_INVALID.

        The provider's transient processing errors come back UNAVAILABLE and are retried.
        """
        req = payment_pb2.ChargeRequest(
            order_id=inp.order_id,
            amount_cents=inp.amount_cents,
            idempotency_key=inp.idempotency_key,
            user_id=inp.user_id,
            card_token=inp.card_token,
        )
        meter = activity.metric_meter()
        try:
            info = _info(await self._stub.Charge(req, timeout=RPC_TIMEOUT))
        except grpc.aio.AioRpcError as err:
            failure = to_application_error(err)
            declined = failure.type == FailureReason.PAYMENT_DECLINED
            shop_metrics.payment(meter, shop_metrics.DECLINED if declined else shop_metrics.ERROR)
            raise failure from None
        shop_metrics.payment(meter, shop_metrics.CAPTURED)
        return info

    @activity.defn(name="refund")
    async def refund(self, inp: RefundInput) -> PaymentInfo:
        """Compensation of charge: refunds the capture once; voids an order never captured."""
        req = payment_pb2.RefundRequest(order_id=inp.order_id, idempotency_key=inp.idempotency_key)
        try:
            info = _info(await self._stub.Refund(req, timeout=RPC_TIMEOUT))
        except grpc.aio.AioRpcError as err:
            shop_metrics.payment(activity.metric_meter(), shop_metrics.ERROR)
            raise to_application_error(err) from None
        if info.status == PaymentStatus.REFUNDED:  # not a void of a charge never captured
            shop_metrics.payment(activity.metric_meter(), shop_metrics.REFUNDED)
        return info
