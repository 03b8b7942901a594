from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import pytest
from sqlalchemy import Engine, text

from core.messages import PaymentStatus
from core.wire import payment_status_from_pb, payment_status_to_pb
from proto.shop.v1 import payment_pb2 as pay
from services.common import MONEY_MAX
from tests.harness import uid

if TYPE_CHECKING:
    from core.grpc_client import Stubs
from tests.services_fixtures import ExpectError

GOOD, DECLINED, FLAKY = "4242424242424242", "4000000000000002", "4000000000000119"
CAPTURE, REFUND, DECLINE = (
    pay.LEDGER_ENTRY_TYPE_CAPTURE,
    pay.LEDGER_ENTRY_TYPE_REFUND,
    pay.LEDGER_ENTRY_TYPE_DECLINE,
)


CUSTOMER = "u-payments"
Charge = Callable[..., pay.ChargeRequest]


async def tokenize(stubs: Stubs, card: str, user_id: str = CUSTOMER) -> pay.CardToken:
    return await stubs.payment.TokenizeCard(
        pay.TokenizeCardRequest(user_id=user_id, card_number=card)
    )


@pytest.fixture
async def charge(stubs: Stubs) -> Charge:
    """`charge(order_id, card=GOOD, amount=1250)`: a ChargeRequest with CUSTOMER's token."""
    tokens = {card: (await tokenize(stubs, card)).token for card in (GOOD, DECLINED, FLAKY)}

    def make(order_id: str, card: str = GOOD, amount: int = 1250) -> pay.ChargeRequest:
        return pay.ChargeRequest(
            order_id=order_id,
            amount_cents=amount,
            user_id=CUSTOMER,
            card_token=tokens[card],
            idempotency_key=f"{order_id}:c",
        )

    return make


def refund(order_id: str) -> pay.RefundRequest:
    return pay.RefundRequest(order_id=order_id, idempotency_key=f"{order_id}:r")


async def ledger(stubs: Stubs, order_id: str) -> list[tuple[int, int, str]]:
    got = await stubs.payment.ListLedger(pay.ListLedgerRequest(order_id=order_id))
    return [(e.type, e.amount_cents, e.idempotency_key) for e in got.entries]


async def test_pays_once(stubs: Stubs, charge: Charge, engine: Engine) -> None:
    order_id = uid("o-")
    none = await stubs.payment.GetPayment(pay.GetPaymentRequest(order_id=order_id))
    assert none.status == pay.PAYMENT_STATUS_NONE
    results = await asyncio.gather(*(stubs.payment.Charge(charge(order_id)) for _ in range(5)))
    assert {(r.status, r.amount_cents, r.card_last4) for r in results} == {
        (pay.PAYMENT_STATUS_CAPTURED, 1250, "4242")
    }
    assert await ledger(stubs, order_id) == [(CAPTURE, 1250, f"{order_id}:c")]
    got = await stubs.payment.GetPayment(pay.GetPaymentRequest(order_id=order_id))
    assert got == results[0]
    # Only the last four digits are stored anywhere.
    with engine.connect() as conn:
        rows = [
            conn.execute(text(f"SELECT * FROM {t}")).all()
            for t in ("payment_orders", "payment_cards")
        ]
    assert GOOD not in repr(rows)


async def test_declined_is_final(stubs: Stubs, charge: Charge, expect_error: ExpectError) -> None:
    order_id = uid("o-")
    for _ in range(3):
        err = await expect_error(
            stubs.payment.Charge(charge(order_id, DECLINED)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "PAYMENT_DECLINED",
        )
        assert err.details() == "card declined"
    # Even a good card is refused afterwards: the decline is the order's outcome.
    await expect_error(
        stubs.payment.Charge(charge(order_id, GOOD)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PAYMENT_DECLINED",
    )
    assert await ledger(stubs, order_id) == [(DECLINE, 1250, f"{order_id}:c")]
    got = await stubs.payment.GetPayment(pay.GetPaymentRequest(order_id=order_id))
    assert got.status == pay.PAYMENT_STATUS_DECLINED
    # Refunding a declined order changes nothing (it stays DECLINED).
    assert (await stubs.payment.Refund(refund(order_id))).status == pay.PAYMENT_STATUS_DECLINED
    assert len(await ledger(stubs, order_id)) == 1


async def test_amount_above_the_limit_is_declined(
    stubs: Stubs, charge: Charge, expect_error: ExpectError
) -> None:
    # A processor declines such an amount: PAYMENT_DECLINED (final), not INVALID_ARGUMENT.
    for amount in (MONEY_MAX + 1, 50 * 10_000_000_000, 2**63 - 1):
        order_id = uid("o-")
        for _ in range(2):
            err = await expect_error(
                stubs.payment.Charge(charge(order_id, GOOD, amount)),
                grpc.StatusCode.FAILED_PRECONDITION,
                "PAYMENT_DECLINED",
            )
            assert err.details() == "card declined"
        assert await ledger(stubs, order_id) == [(DECLINE, amount, f"{order_id}:c")]
        got = await stubs.payment.GetPayment(pay.GetPaymentRequest(order_id=order_id))
        assert (got.status, got.amount_cents, got.card_last4) == (
            pay.PAYMENT_STATUS_DECLINED,
            amount,
            "4242",
        )
    # The limit itself is paid.
    order_id = uid("o-")
    paid = await stubs.payment.Charge(charge(order_id, GOOD, MONEY_MAX))
    assert (paid.status, paid.amount_cents) == (pay.PAYMENT_STATUS_CAPTURED, MONEY_MAX)
    assert await ledger(stubs, order_id) == [(CAPTURE, MONEY_MAX, f"{order_id}:c")]


async def test_processing_error_fails_twice_then_pays(
    stubs: Stubs, charge: Charge, expect_error: ExpectError
) -> None:
    order_id = uid("o-")
    for _ in range(2):
        await expect_error(
            stubs.payment.Charge(charge(order_id, FLAKY)),
            grpc.StatusCode.UNAVAILABLE,
            "PROCESSING_ERROR",
        )
    assert await ledger(stubs, order_id) == []
    paid = await stubs.payment.Charge(charge(order_id, FLAKY))
    assert (paid.status, paid.card_last4) == (pay.PAYMENT_STATUS_CAPTURED, "0119")
    assert (await stubs.payment.Charge(charge(order_id, FLAKY))) == paid
    assert await ledger(stubs, order_id) == [(CAPTURE, 1250, f"{order_id}:c")]


async def test_refund_once(stubs: Stubs, charge: Charge, expect_error: ExpectError) -> None:
    order_id = uid("o-")
    await stubs.payment.Charge(charge(order_id, amount=999))
    results = await asyncio.gather(*(stubs.payment.Refund(refund(order_id)) for _ in range(4)))
    assert {r.status for r in results} == {pay.PAYMENT_STATUS_REFUNDED}
    assert await ledger(stubs, order_id) == [
        (CAPTURE, 999, f"{order_id}:c"),
        (REFUND, 999, f"{order_id}:r"),
    ]
    await expect_error(
        stubs.payment.Charge(charge(order_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PAYMENT_VOIDED",
    )
    entries = await stubs.payment.ListLedger(pay.ListLedgerRequest(order_id=order_id))
    assert all(e.created_at.endswith("Z") for e in entries.entries)


def test_every_payment_status_has_one_wire_value() -> None:
    wire = {payment_status_to_pb(s) for s in PaymentStatus}
    assert wire == set(pay.PaymentStatus.values()) - {pay.PAYMENT_STATUS_UNSPECIFIED}
    assert all(payment_status_from_pb(payment_status_to_pb(s)) is s for s in PaymentStatus)


async def test_refund_without_capture_voids(
    stubs: Stubs, charge: Charge, expect_error: ExpectError, engine: Engine
) -> None:
    order_id = uid("o-")
    voided = await stubs.payment.Refund(refund(order_id))
    assert voided.status == pay.PAYMENT_STATUS_VOIDED
    # The ledger keeps the enum's value as plain text: readable by any SQL client.
    with engine.connect() as conn:
        query = text("SELECT status FROM payment_orders WHERE order_id = :o")
        assert conn.execute(query, {"o": order_id}).scalar_one() == "VOIDED"
    assert (await stubs.payment.Refund(refund(order_id))).status == pay.PAYMENT_STATUS_VOIDED
    await expect_error(
        stubs.payment.Charge(charge(order_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PAYMENT_VOIDED",
    )
    assert await ledger(stubs, order_id) == []
    # An order between two processing errors (status NONE) is voided the same way.
    flaky = uid("o-")
    await expect_error(stubs.payment.Charge(charge(flaky, FLAKY)), grpc.StatusCode.UNAVAILABLE)
    assert (await stubs.payment.Refund(refund(flaky))).status == pay.PAYMENT_STATUS_VOIDED
    await expect_error(
        stubs.payment.Charge(charge(flaky, FLAKY)), grpc.StatusCode.FAILED_PRECONDITION
    )


async def test_invalid_payment_requests(
    stubs: Stubs, charge: Charge, expect_error: ExpectError
) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    order_id = uid("o-")
    for card in [
        "42424242424",  # 11 digits
        "4" * 20,
        "4242 4242 4242 4242",
        "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢",  # non-ASCII digits
    ]:
        await expect_error(tokenize(stubs, card), invalid, "INVALID_CARD")
    await expect_error(tokenize(stubs, GOOD, user_id=""), invalid)
    for req in [
        charge(order_id, amount=0),
        charge(order_id, amount=-5),
        charge("", GOOD),
        pay.ChargeRequest(order_id=order_id, amount_cents=1, user_id=CUSTOMER),  # no token
        pay.ChargeRequest(order_id=order_id, amount_cents=1, card_token="tok_x"),  # no user
    ]:
        await expect_error(stubs.payment.Charge(req), invalid)
    await expect_error(stubs.payment.Refund(pay.RefundRequest(order_id=order_id)), invalid)
    await expect_error(stubs.payment.GetPayment(pay.GetPaymentRequest(order_id="x" * 65)), invalid)
    status = await stubs.payment.GetPayment(pay.GetPaymentRequest(order_id=order_id))
    assert status.status == pay.PAYMENT_STATUS_NONE


async def test_tokens_name_brand_and_last_four_and_are_new_each_time(stubs: Stubs) -> None:
    cards = {
        GOOD: "visa",
        "5555555555554444": "mastercard",
        "2223003122003222": "mastercard",
        "378282246310005": "amex",
        "6011111111111117": "discover",
        "3566002020360505": "unknown",
    }
    for number, brand in cards.items():
        first, second = await tokenize(stubs, number), await tokenize(stubs, number)
        assert (first.brand, first.last4) == (brand, number[-4:])
        assert first.token.startswith("tok_") and first.token != second.token
        assert number not in first.token


async def test_a_token_pays_only_for_the_customer_who_made_it(
    stubs: Stubs, charge: Charge, expect_error: ExpectError
) -> None:
    theirs = (await tokenize(stubs, GOOD, user_id="someone-else")).token
    order_id = uid("o-")
    for token in (theirs, "tok_unknown"):
        req = pay.ChargeRequest(
            order_id=order_id,
            amount_cents=100,
            user_id=CUSTOMER,
            card_token=token,
            idempotency_key=f"{order_id}:c",
        )
        err = await expect_error(
            stubs.payment.Charge(req), grpc.StatusCode.FAILED_PRECONDITION, "CARD_TOKEN_INVALID"
        )
        assert "not one of this customer's cards" in (err.details() or "")
    # Nothing was charged or recorded: the customer's own token still pays the order.
    assert await ledger(stubs, order_id) == []
    paid = await stubs.payment.Charge(charge(order_id, amount=100))
    assert paid.status == pay.PAYMENT_STATUS_CAPTURED
