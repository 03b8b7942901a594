"""The Python enums to and from their proto wire form, in one place.

A proto enum value is the Python member's name behind the enum's prefix
(`PAYMENT_STATUS_CAPTURED` is `PaymentStatus.CAPTURED`), so the two cannot drift apart
silently: a member without its wire value, or the reverse, fails the conversion.
"""

from __future__ import annotations

from core.messages import PaymentStatus
from proto.shop.v1 import payment_pb2

_PAYMENT_STATUS = "PAYMENT_STATUS_"


def payment_status_to_pb(status: PaymentStatus) -> payment_pb2.PaymentStatus.ValueType:
    return payment_pb2.PaymentStatus.Value(_PAYMENT_STATUS + status.value)


def payment_status_from_pb(value: payment_pb2.PaymentStatus.ValueType) -> PaymentStatus:
    """Raises ValueError for a value with no Python member (UNSPECIFIED: a service bug)."""
    return PaymentStatus(payment_pb2.PaymentStatus.Name(value).removeprefix(_PAYMENT_STATUS))
