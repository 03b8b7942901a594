from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

from sqlalchemy import Connection, Engine, bindparam, insert
from sqlalchemy import select as sql_select  # Core; sqlmodel's `select` is for the ORM
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select, update

from core.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound, Reason
from proto.shop.v1 import inventory_pb2, inventory_pb2_grpc
from services.broadcast import Broadcaster
from services.common import (
    DELTA_MAX,
    KEY_MAX,
    Context,
    as_domain_error,
    grpc_method,
    grpc_stream,
    ident,
    in_range,
    read,
    table_of,
    text,
    transact,
    transact_sql,
    utcnow,
)
from services.inventory.levels import stock_level, threshold_of, thresholds_of
from services.inventory.models import (
    ACTOR_MAX,
    DEFAULT_LOW_STOCK_THRESHOLD,
    REASON_MAX,
    RELEASED,
    RESERVED,
    AdjustmentRow,
    ReservationLineRow,
    ReservationRow,
    StockRow,
    ThresholdRow,
)
from services.inventory.movements import list_movements
from services.inventory.reservations import Reservation, merge_lines, read_reservation

_DEFAULT = DEFAULT_LOW_STOCK_THRESHOLD
MAX_LIST = 1000

# A committed change of one product's level: (product_id, available, seq, threshold). `seq`
# is taken while the transaction holds the product's row lock, so it orders one product's
# commits.
Change = tuple[str, int, int, int]
THRESHOLD_MAX = 1_000_000_000

# ReserveStock's statements, built once: it runs for every order, on a plain connection
# (docs/benchmarks.md, "Call by call").
_STOCK = table_of(StockRow)
_RESERVATIONS = table_of(ReservationRow)
_LINES = table_of(ReservationLineRow)
_THRESHOLDS = table_of(ThresholdRow)
_RESERVATION_STATUS = sql_select(_RESERVATIONS.c.status).where(
    _RESERVATIONS.c.order_id == bindparam("order_id")
)
_RESERVATION_LINES = (
    sql_select(_LINES.c.product_id, _LINES.c.quantity)
    .where(_LINES.c.order_id == bindparam("order_id"))
    .order_by(_LINES.c.product_id)
)
_INSERT_RESERVATION = insert(_RESERVATIONS)
_INSERT_LINES = insert(_LINES)
# Takes `quantity` units only when that many are left: a line never oversells.
_TAKE = (
    update(_STOCK)
    .where(_STOCK.c.product_id == bindparam("product"))
    .where(_STOCK.c.available >= bindparam("quantity"))
    .values(available=_STOCK.c.available - bindparam("quantity"), updated_at=bindparam("now"))
    .returning(_STOCK.c.available)
)
_THRESHOLD = sql_select(_THRESHOLDS.c.low_stock_threshold).where(
    _THRESHOLDS.c.product_id == bindparam("product")
)


class InventoryServicer(inventory_pb2_grpc.InventoryServiceServicer):
    """Stock per product and per-order reservations; never oversells.

    A reservation takes units with one conditional UPDATE per line
    (`available = available - q WHERE available >= q`), inside one transaction that first
    inserts the order's reservation row: the row's primary key makes a reservation happen at
    most once per order, and a failed line rolls back the lines before it.

    Every committed level change is also published, in process, to WatchStock's watchers.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # WatchStock's in-process notifier, fed after each commit that changed a level.
        self._changes: Broadcaster[inventory_pb2.StockLevel] = Broadcaster()
        self._seq = itertools.count(1)  # next() is atomic under the GIL: safe in threads
        self._published: dict[str, int] = {}

    def _publish(self, changes: list[Change]) -> None:
        """Hands committed levels to the watchers, dropping any a later commit overtook.

        Two transactions commit in row-lock order but their coroutines may resume in either
        order; without the seq check a watcher could end on the older level.
        """
        for product_id, available, seq, threshold in changes:
            if seq <= self._published.get(product_id, 0):
                continue
            self._published[product_id] = seq
            self._changes.publish(stock_level(product_id, available, threshold))

    async def adjust(
        self,
        product_id: str,
        delta: int,
        idempotency_key: str,
        reason: str = "",
        actor: str = "",
    ) -> int:
        """AdjustStock's work, for in-process callers: the level after the adjustment.

        Raises InvalidArgument for bad input, FailedPrecondition (INSUFFICIENT_STOCK) when
        the stock would go below zero. A repeated key changes nothing.
        """
        level = await self._adjust(product_id, delta, idempotency_key, reason, actor)
        return level.available

    async def _adjust(
        self, product_id: str, delta: int, idempotency_key: str, reason: str, actor: str
    ) -> inventory_pb2.StockLevel:
        product_id = ident("product_id", product_id)
        key = ident("idempotency_key", idempotency_key, KEY_MAX)
        delta = in_range("delta", delta, -DELTA_MAX, DELTA_MAX)
        reason = text("reason", reason, REASON_MAX, required=False)
        actor = text("actor", actor, ACTOR_MAX, required=False)

        def work(session: Session) -> tuple[inventory_pb2.StockLevel, list[Change]]:
            stock = session.get(StockRow, product_id, with_for_update=True)
            threshold = threshold_of(session, product_id)
            if session.get(AdjustmentRow, key) is not None:
                return stock_level(product_id, stock.available if stock else 0, threshold), []
            if stock is None:
                stock = StockRow(product_id=product_id, available=0)
            if stock.available + delta < 0:
                raise FailedPrecondition(
                    f"stock of {product_id} would go below zero "
                    f"({stock.available} available, delta {delta})",
                    reason=Reason.INSUFFICIENT_STOCK,
                )
            stock.available += delta
            stock.updated_at = utcnow()
            session.add(stock)
            session.add(
                AdjustmentRow(
                    idempotency_key=key,
                    product_id=product_id,
                    delta=delta,
                    reason=reason,
                    actor=actor,
                )
            )
            session.flush()
            now = stock_level(product_id, stock.available, threshold)
            return now, [(product_id, stock.available, next(self._seq), threshold)]

        level, changes = await transact(self._engine, work)
        self._publish(changes)
        return level

    async def set_threshold(self, product_id: str, threshold: int) -> None:
        """SetLowStockThreshold's work, for the product servicer in the same process."""
        await self._set_threshold(product_id, threshold)

    async def _set_threshold(self, product_id: str, threshold: int) -> inventory_pb2.StockLevel:
        product_id = ident("product_id", product_id)
        threshold = in_range("low_stock_threshold", threshold, 0, THRESHOLD_MAX)

        def work(session: Session) -> tuple[inventory_pb2.StockLevel, list[Change]]:
            stock = session.get(StockRow, product_id, with_for_update=True)
            row = session.get(ThresholdRow, product_id)
            changed = row is None or row.low_stock_threshold != threshold
            row = row or ThresholdRow(product_id=product_id)
            row.low_stock_threshold, row.updated_at = threshold, utcnow()
            session.add(row)
            session.flush()
            available = stock.available if stock else 0
            # Watchers see the new flag of a stocked product at once.
            changes = [(product_id, available, next(self._seq), threshold)] if stock else []
            return stock_level(product_id, available, threshold), changes if changed else []

        level, changes = await transact(self._engine, work)
        self._publish(changes)
        return level

    @grpc_method
    async def AdjustStock(
        self, request: inventory_pb2.AdjustStockRequest, context: Context
    ) -> inventory_pb2.StockLevel:
        """Applies delta once per idempotency_key; a repeat returns the current level."""
        return await self._adjust(
            request.product_id,
            request.delta,
            request.idempotency_key,
            request.reason,
            request.actor,
        )

    @grpc_method
    async def SetLowStockThreshold(
        self, request: inventory_pb2.SetLowStockThresholdRequest, context: Context
    ) -> inventory_pb2.StockLevel:
        """Sets inventory's copy of a product's low-stock threshold; the level with its flag."""
        return await self._set_threshold(request.product_id, request.low_stock_threshold)

    @grpc_method
    async def ListStockMovements(
        self, request: inventory_pb2.ListStockMovementsRequest, context: Context
    ) -> inventory_pb2.ListStockMovementsResponse:
        """A product's movements, newest first: adjustments, reservations, releases."""
        product_id = ident("product_id", request.product_id)
        limit = in_range("limit", request.limit or 100, 1, 500)
        movements = await read(self._engine, lambda s: list_movements(s, product_id, limit))
        return inventory_pb2.ListStockMovementsResponse(movements=movements)

    @grpc_method
    async def GetStock(
        self, request: inventory_pb2.GetStockRequest, context: Context
    ) -> inventory_pb2.StockLevel:
        """Units available now; NOT_FOUND (STOCK_NOT_FOUND) with no stock record."""
        product_id = ident("product_id", request.product_id)

        def work(session: Session) -> inventory_pb2.StockLevel | None:
            row = session.get(StockRow, product_id)
            if row is None:
                return None
            return stock_level(row.product_id, row.available, threshold_of(session, product_id))

        level = await read(self._engine, work)
        if level is None:
            raise NotFound(f"no stock record for {product_id}", reason=Reason.STOCK_NOT_FOUND)
        return level

    @grpc_method
    async def ListStock(
        self, request: inventory_pb2.ListStockRequest, context: Context
    ) -> inventory_pb2.ListStockResponse:
        """Stock of the given products (those with a record), or of every product."""
        if len(request.product_ids) > MAX_LIST:
            raise InvalidArgument(f"at most {MAX_LIST} product_ids")
        ids = sorted({ident("product_ids", p) for p in request.product_ids})

        def work(session: Session) -> list[inventory_pb2.StockLevel]:
            query = select(StockRow).order_by(col(StockRow.product_id))
            if ids:
                query = query.where(col(StockRow.product_id).in_(ids))
            thresholds = thresholds_of(session, ids)
            return [
                stock_level(r.product_id, r.available, thresholds.get(r.product_id, _DEFAULT))
                for r in session.exec(query).all()
            ]

        return inventory_pb2.ListStockResponse(levels=await read(self._engine, work))

    @grpc_method
    async def ReserveStock(
        self, request: inventory_pb2.ReserveStockRequest, context: Context
    ) -> inventory_pb2.Reservation:
        """Reserves every line or none (OUT_OF_STOCK); a repeat returns the reservation. An
        order whose stock was released (a release that came first leaves a tombstone) is
        refused RESERVATION_RELEASED: it must not go on as if it held its units."""
        order_id = ident("order_id", request.order_id)
        lines = merge_lines(list(request.lines))

        def work(conn: Connection) -> tuple[Reservation, list[Change]]:
            status = conn.execute(_RESERVATION_STATUS, {"order_id": order_id}).scalar()
            if status == RELEASED:
                raise FailedPrecondition(
                    f"order {order_id}'s stock was released: it cannot be reserved again",
                    reason=Reason.RESERVATION_RELEASED,
                )
            if status is not None:
                found = conn.execute(_RESERVATION_LINES, {"order_id": order_id}).all()
                return Reservation(order_id, status, [(p, q) for p, q in found]), []
            # Insert first: a concurrent reserve of the same order collides here (and is
            # run again by `transact_sql`, finding this row) before either touches stock.
            now = utcnow()
            conn.execute(
                _INSERT_RESERVATION,
                {"order_id": order_id, "status": RESERVED, "created_at": now, "updated_at": now},
            )
            changes: list[Change] = []
            for product_id, quantity in lines:
                left = conn.execute(
                    _TAKE, {"product": product_id, "quantity": quantity, "now": now}
                ).scalar()
                if left is None:
                    raise FailedPrecondition(
                        f"product {product_id} is out of stock ({quantity} requested)",
                        reason=Reason.OUT_OF_STOCK,
                    )
                threshold = conn.execute(_THRESHOLD, {"product": product_id}).scalar()
                threshold = _DEFAULT if threshold is None else threshold
                changes.append((product_id, left, next(self._seq), threshold))
            conn.execute(
                _INSERT_LINES,
                [{"order_id": order_id, "product_id": p, "quantity": q} for p, q in lines],
            )
            return Reservation(order_id, RESERVED, lines), changes

        reservation, changes = await transact_sql(self._engine, work)
        self._publish(changes)
        return reservation.to_pb()

    @grpc_method
    async def ReleaseStock(
        self, request: inventory_pb2.ReleaseStockRequest, context: Context
    ) -> inventory_pb2.Reservation:
        """Gives an order's units back once; with no reservation, leaves a tombstone."""
        order_id = ident("order_id", request.order_id)

        def work(session: Session) -> tuple[Reservation, list[Change]]:
            row = session.get(ReservationRow, order_id, with_for_update=True)
            if row is None:
                session.add(ReservationRow(order_id=order_id, status=RELEASED))
                session.flush()
                return Reservation(order_id, RELEASED), []
            reservation = read_reservation(session, row)
            if row.status == RELEASED:
                return reservation, []
            changes: list[Change] = []
            for product_id, quantity in reservation.lines:
                now = session.exec(
                    update(StockRow)
                    .where(col(StockRow.product_id) == product_id)
                    .values(available=col(StockRow.available) + quantity, updated_at=utcnow())
                    .returning(col(StockRow.available))
                    .execution_options(synchronize_session=False)
                ).scalar_one_or_none()
                if now is not None:
                    threshold = threshold_of(session, product_id)
                    changes.append((product_id, now, next(self._seq), threshold))
            row.status = RELEASED
            row.updated_at = utcnow()
            session.add(row)
            session.flush()
            reservation.status = RELEASED
            return reservation, changes

        reservation, changes = await transact(self._engine, work)
        self._publish(changes)
        return reservation.to_pb()

    @grpc_method
    async def GetReservation(
        self, request: inventory_pb2.GetReservationRequest, context: Context
    ) -> inventory_pb2.Reservation:
        """An order's reservation; NOT_FOUND (RESERVATION_NOT_FOUND) if it never reserved."""
        order_id = ident("order_id", request.order_id)

        def work(session: Session) -> Reservation | None:
            row = session.get(ReservationRow, order_id)
            return read_reservation(session, row) if row else None

        reservation = await transact(self._engine, work)
        if reservation is None:
            raise NotFound(f"no reservation for {order_id}", reason=Reason.RESERVATION_NOT_FOUND)
        return reservation.to_pb()

    @grpc_stream
    async def WatchStock(
        self, request: inventory_pb2.WatchStockRequest, context: Context
    ) -> AsyncIterator[inventory_pb2.StockLevel]:
        """The current levels of the products (0 without a record), then each change."""
        if len(request.product_ids) > MAX_LIST:
            raise InvalidArgument(f"at most {MAX_LIST} product_ids")
        ids = sorted({ident("product_ids", p) for p in request.product_ids})
        wanted = frozenset(ids)

        def read_stock(session: Session) -> tuple[dict[str, int], dict[str, int]]:
            query = select(StockRow).order_by(col(StockRow.product_id))
            if ids:
                query = query.where(col(StockRow.product_id).in_(ids))
            levels = {r.product_id: r.available for r in session.exec(query).all()}
            return levels, thresholds_of(session, ids)

        # Subscribe before reading: a change committed in between is then delivered after
        # the snapshot (perhaps twice, which absolute levels make harmless), never lost.
        with self._changes.subscribe(lambda lvl: not wanted or lvl.product_id in wanted) as sub:
            await context.send_initial_metadata(())  # tells the client it is subscribed
            current, thresholds = await read(self._engine, read_stock)
            for product_id in ids or current:
                threshold = thresholds.get(product_id, _DEFAULT)
                yield stock_level(product_id, current.get(product_id, 0), threshold)
            while True:
                yield await sub.get()

    @grpc_stream
    async def SyncInventory(
        self,
        request_iterator: AsyncIterator[inventory_pb2.StockAdjustment],
        context: Context,
    ) -> AsyncIterator[inventory_pb2.StockAdjustmentAck]:
        """Applies each adjustment like AdjustStock and acknowledges it, in order."""
        async for adjustment in request_iterator:
            ack = inventory_pb2.StockAdjustmentAck(
                idempotency_key=adjustment.idempotency_key, product_id=adjustment.product_id
            )
            try:
                ack.available = await self.adjust(
                    adjustment.product_id, adjustment.delta, adjustment.idempotency_key
                )
                ack.ok = True
            except (DomainError, OperationalError) as err:
                failure = as_domain_error(err, "SyncInventory")
                ack.error, ack.reason = failure.message, failure.reason
            yield ack
