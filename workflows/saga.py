"""A saga as a plain list of compensations, run in reverse on failure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core import shop_metrics

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

    async def compensate(self) -> None:
        """Runs the compensations in reverse order, once each. The caller shields it from
        cancellation (see `steps.run_to_end`): a rollback must not be cut short."""
        while self._compensations:
            name, compensation = self._compensations.pop()
            workflow.logger.info("compensating %s", name)
            shop_metrics.compensation(workflow.metric_meter(), name)
            try:
                await compensation()
            except Exception:
                # Compensations retry transient errors forever; one that still fails is a
                # bug to surface in the logs, and must not stop the remaining undos.
                workflow.logger.exception("compensation %s failed", name)
