"""Pseudonyms for client addresses in the audit trail: a keyed HMAC, so the security
team can count distinct clients without the log naming anyone."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from resolver.config import ConfigError, read_key_file


def load_or_create_key(path: Path) -> bytes:
    """The default HMAC key for pseudonyms (``state.directory/audit.key``), made once.
    It must outlive restarts, or the same client would get a new pseudonym every day and
    reports could not count; so a file that exists is never overwritten: a damaged one
    is a config error, since every pseudonym in the trail depends on it."""
    try:
        return read_key_file(path)
    except ConfigError:
        if path.exists():
            raise
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    # O_EXCL: if another process made the key meanwhile, theirs stands.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_key_file(path)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(key)
    return key


class Pseudonymizer:
    def __init__(self, key: bytes | None) -> None:
        self._key = key

    def __call__(self, client: str) -> str:
        if self._key is None:
            return client
        digest = hmac.new(self._key, client.encode(), hashlib.sha256).hexdigest()
        return f"client-{digest[:16]}"
