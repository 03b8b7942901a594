"""The shop's payload codec: every payload it writes to Temporal is AES-256-GCM encrypted.

`PAYLOAD_KEYS` is `id:base64key[,id:base64key...]`: the first key encrypts, every key
decrypts, so a key is rotated by putting a new one first and keeping the old ones until no
history needs them. Each payload carries the id of its key in its metadata.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from collections.abc import Iterable, Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from core.config import Settings

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce; random per payload, prepended to the ciphertext
_KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


class PayloadKeyError(ValueError):
    """PAYLOAD_KEYS is malformed, or a payload cannot be decrypted with it."""


def generate_payload_key(key_id: str = "k1") -> str:
    """A new random AES-256 key as a PAYLOAD_KEYS entry, `id:base64key`."""
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


def parse_payload_keys(text: str) -> dict[str, bytes]:
    """`id:base64key[,id:base64key...]` as {id: key}, in order (the first encrypts).

    Error messages name the entry by position and id only, never the key material.
    """
    keys: dict[str, bytes] = {}
    for n, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not _KEY_ID_PATTERN.fullmatch(key_id):
            raise PayloadKeyError(
                f"PAYLOAD_KEYS entry {n} is not `id:base64key` with an id of letters, digits, "
                "'.', '_' or '-'"
            )
        if key_id in keys:
            raise PayloadKeyError(f"PAYLOAD_KEYS names key id {key_id!r} twice")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            raise PayloadKeyError(f"PAYLOAD_KEYS key {key_id!r} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise PayloadKeyError(
                f"PAYLOAD_KEYS key {key_id!r} has {len(key)} bytes; AES-256 needs {KEY_BYTES}"
            )
        keys[key_id] = key
    return keys


class EncryptionCodec(PayloadCodec):
    """Encrypts with the first key; decrypts with the key its payload names.

    Payloads it did not encrypt (no `binary/encrypted` encoding) decode as they are, so a
    signal sent by the CLI without the codec still reaches the workflow.
    """

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise PayloadKeyError("PAYLOAD_KEYS holds no key")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = next(iter(keys))

    @property
    def key_ids(self) -> Sequence[str]:
        """The key ids, the encrypting one first."""
        return list(self._ciphers)

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._current]
        encoded = []
        for p in payloads:
            nonce = os.urandom(NONCE_BYTES)
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID: self._current.encode()},
                    data=nonce + cipher.encrypt(nonce, p.SerializeToString(), None),
                )
            )
        return encoded

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self._decrypt(p) if p.metadata.get("encoding") == ENCODING else p for p in payloads]

    def _decrypt(self, payload: Payload) -> Payload:
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadKeyError(
                f"payload encrypted with key id {key_id!r}, which is not in PAYLOAD_KEYS "
                f"(known: {', '.join(self._ciphers)})"
            )
        data = payload.data
        try:
            return Payload.FromString(cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None))
        except (InvalidTag, ValueError):  # ValueError: too short to hold its nonce
            raise PayloadKeyError(
                f"payload does not decrypt with key {key_id!r}: altered, truncated, or another "
                "key of that id"
            ) from None


def data_converter(settings: Settings) -> DataConverter:
    """The SDK's pydantic converter with the shop's encryption codec on top.

    Failures' messages and stack traces move into their (encrypted) encoded attributes too:
    an error's text may quote what it was given.
    """
    from core.secrets import resolved_payload_keys  # core.secrets imports this module

    codec = EncryptionCodec(parse_payload_keys(resolved_payload_keys(settings)))
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
