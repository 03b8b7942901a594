"""The children of `make run` (and of the tests' and the benchmark's stacks): started in
order, their output passed through or logged, stopped in reverse order, and a child that
dies unexpectedly stops the rest."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
STOP_TIMEOUT = 15.0


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or a dead child arrived while starting."""


def say(message: str) -> None:
    print(f"{'run':>8} | {message}", flush=True)


def _find_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Looked up here, once: the child between fork and exec must not load libraries (another
# thread of this process may have held the loader's lock at the fork).
_PRCTL = _find_prctl()


def _die_with_parent() -> None:
    # Runs in the child before exec. Linux only: if this supervisor is killed outright
    # (SIGKILL, so no cleanup runs) the child gets SIGTERM instead of living on.
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


async def _output_lines(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """A child's output line by line; a line longer than the reader's limit comes in
    pieces instead of ending the pass-through."""
    while True:
        try:
            yield await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as err:  # the end, maybe after an unfinished line
            if err.partial:
                yield err.partial
            return
        except asyncio.LimitOverrunError as err:
            yield await stream.read(err.consumed)


class Supervisor:
    """Owns the children: starts them, passes their output through, stops them in reverse.

    With `log_dir`, each child's output goes to `log_dir/NAME.log` (appended to across
    restarts) instead of this process's stdout.
    """

    def __init__(self, env: dict[str, str], log_dir: Path | None = None) -> None:
        self.env = env
        self.log_dir = log_dir
        # By name, in start order; a child started again keeps its place.
        self.children: dict[str, asyncio.subprocess.Process] = {}
        self.pumps: dict[asyncio.subprocess.Process, asyncio.Task[None]] = {}
        self.stop = asyncio.Event()
        self.failure: str | None = None
        self.stopping = False
        self.ending: set[asyncio.subprocess.Process] = set()

    async def spawn(self, name: str, cmd: list[str], *, quiet_on_stop: bool = False) -> None:
        say(f"starting {name}: {' '.join(cmd)}")
        proc = await asyncio.create_subprocess_exec(
            *cmd, env=self.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            # Own process group: Ctrl-C reaches only us, and we stop children in order.
            start_new_session=True, preexec_fn=_die_with_parent, limit=1 << 20,
        )  # fmt: skip
        self.children[name] = proc
        self.pumps[proc] = asyncio.create_task(self._pump(name, proc, quiet_on_stop))

    def log_path(self, name: str) -> Path:
        assert self.log_dir is not None, "output goes to stdout: no log_dir"
        return self.log_dir / f"{name}.log"

    async def _pump(self, name: str, proc: asyncio.subprocess.Process, quiet_on_stop: bool) -> None:
        assert proc.stdout is not None
        with contextlib.ExitStack() as files:
            log = files.enter_context(self.log_path(name).open("ab")) if self.log_dir else None
            async for line in _output_lines(proc.stdout):
                if log is not None:
                    log.write(line if line.endswith(b"\n") else line + b"\n")
                    log.flush()
                elif not (quiet_on_stop and self.stopping):
                    print(f"{name:>8} | {line.decode(errors='replace').rstrip()}", flush=True)
        code = await proc.wait()
        if not self.stopping and proc not in self.ending:
            self.fail(f"{name} exited unexpectedly (exit code {code})")

    def fail(self, message: str) -> None:
        self.failure = self.failure or message
        self.stop.set()

    async def guard(self, work: Awaitable[T]) -> T:
        """Awaits `work` unless a stop (signal or dead child) comes first."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise Interrupted
        return task.result()

    async def end(self, name: str, sig: signal.Signals = signal.SIGTERM) -> int:
        """Stops one child on purpose with `sig` (SIGKILL after STOP_TIMEOUT); returns its
        exit code once all its output is through."""
        proc = self.children[name]
        self.ending.add(proc)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            say(f"{name} did not stop within {STOP_TIMEOUT:.0f}s: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.gather(self.pumps[proc], return_exceptions=True)
        return await proc.wait()

    async def shutdown(self) -> None:
        self.stopping = True
        for name, proc in reversed(self.children.items()):
            if proc.returncode is None:
                say(f"stopping {name}")
                await self.end(name)
        await asyncio.gather(*self.pumps.values(), return_exceptions=True)
