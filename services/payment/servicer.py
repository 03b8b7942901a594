from __future__ import annotations

import logging
import secrets

from sqlalchemy import Connection, Engine, bindparam, insert, select, update

from core.db import run_sql
from core.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    Reason,
    Unavailable,
)
from core.messages import PaymentStatus
from core.wire import payment_status_to_pb
from proto.shop.v1 import payment_pb2, payment_pb2_grpc
from services.common import (
    KEY_MAX,
    MONEY_MAX,
    Context,
    get_row,
    grpc_method,
    ident,
    rfc3339,
    row_by_key,
    table_of,
    transact_sql,
    utcnow,
)
from services.payment.models import CAPTURE, DECLINE, REFUND, CardRow, LedgerRow, PaymentRow

log = logging.getLogger(__name__)

# The simulated provider's test cards, and how charges with each behave (others pay).
PAYS, DECLINES, FAILS_TWICE = "PAYS", "DECLINES", "FAILS_TWICE"
TEST_CARDS = {"4000000000000002": DECLINES, "4000000000000119": FAILS_TWICE}
FLAKY_FAILURES = 2
# Issuer prefixes of the brands the shop names; anything else is "unknown".
_BRANDS = (
    ("amex", ("34", "37")),
    ("discover", ("6011", "65")),
    ("mastercard", tuple(str(p) for p in (*range(51, 56), *range(2221, 2721)))),
    ("visa", ("4",)),
)

# The writes' statements, built once (a charge and a card token for every order), run on a
# plain connection (docs/benchmarks.md, "Call by call"). Bind names carry a `b_` prefix:
# SQLAlchemy reserves the columns' own names for the SET clause it builds.
_PAYMENTS = table_of(PaymentRow)
_LEDGER = table_of(LedgerRow)
_INSERT_CARD = insert(table_of(CardRow))
_INSERT_PAYMENT = insert(_PAYMENTS)
_UPDATE_PAYMENT = (
    update(_PAYMENTS)
    .where(_PAYMENTS.c.order_id == bindparam("b_order_id"))
    .values(
        status=bindparam("b_status"),
        amount_cents=bindparam("b_amount_cents"),
        card_last4=bindparam("b_card_last4"),
        attempts=bindparam("b_attempts"),
        updated_at=bindparam("b_updated_at"),
    )
)
_INSERT_ENTRY = insert(_LEDGER)
_LEDGER_OF = (
    select(_LEDGER).where(_LEDGER.c.order_id == bindparam("b_order_id")).order_by(_LEDGER.c.id)
)
_ENTRY_BY_KEY = select(_LEDGER.c.type, _LEDGER.c.order_id).where(
    _LEDGER.c.idempotency_key == bindparam("b_key")
)

_ENTRY = {
    CAPTURE: payment_pb2.LEDGER_ENTRY_TYPE_CAPTURE,
    REFUND: payment_pb2.LEDGER_ENTRY_TYPE_REFUND,
    DECLINE: payment_pb2.LEDGER_ENTRY_TYPE_DECLINE,
}


def _declined() -> FailedPrecondition:
    return FailedPrecondition("card declined", reason=Reason.PAYMENT_DECLINED)


def _result(row: PaymentRow | None, order_id: str) -> payment_pb2.PaymentResult:
    if row is None:
        row = PaymentRow(order_id=order_id)
    return payment_pb2.PaymentResult(
        order_id=row.order_id,
        status=payment_status_to_pb(row.status),
        amount_cents=row.amount_cents,
        card_last4=row.card_last4,
    )


def _card(number: str) -> str:
    """Validates the card number's format; the number itself never leaves this request."""
    if not (12 <= len(number) <= 19 and number.isascii() and number.isdigit()):
        raise InvalidArgument("card_number must be 12 to 19 digits", reason=Reason.INVALID_CARD)
    return number


def brand_of(number: str) -> str:
    return next((b for b, prefixes in _BRANDS if number.startswith(prefixes)), "unknown")


def _token_refused() -> FailedPrecondition:
    # Unknown and another customer's answer alike: a token cannot be probed for its owner.
    # No part of the token in the message: it travels to the worker's logs and the history.
    return FailedPrecondition(
        "the card token is not one of this customer's cards", reason=Reason.CARD_TOKEN_INVALID
    )


def _locked_row(conn: Connection, order_id: str) -> PaymentRow:
    """The order's row, locked; created (status NONE) when absent.

    Two first charges of an order both insert: one gets an IntegrityError and
    `transact_sql` runs it again, finding and locking the winner's row.
    """
    row = row_by_key(conn, PaymentRow, order_id, lock=True)
    if row is None:
        row = PaymentRow(order_id=order_id)
        conn.execute(_INSERT_PAYMENT, row.model_dump())
    return row


def _save(conn: Connection, row: PaymentRow) -> None:
    """Writes back what a charge or a refund changes in the order's (locked) row."""
    row.updated_at = utcnow()
    conn.execute(
        _UPDATE_PAYMENT,
        {
            "b_order_id": row.order_id,
            "b_status": row.status,
            "b_amount_cents": row.amount_cents,
            "b_card_last4": row.card_last4,
            "b_attempts": row.attempts,
            "b_updated_at": row.updated_at,
        },
    )


def _add_entry(conn: Connection, order_id: str, kind: str, amount: int, key: str) -> None:
    """One ledger entry; AlreadyExists (rolling the transaction back) when its idempotency
    key was used before, for this order or another."""
    used = conn.execute(_ENTRY_BY_KEY, {"b_key": key}).first()
    if used is not None:
        raise AlreadyExists(
            f"idempotency_key already used for a {used.type} of order {used.order_id}",
            reason=Reason.IDEMPOTENCY_KEY_REUSED,
        )
    entry = LedgerRow(order_id=order_id, type=kind, amount_cents=amount, idempotency_key=key)
    conn.execute(_INSERT_ENTRY, entry.model_dump(exclude={"id"}))


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    """A simulated card provider with a ledger of captures, refunds and declines.

    Each order is captured at most once and refunded at most once; outcomes that must be
    remembered (a decline, a processing-error attempt) are committed before the error
    reaches the caller.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @grpc_method
    async def TokenizeCard(
        self, request: payment_pb2.TokenizeCardRequest, context: Context
    ) -> payment_pb2.CardToken:
        """A new token for the card, bound to the customer; keeps brand and last four only."""
        user_id = ident("user_id", request.user_id)
        card = _card(request.card_number)
        row = CardRow(
            token=f"tok_{secrets.token_urlsafe(24)}",
            user_id=user_id,
            brand=brand_of(card),
            last4=card[-4:],
            behaviour=TEST_CARDS.get(card, PAYS),
        )

        def work(conn: Connection) -> None:
            conn.execute(_INSERT_CARD, row.model_dump())

        await transact_sql(self._engine, work)
        log.info("card ****%s (%s) tokenized for user %s", row.last4, row.brand, user_id)
        return payment_pb2.CardToken(token=row.token, brand=row.brand, last4=row.last4)

    @grpc_method
    async def Charge(
        self, request: payment_pb2.ChargeRequest, context: Context
    ) -> payment_pb2.PaymentResult:
        """Captures amount_cents once per order; PAYMENT_DECLINED is final, UNAVAILABLE not.

        An amount above MONEY_MAX is declined like a card over its limit: it is a valid
        request that the provider refuses, not a malformed one.
        """
        order_id = ident("order_id", request.order_id)
        key = ident("idempotency_key", request.idempotency_key, KEY_MAX)
        amount = request.amount_cents
        if amount < 1:
            raise InvalidArgument("amount_cents must be at least 1")
        over_limit = amount > MONEY_MAX
        user_id = ident("user_id", request.user_id)
        token = ident("card_token", request.card_token)

        # Returns the error to raise after commit instead of raising it (which would roll
        # back the decline or the attempt count). The card is read in the same transaction:
        # one trip to the database thread instead of two.
        def work(conn: Connection) -> tuple[PaymentRow, DomainError | None]:
            card = row_by_key(conn, CardRow, token)
            if card is None or card.user_id != user_id:
                raise _token_refused()
            row = _locked_row(conn, order_id)
            if row.status == PaymentStatus.CAPTURED:
                return row, None
            if row.status in (PaymentStatus.REFUNDED, PaymentStatus.VOIDED):
                return row, FailedPrecondition(
                    f"payment of order {order_id} was {row.status.lower()}",
                    reason=Reason.PAYMENT_VOIDED,
                )
            if row.status == PaymentStatus.DECLINED:
                return row, _declined()
            row.attempts += 1
            row.card_last4 = card.last4
            if card.behaviour == DECLINES or over_limit:
                row.status = PaymentStatus.DECLINED
                row.amount_cents = amount
                _add_entry(conn, order_id, DECLINE, amount, key)
                outcome: DomainError | None = _declined()
            elif card.behaviour == FAILS_TWICE and row.attempts <= FLAKY_FAILURES:
                outcome = Unavailable("processing error, retry", reason=Reason.PROCESSING_ERROR)
            else:
                row.status = PaymentStatus.CAPTURED
                row.amount_cents = amount
                _add_entry(conn, order_id, CAPTURE, amount, key)
                outcome = None
            _save(conn, row)
            return row, outcome

        row, error = await transact_sql(self._engine, work)
        if error is not None:
            why = " (amount above the limit)" if over_limit else ""
            log.info("charge of order %s: %s%s", order_id, error.reason, why)
            raise error
        return _result(row, order_id)

    @grpc_method
    async def Refund(
        self, request: payment_pb2.RefundRequest, context: Context
    ) -> payment_pb2.PaymentResult:
        """Refunds the capture in full, once. Without a capture the order becomes VOIDED
        (a later charge is refused); a DECLINED order stays DECLINED, which refuses it too.
        """
        order_id = ident("order_id", request.order_id)
        key = ident("idempotency_key", request.idempotency_key, KEY_MAX)

        def work(conn: Connection) -> PaymentRow:
            row = _locked_row(conn, order_id)
            if row.status == PaymentStatus.CAPTURED:
                row.status = PaymentStatus.REFUNDED
                _add_entry(conn, order_id, REFUND, row.amount_cents, key)
            elif row.status == PaymentStatus.NONE:
                row.status = PaymentStatus.VOIDED
            else:  # REFUNDED, VOIDED, DECLINED: nothing held, nothing to give back
                return row
            _save(conn, row)
            return row

        return _result(await transact_sql(self._engine, work), order_id)

    @grpc_method
    async def GetPayment(
        self, request: payment_pb2.GetPaymentRequest, context: Context
    ) -> payment_pb2.PaymentResult:
        """The order's payment state; NONE when nothing happened."""
        order_id = ident("order_id", request.order_id)
        row = await get_row(self._engine, PaymentRow, order_id)
        return _result(row, order_id)

    @grpc_method
    async def ListLedger(
        self, request: payment_pb2.ListLedgerRequest, context: Context
    ) -> payment_pb2.ListLedgerResponse:
        """The order's ledger entries, oldest first."""
        order_id = ident("order_id", request.order_id)

        def work(conn: Connection) -> list[LedgerRow]:
            found = conn.execute(_LEDGER_OF, {"b_order_id": order_id})
            return [LedgerRow(**r._mapping) for r in found]

        rows = await run_sql(self._engine, work, read_only=True)
        return payment_pb2.ListLedgerResponse(
            entries=[
                payment_pb2.LedgerEntry(
                    order_id=r.order_id,
                    type=_ENTRY[r.type],
                    amount_cents=r.amount_cents,
                    idempotency_key=r.idempotency_key,
                    created_at=rfc3339(r.created_at),
                )
                for r in rows
            ]
        )
