"""Where an order's time goes, from the engine's own record of it: the workflow history.

Every workflow task and every activity leaves timestamped events, written by the server:

  workflow task wait  WorkflowTaskScheduled -> WorkflowTaskStarted (a worker polled it)
  workflow task run   WorkflowTaskStarted -> WorkflowTaskCompleted (the worker ran the
                      workflow code and answered)
  activity wait       ActivityTaskScheduled -> ActivityTaskStarted (0 when the worker asked
                      for the activity eagerly, with the workflow task's answer)
  activity run        ActivityTaskStarted -> ActivityTaskCompleted, by activity type

and two milestones from the start of the run (WorkflowExecutionStarted):

  to PAID             the start of the workflow task that set OrderStatus=PAID (the time
                      the order's history records for PAID: the workflow's clock then)
  to the last step    the start of the run's last activity (the no-op's end for the
                      benchmark; for an order, its ORDER_CONFIRMED notification)

`make bench` reads, after each mode's rounds, the histories of a sample of that mode's
orders and no-op runs, spread over the whole mode (not only its last ones, which run as
the load winds down), and prints the mean of each, so the gap between the saga and the
no-op shows step by step.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from core.messages import ORDER_STATUS

SAMPLE = 50  # histories read per side
FETCH_CONCURRENCY = 5


@dataclass
class Steps:
    """Durations in ms, pooled over every history added."""

    histories: int = 0
    workflow_task_wait: list[float] = field(default_factory=list)
    workflow_task_run: list[float] = field(default_factory=list)
    activity_wait: list[float] = field(default_factory=list)
    activity_run: dict[str, list[float]] = field(default_factory=dict)
    to_paid: list[float] = field(default_factory=list)
    to_last_step: list[float] = field(default_factory=list)

    def add(self, events: Iterable[HistoryEvent]) -> None:
        """Adds one history's steps. Steps still open at its end are left out."""
        self.histories += 1
        task_scheduled = task_started = None
        run_started: float | None = None
        last_task_started: float | None = None
        last_step: float | None = None
        activities: dict[int, tuple[str, float, float | None]] = {}
        for event in events:
            at = event.event_time.seconds * 1000 + event.event_time.nanos / 1e6
            kind = event.event_type
            if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                run_started = at
            elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
                paid = _sets_paid(event)
                if paid and run_started is not None and last_task_started is not None:
                    self.to_paid.append(last_task_started - run_started)
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                task_scheduled, task_started = at, None
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and task_scheduled is not None:
                self.workflow_task_wait.append(at - task_scheduled)
                task_started = last_task_started = at
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and task_started is not None:
                self.workflow_task_run.append(at - task_started)
                task_scheduled = task_started = None
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                activities[event.event_id] = (name, at, None)
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                scheduled_id = event.activity_task_started_event_attributes.scheduled_event_id
                if scheduled_id in activities:
                    name, scheduled, _ = activities[scheduled_id]
                    self.activity_wait.append(at - scheduled)
                    activities[scheduled_id] = (name, scheduled, at)
                last_step = at
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                scheduled_id = event.activity_task_completed_event_attributes.scheduled_event_id
                name, _, started = activities.pop(scheduled_id, ("", 0.0, None))
                if started is not None:
                    self.activity_run.setdefault(name, []).append(at - started)
        if run_started is not None and last_step is not None:
            self.to_last_step.append(last_step - run_started)

    def means(self) -> dict[str, Any]:
        """Mean ms of each step (None when there was none), activities by type."""
        runs = [v for values in self.activity_run.values() for v in values]
        return {
            "histories": self.histories,
            "workflow_task_wait": _mean(self.workflow_task_wait),
            "workflow_task_run": _mean(self.workflow_task_run),
            "activity_wait": _mean(self.activity_wait),
            "activity_run": _mean(runs),
            "activities": {name: _mean(v) for name, v in sorted(self.activity_run.items())},
            "to_paid": _mean(self.to_paid),
            "to_last_step": _mean(self.to_last_step),
        }


def _sets_paid(event: HistoryEvent) -> bool:
    """Whether a search attribute upsert sets OrderStatus=PAID (search attributes are
    plain JSON: no codec encrypts them)."""
    fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
    payload = fields.indexed_fields.get(ORDER_STATUS.name)
    return payload is not None and json.loads(payload.data) == "PAID"


def _mean(values: list[float]) -> float | None:
    return round(statistics.mean(values), 1) if values else None


async def sample_steps(client: Client, query: str, limit: int = SAMPLE) -> Steps:
    """The steps of `limit` of the workflows that match the visibility `query` (all of them
    when fewer), evenly spaced among them."""
    found = [w async for w in client.list_workflows(query)]
    if len(found) > limit:
        found = [found[i * len(found) // limit] for i in range(limit)]
    sem = asyncio.Semaphore(FETCH_CONCURRENCY)
    steps = Steps()

    async def one(workflow_id: str, run_id: str) -> None:
        async with sem:
            history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        steps.add(history.events)

    async with asyncio.TaskGroup() as tg:
        for w in found:
            tg.create_task(one(w.id, w.run_id))
    return steps


def steps_table(saga: dict[str, Any], noop: dict[str, Any]) -> str:
    """Mean ms per step, side by side; the saga's activities by type below."""

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    rows = [
        ("workflow task wait (scheduled->started)", "workflow_task_wait"),
        ("workflow task run (started->completed)", "workflow_task_run"),
        ("activity wait (scheduled->started)", "activity_wait"),
        ("activity run (started->completed)", "activity_run"),
    ]
    lines = [
        f"where the time goes, mean ms per step ({saga['histories']} saga and "
        f"{noop['histories']} noop histories)",
        f"{'':44}{'saga':>8}{'noop':>8}",
    ]
    lines += [f"  {label:42}{cell(saga[key]):>8}{cell(noop[key]):>8}" for label, key in rows]
    lines += [f"    {name:40}{cell(ms):>8}" for name, ms in saga["activities"].items()]
    lines += [
        f"  {label:42}{cell(saga[key]):>8}{cell(noop[key]):>8}"
        for label, key in (
            ("from the start: to PAID", "to_paid"),
            ("from the start: to the last step's start", "to_last_step"),
        )
    ]
    return "\n".join(lines)
