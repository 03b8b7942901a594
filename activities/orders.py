from __future__ import annotations

from sqlalchemy import Engine
from temporalio import activity

from core.db import run_sql
from core.messages import OrderSnapshot
from orders import store


class OrderActivities:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name="save_order")
    async def save_order(self, snap: OrderSnapshot) -> None:
        """Writes the workflow's view of the order to the read model (newest version wins)."""
        await run_sql(self._engine, lambda c: store.apply_snapshot(c, snap))
