"""Where an order's time goes, from the engine's own record of it: the workflow history.

Every workflow task and every activity leaves timestamped events, written by the server:

  workflow task wait  WorkflowTaskScheduled -> WorkflowTaskStarted (a worker polled it)
  workflow task run   WorkflowTaskStarted -> WorkflowTaskCompleted (the worker ran the
                      workflow code and answered)
  activity wait       ActivityTaskScheduled -> ActivityTaskStarted (0 when the worker asked
                      for the activity eagerly, with the workflow task's answer)
  activity run        ActivityTaskStarted -> ActivityTaskCompleted, by activity type

`make bench` reads a sample of each side's histories after its rounds and prints the mean
of each, so the gap between the saga and the no-op saga shows step by step.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

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

    def add(self, events: Iterable[HistoryEvent]) -> None:
        """Adds one history's steps. Steps still open at its end are left out."""
        self.histories += 1
        task_scheduled = task_started = None
        activities: dict[int, tuple[str, float, float | None]] = {}
        for event in events:
            at = event.event_time.seconds * 1000 + event.event_time.nanos / 1e6
            kind = event.event_type
            if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                task_scheduled, task_started = at, None
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and task_scheduled is not None:
                self.workflow_task_wait.append(at - task_scheduled)
                task_started = at
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
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                scheduled_id = event.activity_task_completed_event_attributes.scheduled_event_id
                name, _, started = activities.pop(scheduled_id, ("", 0.0, None))
                if started is not None:
                    self.activity_run.setdefault(name, []).append(at - started)

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
        }


def _mean(values: list[float]) -> float | None:
    return round(statistics.mean(values), 1) if values else None


async def sample_steps(client: Client, query: str, limit: int = SAMPLE) -> Steps:
    """The steps of up to `limit` workflows that match the visibility `query`."""
    found = [w async for w in client.list_workflows(query, limit=limit)]
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
    return "\n".join(lines)
