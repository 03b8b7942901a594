"""Helpers shared by the servicers: validation, timestamps, transactions, error translation."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from sqlalchemy import Connection, DateTime, Engine, Select, Table, bindparam, inspect, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlmodel import Session, SQLModel

from core.db import run_db, run_sql
from core.errors import DomainError, InvalidArgument, Reason, Unavailable, abort_with

log = logging.getLogger(__name__)

T = TypeVar("T")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
S = TypeVar("S")

ID_MAX = 64
KEY_MAX = 128  # idempotency keys: an order id plus a step name
NAME_MAX = 200
TEXT_MAX = 2000
MONEY_MAX = 100_000_000_000  # $1bn in cents: far below int64, rejects absurd input
QUANTITY_MAX = 1_000_000
DELTA_MAX = 1_000_000_000

# PostgreSQL serialization failure and deadlock: the transaction may simply be run again.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}
_TX_ATTEMPTS = 5

Timestamp = DateTime(timezone=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def rfc3339(dt: datetime) -> str:
    """RFC 3339 in UTC with a `Z`; SQLite hands back naive datetimes, which are UTC here."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


def text(field: str, value: str, max_len: int = NAME_MAX, *, required: bool = True) -> str:
    """Validates a free-text field: length bounds and no NUL (PostgreSQL rejects it)."""
    if required and not value.strip():
        raise InvalidArgument(f"{field} is required")
    if len(value) > max_len:
        raise InvalidArgument(f"{field} is longer than {max_len} characters")
    if "\x00" in value:
        raise InvalidArgument(f"{field} contains a NUL character")
    return value


def ident(field: str, value: str, max_len: int = ID_MAX) -> str:
    """Validates an id or key: non-empty, bounded, printable, no surrounding whitespace."""
    if not value:
        raise InvalidArgument(f"{field} is required")
    if len(value) > max_len:
        raise InvalidArgument(f"{field} is longer than {max_len} characters")
    if not value.isprintable() or value != value.strip():
        raise InvalidArgument(f"{field} contains whitespace or control characters")
    return value


def in_range(field: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidArgument(f"{field} must be between {low} and {high}")
    return value


async def transact(engine: Engine, fn: Callable[[Session], T]) -> T:
    """Runs `fn` in one transaction, running it again after a lost race.

    A concurrent insert of the same key (IntegrityError) or a PostgreSQL deadlock /
    serialization failure rolls the whole transaction back; running it again re-reads the
    winner's row, so concurrent duplicates get the idempotent answer instead of an error.
    """
    return await _retried(lambda: run_db(engine, fn))


async def transact_sql(engine: Engine, fn: Callable[[Connection], T]) -> T:
    """`transact` for SQL expression (Core) work on a plain connection: the hot writes of a
    checkout (ReserveStock, Charge, TokenizeCard, SendNotification) and the payment
    service's other writes, which need none of an ORM session's bookkeeping
    (docs/benchmarks.md, "Call by call")."""
    return await _retried(lambda: run_sql(engine, fn))


async def _retried(attempt_once: Callable[[], Awaitable[T]]) -> T:
    for attempt in range(1, _TX_ATTEMPTS + 1):
        try:
            return await attempt_once()
        except IntegrityError:
            log.debug("integrity conflict, attempt %d", attempt)
        except DBAPIError as err:
            if getattr(err.orig, "sqlstate", None) not in _RETRYABLE_SQLSTATES:
                raise
            log.debug("serialization conflict, attempt %d", attempt)
    raise Unavailable("concurrent update conflict, retry", reason=Reason.CONFLICT)


async def read(engine: Engine, fn: Callable[[Session], T]) -> T:
    """Runs `fn`, which only reads, in one transaction that takes no write lock."""
    return await run_db(engine, fn, read_only=True)


M = TypeVar("M", bound=SQLModel)


async def get_row(engine: Engine, model: type[M], key: str) -> M | None:
    """The row of `model` whose primary key is `key`, or None: one prebuilt statement on a
    plain connection. The hot lookups of a checkout (a user, a product) need none of what a
    Session.get costs (a session, its identity map, the ORM's loading): alone, a read by key
    took 0.16 ms of CPU this way against 0.49 (docs/benchmarks.md)."""
    return await run_sql(engine, lambda c: row_by_key(c, model, key), read_only=True)


def row_by_key(conn: Connection, model: type[M], key: str, *, lock: bool = False) -> M | None:
    """`get_row` inside a transaction already open on `conn`; `lock` takes the row's write
    lock (`FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` holds the database's)."""
    row = conn.execute(_by_key(model, lock), {"key": key}).first()
    return None if row is None else model(**row._mapping)


def table_of(model: type[SQLModel]) -> Table:
    """The table a model maps, for statements built once at import (Core, not the ORM)."""
    table = inspect(model).local_table
    assert isinstance(table, Table)
    return table


@functools.cache
def _by_key(model: type[SQLModel], lock: bool = False) -> Select[Any]:
    table = table_of(model)
    (key,) = table.primary_key.columns
    stmt = select(table).where(key == bindparam("key"))
    return stmt.with_for_update() if lock else stmt


def as_domain_error(err: DomainError | OperationalError, where: str) -> DomainError:
    """What a servicer reports for an error: a DomainError as it is; a database that is
    unreachable or locked for too long as transient (UNAVAILABLE), worth a retry."""
    if isinstance(err, DomainError):
        return err
    log.warning("database unavailable in %s: %s", where, err.orig)
    return Unavailable("database unavailable", reason=Reason.DATABASE_UNAVAILABLE)


# What a servicer method receives as its context (request and response types vary).
if TYPE_CHECKING:  # generic only in the type stubs
    Context = grpc.aio.ServicerContext[Any, Any]
else:
    Context = grpc.aio.ServicerContext

Handler = Callable[[S, Req, Context], Awaitable[Resp]]


def grpc_method(fn: Handler[S, Req, Resp]) -> Handler[S, Req, Resp]:
    """Translates the DomainErrors a servicer method raises into a gRPC status, once."""

    @functools.wraps(fn)
    async def wrapper(self: S, request: Req, context: Context) -> Resp:
        try:
            return await fn(self, request, context)
        except (DomainError, OperationalError) as err:
            await abort_with(context, as_domain_error(err, fn.__name__))
        raise AssertionError("abort returned")

    return wrapper


StreamHandler = Callable[[S, Req, Context], AsyncIterator[Resp]]


def grpc_stream(fn: StreamHandler[S, Req, Resp]) -> StreamHandler[S, Req, Resp]:
    """`grpc_method` for response-streaming handlers (async generators).

    A DomainError ends the stream with its status after the messages already sent.
    """

    @functools.wraps(fn)
    async def wrapper(self: S, request: Req, context: Context) -> AsyncIterator[Resp]:
        try:
            async for item in fn(self, request, context):
                yield item
        except (DomainError, OperationalError) as err:
            await abort_with(context, as_domain_error(err, fn.__name__))

    return wrapper
