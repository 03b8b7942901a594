"""BenchNoop: PlaceOrder's happy path with every activity replaced by a no-op.

Same commands to the server as PlaceOrder up to the confirmation: 8 activities, and the
search attribute upserts of its status changes (the start sets OrderStatus=PENDING and
CustomerId, as POST /checkout does):

    save_order(PENDING)
    get_user | get_product          (in parallel; one product per benchmark order)
    reserve_stock
    upsert OrderStatus=RESERVED, save_order(RESERVED)
    charge
    upsert OrderStatus=PAID, save_order(PAID)
    send_notification(ORDER_CONFIRMED)
    a timer of PlaceOrder's fulfilment deadline (7 days): the run stays open

and then, as a PAID order waits to ship, stays open on a timer: the server keeps every run
of a benchmark open, as it keeps every PAID `PlaceOrder`, so that what open executions cost
the engine counts on both sides. The benchmark waits on the last step (`NoopSteps`'s
`on_last`), as a customer waits for PAID, not on a result.

The benchmark runs it on its own task queue, in a worker built like worker.py's (same
runner, same options, same pydantic data converter through the client); it is NOT
registered in worker.py. This module stays light: the sandbox imports it for every run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import SearchAttributeKey

# core.messages' keys (tests/test_bench.py checks they match), named here so that the
# sandbox need not import core.messages for every run.
ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")

# The happy path of PlaceOrder (workflows/place_order.py), step by step: a step
# "save_order:S" after another step first upserts OrderStatus=S, as PlaceOrder's transition.
FIRST = "save_order:PENDING"
PARALLEL = ("get_user", "get_product")
SEQUENTIAL = (
    "reserve_stock",
    "save_order:RESERVED",
    "charge",
    "save_order:PAID",
    "send_notification:ORDER_CONFIRMED",
)
LAST = SEQUENTIAL[-1]
ACTIVITIES_PER_ORDER = 1 + len(PARALLEL) + len(SEQUENTIAL)
STEP_TIMEOUT = timedelta(seconds=10)  # PlaceOrder's start-to-close timeout
# PlaceOrder's DEFAULT_FULFILMENT_DEADLINE (tests/test_bench.py checks they match).
FULFILMENT_WAIT = timedelta(days=7)


class NoopSteps:
    """The no-op activity, telling `on_last` the workflow id of each run whose last step
    ran (a retried step may tell it twice)."""

    def __init__(self, on_last: Callable[[str], None]) -> None:
        self._on_last = on_last

    @activity.defn(name="bench_noop_step")
    async def step(self, step: str) -> None:
        """Does nothing: what is left is the engine's cost of one activity."""
        workflow_id = activity.info().workflow_id
        if step == LAST and workflow_id:
            self._on_last(workflow_id)


@workflow.defn(name="BenchNoop")
class BenchNoop:
    @workflow.run
    async def run(self, order_id: str) -> None:
        await self._step(FIRST)
        await asyncio.gather(*(self._step(s) for s in PARALLEL))
        for step in SEQUENTIAL:
            if step.startswith("save_order:"):
                status = step.removeprefix("save_order:")
                workflow.upsert_search_attributes([ORDER_STATUS.value_set(status)])
            await self._step(step)
        # Open, as a PAID order waiting to ship (or its deadline) is.
        await workflow.sleep(FULFILMENT_WAIT)

    async def _step(self, step: str) -> None:
        await workflow.execute_activity_method(
            NoopSteps.step, step, start_to_close_timeout=STEP_TIMEOUT
        )
