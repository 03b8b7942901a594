from __future__ import annotations

import logging
import secrets

from sqlalchemy import Connection, Engine, bindparam, insert
from sqlalchemy import select as sql_select
from sqlalchemy import update as sql_update
from sqlmodel import Session, col, select

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
    grpc_method,
    ident,
    read,
    rfc3339,
    row_by_key,
    table_of,
    transact,
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

# Charge's and TokenizeCard's statements, built once: they run for every order, on a plain
# connection (docs/benchmarks.md, "Call by call").
_PAYMENTS = table_of(PaymentRow)
_LEDGER = table_of(LedgerRow)
_INSERT_CARD = insert(table_of(CardRow))
_INSERT_PAYMENT = insert(_PAYMENTS)
# Bind names differ from the columns': SQLAlchemy reserves those for its own SET clause.
_UPDATE_PAYMENT = (
    sql_update(_PAYMENTS)
    .where(_PAYMENTS.c.order_id == bindparam("key"))
    .values(
        status=bindparam("new_status"),
        amount_cents=bindparam("new_amount"),
        card_last4=bindparam("new_last4"),
        attempts=bindparam("new_attempts"),
        updated_at=bindparam("new_updated_at"),
    )
)
_INSERT_ENTRY = insert(_LEDGER)
_ENTRY_BY_KEY = sql_select(_LEDGER.c.type, _LEDGER.c.order_id).where(
    _LEDGER.c.idempotency_key == bindparam("key")
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


def _token_refused(token: str) -> FailedPrecondition:
    # Unknown and another customer's answer alike: a token cannot be probed for its owner.
    return FailedPrecondition(
        f"card token {token[:12]}... is not one of this customer's cards",
        reason=Reason.CARD_TOKEN_INVALID,
    )


def _locked_row(session: Session, order_id: str) -> PaymentRow:
    """The order's row, locked; created (status NONE) when absent.

    Two first charges of an order both insert: one gets an IntegrityError and `transact`
    runs it again, finding and locking the winner's row.
    """
    row = session.get(PaymentRow, order_id, with_for_update=True)
    if row is None:
        row = PaymentRow(order_id=order_id)
        session.add(row)
        session.flush()
    return row


def _key_reused(kind: str, order_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"idempotency_key already used for a {kind} of order {order_id}",
        reason=Reason.IDEMPOTENCY_KEY_REUSED,
    )


def _add_entry(session: Session, order_id: str, kind: str, amount: int, key: str) -> None:
    used = session.exec(select(LedgerRow).where(LedgerRow.idempotency_key == key)).first()
    if used is not None:
        raise _key_reused(used.type, used.order_id)
    session.add(LedgerRow(order_id=order_id, type=kind, amount_cents=amount, idempotency_key=key))


def _check_key_unused(conn: Connection, key: str) -> None:
    """`_add_entry`'s check, for Charge on a plain connection."""
    used = conn.execute(_ENTRY_BY_KEY, {"key": key}).first()
    if used is not None:
        raise _key_reused(used.type, used.order_id)


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

        await transact_sql(self._engine, lambda conn: conn.execute(_INSERT_CARD, row.model_dump()))
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
                raise _token_refused(token)
            row = row_by_key(conn, PaymentRow, order_id, lock=True)
            if row is None:
                # Two first charges of an order both insert: one gets an IntegrityError and
                # `transact_sql` runs it again, finding and locking the winner's row.
                row = PaymentRow(order_id=order_id)
                conn.execute(_INSERT_PAYMENT, row.model_dump())
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
            row.updated_at = utcnow()
            if card.behaviour == DECLINES or over_limit:
                row.status = PaymentStatus.DECLINED
                row.amount_cents = amount
                entry: str | None = DECLINE
                outcome: DomainError | None = _declined()
            elif card.behaviour == FAILS_TWICE and row.attempts <= FLAKY_FAILURES:
                entry = None
                outcome = Unavailable("processing error, retry", reason=Reason.PROCESSING_ERROR)
            else:
                row.status = PaymentStatus.CAPTURED
                row.amount_cents = amount
                entry, outcome = CAPTURE, None
            if entry is not None:
                _check_key_unused(conn, key)
                conn.execute(
                    _INSERT_ENTRY,
                    {
                        "order_id": order_id,
                        "type": entry,
                        "amount_cents": amount,
                        "idempotency_key": key,
                        "created_at": row.updated_at,
                    },
                )
            conn.execute(
                _UPDATE_PAYMENT,
                {
                    "key": order_id,
                    "new_status": row.status,
                    "new_amount": row.amount_cents,
                    "new_last4": row.card_last4,
                    "new_attempts": row.attempts,
                    "new_updated_at": row.updated_at,
                },
            )
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

        def work(session: Session) -> PaymentRow:
            row = _locked_row(session, order_id)
            if row.status == PaymentStatus.CAPTURED:
                row.status = PaymentStatus.REFUNDED
                _add_entry(session, order_id, REFUND, row.amount_cents, key)
            elif row.status == PaymentStatus.NONE:
                row.status = PaymentStatus.VOIDED
            else:  # REFUNDED, VOIDED, DECLINED: nothing held, nothing to give back
                return row
            row.updated_at = utcnow()
            session.add(row)
            session.flush()
            return row

        return _result(await transact(self._engine, work), order_id)

    @grpc_method
    async def GetPayment(
        self, request: payment_pb2.GetPaymentRequest, context: Context
    ) -> payment_pb2.PaymentResult:
        """The order's payment state; NONE when nothing happened."""
        order_id = ident("order_id", request.order_id)
        row = await read(self._engine, lambda s: s.get(PaymentRow, order_id))
        return _result(row, order_id)

    @grpc_method
    async def ListLedger(
        self, request: payment_pb2.ListLedgerRequest, context: Context
    ) -> payment_pb2.ListLedgerResponse:
        """The order's ledger entries, oldest first."""
        order_id = ident("order_id", request.order_id)

        def work(session: Session) -> list[LedgerRow]:
            query = (
                select(LedgerRow).where(LedgerRow.order_id == order_id).order_by(col(LedgerRow.id))
            )
            return list(session.exec(query).all())

        rows = await read(self._engine, work)
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
