"""A saga as a plain list of compensations, run in reverse on failure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from temporalio import workflow

Compensation = Callable[[], Awaitable[object]]


class Saga:
    """Register each step's compensation *before* running the step.

    A step whose call timed out may still have happened, so its undo must run too; every
    compensation is idempotent (a no-op when there is nothing to undo).
    """

    def __init__(self) -> None:
        self._compensations: list[tuple[str, Compensation]] = []

    def add(self, name: str, compensation: Compensation) -> None:
        self._compensations.append((name, compensation))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._compensations]

    async def compensate(self) -> None:
        """Runs the compensations in reverse order, once each, shielded from cancellation."""
        while self._compensations:
            name, compensation = self._compensations.pop()
            workflow.logger.info("compensating %s", name)
            task = asyncio.ensure_future(compensation())
            try:
                # Shielded and awaited to the end: a further cancellation request must not
                # cut the rollback short.
                while not task.done():
                    try:
                        await asyncio.shield(task)
                    except asyncio.CancelledError:
                        continue
                task.result()
            except Exception:
                # Compensations retry transient errors forever; one that still fails is a
                # bug to surface in the logs, and must not stop the remaining undos.
                workflow.logger.exception("compensation %s failed", name)
