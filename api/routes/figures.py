"""/admin/figures: the back office's figures at a glance, from the order read model."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import Connection, func, select

from api.auth import AdminDep
from api.deps import EngineDep
from api.models import error_responses
from core.db import run_sql
from core.messages import OrderStatus
from orders.store import ORDERS

router = APIRouter(prefix="/admin", tags=["orders"])

# Orders whose payment was captured and stands (a cancelled paid order is refunded).
PAID = (OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED)


class OrderFigures(BaseModel):
    """Orders placed since midnight UTC (`since`), by what became of them."""

    since: datetime
    orders: int = Field(description="orders placed since `since`")
    by_status: dict[str, int]
    paid: int = Field(description="PAID, SHIPPED or DELIVERED")
    failed_by_reason: dict[str, int]
    revenue_cents: int = Field(description="total of the paid orders")
    average_order_cents: int = Field(description="revenue / paid, 0 without any")


def _figures(conn: Connection, since: datetime) -> OrderFigures:
    rows = conn.execute(
        select(
            ORDERS.c.status,
            ORDERS.c.failure_reason,
            func.count(),
            func.coalesce(func.sum(ORDERS.c.total_cents), 0),
        )
        .where(ORDERS.c.created_at >= since)
        .group_by(ORDERS.c.status, ORDERS.c.failure_reason)
    ).all()
    by_status: dict[str, int] = {}
    failed: dict[str, int] = {}
    paid = revenue = 0
    for status, reason, count, total in rows:
        by_status[status] = by_status.get(status, 0) + count
        if status == OrderStatus.FAILED:
            failed[reason or "UNKNOWN"] = failed.get(reason or "UNKNOWN", 0) + count
        if status in PAID:
            paid += count
            revenue += int(total)
    return OrderFigures(
        since=since,
        orders=sum(by_status.values()),
        by_status=by_status,
        paid=paid,
        failed_by_reason=failed,
        revenue_cents=revenue,
        average_order_cents=revenue // paid if paid else 0,
    )


@router.get("/figures", response_model=OrderFigures, responses=error_responses(401, 403, 503))
async def order_figures(_admin: AdminDep, engine: EngineDep) -> OrderFigures:
    """Today's orders (UTC): how many, paid, failed by reason, revenue, average order value."""
    since = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return await run_sql(engine, lambda c: _figures(c, since), read_only=True)
