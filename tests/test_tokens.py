"""Access tokens: what the cache of verified tokens must never change (core/tokens.py)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from core import tokens
from core.tokens import CUSTOMER_ROLE, InvalidToken, issue_access_token, read_access_token

SECRET = "a secret long enough for HS256, 32 bytes and more"
HOUR = timedelta(hours=1)


def test_a_verified_token_reads_the_same_claims_again() -> None:
    token = issue_access_token(SECRET, "user-1", CUSTOMER_ROLE, HOUR)
    first = read_access_token(SECRET, token)
    assert (first.sub, first.role) == ("user-1", CUSTOMER_ROLE)
    assert read_access_token(SECRET, token) == first
    assert (SECRET, token) in tokens._verified


def test_a_verified_token_expires_in_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    token = issue_access_token(SECRET, "user-2", CUSTOMER_ROLE, timedelta(seconds=30))
    read_access_token(SECRET, token)
    monkeypatch.setattr(tokens, "_clock", lambda: time.time() + 31)
    with pytest.raises(InvalidToken, match="expired"):
        read_access_token(SECRET, token)
    assert (SECRET, token) not in tokens._verified


def test_a_token_altered_or_checked_with_another_secret_is_refused() -> None:
    token = issue_access_token(SECRET, "user-3", CUSTOMER_ROLE, HOUR)
    read_access_token(SECRET, token)
    head, body, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(InvalidToken):
        read_access_token(SECRET, f"{head}.{body}.{flipped}")
    with pytest.raises(InvalidToken):
        read_access_token(SECRET + "-rotated", token)
    other = issue_access_token(SECRET, "user-4", CUSTOMER_ROLE, HOUR).split(".")[1]
    with pytest.raises(InvalidToken):
        read_access_token(SECRET, f"{head}.{other}.{signature}")


def test_an_invalid_token_is_not_remembered() -> None:
    expired = issue_access_token(SECRET, "user-5", CUSTOMER_ROLE, -timedelta(seconds=5))
    for _ in range(2):
        with pytest.raises(InvalidToken, match="expired"):
            read_access_token(SECRET, expired)
    assert (SECRET, expired) not in tokens._verified


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_VERIFIED_MAX", 3)
    issued = [issue_access_token(SECRET, f"user-{i}", CUSTOMER_ROLE, HOUR) for i in range(5)]
    for token in issued:
        read_access_token(SECRET, token)
    assert len(tokens._verified) <= 3
    assert (SECRET, issued[-1]) in tokens._verified
    assert (SECRET, issued[0]) not in tokens._verified
