"""The Python enums to and from their proto wire form, in one place.

A proto enum value is the Python member's name behind the enum's prefix
(`PAYMENT_STATUS_CAPTURED` is `PaymentStatus.CAPTURED`); a member without its wire value
fails at import, so the two cannot drift apart silently.
"""

from __future__ import annotations

from core.messages import PaymentStatus
from proto.shop.v1 import payment_pb2

_PAYMENT_STATUS_TO_PB: dict[PaymentStatus, payment_pb2.PaymentStatus] = {
    s: getattr(payment_pb2, f"PAYMENT_STATUS_{s.name}") for s in PaymentStatus
}
_PAYMENT_STATUS_FROM_PB = {v: s for s, v in _PAYMENT_STATUS_TO_PB.items()}


def payment_status_to_pb(status: PaymentStatus) -> payment_pb2.PaymentStatus:
    return _PAYMENT_STATUS_TO_PB[status]


def payment_status_from_pb(value: payment_pb2.PaymentStatus) -> PaymentStatus:
    """Raises KeyError for a value with no Python member (UNSPECIFIED: a service bug)."""
    return _PAYMENT_STATUS_FROM_PB[value]
