"""What the tests share to start the real processes, the way `make run` starts them.

- `running_stack(temporal_address, data_dir, **settings)`: an async context manager that
  starts `python -m services`, `worker.py` and `python -m api` with core.run's `Supervisor`,
  `child_env` and `start_stack` (the start-up and readiness waits of `make run`) against a
  running Temporal server, on free ports, a SQLite file in `data_dir` and a fresh task queue
  (any `Settings` field can be overridden). It yields a `RunningStack`: the settings and URLs,
  each child's log (`data_dir/NAME.log`), and stopping, killing and starting one child. At
  the end every child is stopped; a child that died unbidden fails the test.
- `uid()`: a unique id; `free_port()`: a TCP port free right now.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import Settings
from core.run import (
    StartupError,
    api_url,
    child_env,
    free_port,
    start_api,
    start_services,
    start_stack,
    start_worker,
)
from core.supervisor import Interrupted, Supervisor
from tests.conftest import TEST_PAYLOAD_KEYS

__all__ = ["RunningStack", "free_port", "running_stack", "uid"]

STARTERS = {"services": start_services, "worker": start_worker, "api": start_api}


def uid(prefix: str = "") -> str:
    """A unique id, so tests sharing a database or a server never collide."""
    return f"{prefix}{uuid.uuid4().hex}"


@dataclass
class RunningStack:
    """The services, the worker and the API, running as processes."""

    sup: Supervisor
    settings: Settings
    restarts: Counter[str] = field(default_factory=Counter)

    @property
    def api_url(self) -> str:
        return api_url(self.settings)

    @property
    def grpc_target(self) -> str:
        return self.settings.grpc_target

    @property
    def temporal_address(self) -> str:
        return self.settings.temporal_target

    @property
    def task_queue(self) -> str:
        return self.settings.temporal_task_queue

    def log(self, name: str) -> str:
        """Everything `name` wrote so far, over all its starts."""
        path = self.sup.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self, chars: int = 3000) -> str:
        """The end of each child's log, for a failure message."""
        return "\n".join(f"--- {name}\n{self.log(name)[-chars:]}" for name in self.sup.children)

    async def stop(self, name: str) -> int:
        """SIGTERM to one child, as an orchestrator stops it: its exit code."""
        return await self.sup.end(name)

    async def start(self, name: str) -> None:
        """Starts one child (again), as `make run` does, and waits until it answers."""
        await STARTERS[name](self.sup, self.settings)

    async def restart(self, name: str, pause: float = 0.0) -> None:
        """SIGKILL (nothing in flight is finished), `pause` seconds, then a new start."""
        await self.sup.end(name, signal.SIGKILL)
        self.restarts[name] += 1
        await asyncio.sleep(pause)
        await self.start(name)


@asynccontextmanager
async def running_stack(
    temporal_address: str, data_dir: Path, **overrides: Any
) -> AsyncIterator[RunningStack]:
    """The stack against the Temporal server at `temporal_address`; see the module's doc."""
    grpc_port = free_port()
    fields: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": f"sqlite:///{data_dir}/shop.db",
        "temporal_address": temporal_address,
        "temporal_task_queue": uid("tq-"),
        "grpc_port": grpc_port,
        "grpc_target": f"127.0.0.1:{grpc_port}",
        "api_host": "127.0.0.1",
        "api_port": free_port(),
        "codec_port": free_port(),
        "payload_keys": TEST_PAYLOAD_KEYS,
        "fault_rate": 0.0,
    }
    settings = Settings(**(fields | overrides))
    sup = Supervisor(child_env(settings), log_dir=data_dir)
    stack = RunningStack(sup, settings)
    try:
        try:
            await sup.guard(start_stack(sup, settings, dev_server=False))
        except (Interrupted, StartupError) as err:
            raise StartupError(f"{sup.failure or err}\n{stack.logs()}") from None
        yield stack
    finally:
        await sup.shutdown()
    if sup.failure:
        raise AssertionError(f"{sup.failure}\n{stack.logs()}")
