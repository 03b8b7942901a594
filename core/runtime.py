"""Process-wide settings: the garbage collector of the long-running processes (API, worker,
services), and how a process holding a Temporal client ends."""

from __future__ import annotations

import gc
import os
import sys


def freeze_startup_objects() -> None:
    """Moves every object alive now out of the cyclic collector's reach.

    Call once a process is set up. Its imports and setup leave well over a hundred thousand
    objects (modules, classes, pydantic schemas, the app) that live as long as the process.
    Every full collection walks them all: measured under `make bench`, one such pause in the
    API took 196 ms, and every request in flight waited for it. Frozen, they are skipped;
    what the process allocates afterwards is collected as usual.
    """
    gc.collect()
    gc.freeze()


def exit_now(code: int) -> None:
    """Exits with `code` once the work is done, skipping the interpreter's teardown.

    The Temporal client's Rust threads can outlive the event loop and abort a finishing
    interpreter ("PyGILState_Release ... must be current", exit -6: temporalio/sdk-python#300),
    turning a clean run into a crash. Every command that holds a client ends through here.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
