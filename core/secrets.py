"""Secrets that need no setup: the setting if set, else a file in $DATA_DIR generated once.

Every process of one deployment reads the same file, so they agree on the keys without
anyone copying them around. Nothing here logs or prints a secret.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from core.codec import generate_payload_key
from core.config import Settings


class SecretFileError(RuntimeError):
    """A secret's file in $DATA_DIR exists but cannot be used."""


def generated_once(path: Path, generate: Callable[[], str]) -> str:
    """The secret in `path`, first written there (mode 0600) by whichever process comes first.

    The value is written to a private temporary file and hard-linked into place: the link
    fails if another process got there first, so a reader never sees a half-written file
    and two processes starting together end up with the same secret.
    """
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(generate() + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise SecretFileError(f"{path} is empty: delete it to generate a new secret, or set it")
    return value


def _resolved(setting: SecretStr, path: Path, generate: Callable[[], str]) -> str:
    return setting.get_secret_value() or generated_once(path, generate)


def resolved_payload_keys(settings: Settings) -> str:
    """PAYLOAD_KEYS, else `$DATA_DIR/payload_keys` (one generated key `k1`)."""
    return _resolved(
        settings.payload_keys, settings.data_dir / "payload_keys", generate_payload_key
    )


def resolved_jwt_secret(settings: Settings) -> str:
    """JWT_SECRET, else `$DATA_DIR/jwt_secret` (256 random bits)."""
    return _resolved(
        settings.jwt_secret, settings.data_dir / "jwt_secret", lambda: secrets.token_urlsafe(32)
    )


def resolved_admin_password(settings: Settings) -> str:
    """ADMIN_PASSWORD, else `$DATA_DIR/admin_password` (typeable: 128 random bits)."""
    return _resolved(
        settings.admin_password,
        settings.data_dir / "admin_password",
        lambda: secrets.token_urlsafe(16),
    )
