"""What the tests share: unique ids, and (through core.run) free ports and process start-up."""

from __future__ import annotations

import uuid

from core.run import free_port

__all__ = ["free_port", "uid"]


def uid(prefix: str = "") -> str:
    """A unique id, so tests sharing a database or a server never collide."""
    return f"{prefix}{uuid.uuid4().hex}"
