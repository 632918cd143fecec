"""Message IDs for the questions sent upstream: unpredictable (RFC 5452 9.2), and cheap.

Each ID is 16 bits of the kernel's CSPRNG (``os.urandom``), as ``secrets.randbits``
gives, but read 4,096 bytes at a time: one ``getrandom`` system call per 2,048 IDs
instead of one per question (``secrets.randbits`` is about 3 % of a cache miss's CPU at
full load, development VM, 2026-11-30). Unbound does the same with arc4random, a buffered
CSPRNG. The unused IDs are only ever in this process's memory; a forked child throws
its copy away, so a worker never sends the IDs its parent or a sibling sends.
"""

from __future__ import annotations

import os
from array import array
from typing import Final

# Bytes read from the kernel at a time: 2,048 IDs.
BATCH_BYTES: Final = 4096

_ahead: list[int] = []


def query_id() -> int:
    """A fresh unpredictable 16-bit message ID."""
    try:
        return _ahead.pop()
    except IndexError:
        _ahead.extend(array("H", os.urandom(BATCH_BYTES)))
        return _ahead.pop()


def _forget() -> None:
    _ahead.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)
