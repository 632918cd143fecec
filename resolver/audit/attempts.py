"""Attempts on banned names, gathered between two writes of the audit trail.

Attempts alike (same client, group, name, type, service, category, action) within one
flush interval become one row with a count. The trail's writer takes what was gathered
at each flush (``audit.trail``); a worker process gathers its own and sends them to the
supervisor, which owns the trail and adds them to its own (``absorb``).
"""

from __future__ import annotations

import threading
import time

# Records waiting for the writer; beyond this (a writer stuck on a full disk) the oldest
# are dropped and counted rather than letting memory grow without bound.
QUEUE_LIMIT = 200_000

# (client, group, name, qtype, service, category, action): attempts alike within one
# flush interval are one row with a count, so a client retrying a banned name a thousand
# times a second costs one row, not a thousand.
AttemptKey = tuple[str, str, bytes | str, int | str, str, str, str]


# (first seen, count). A tuple of numbers, replaced rather than changed: the garbage
# collector stops tracking it, so a second's attempts never lengthen its pauses.
Seen = tuple[float, int]


def gather(pending: dict[AttemptKey, Seen], key: AttemptKey, first: float, count: int) -> int:
    """Add ``count`` attempts alike to ``pending``; returns how many found it full (at
    QUEUE_LIMIT distinct attempts) and were dropped."""
    seen = pending.get(key)
    if seen is not None:
        pending[key] = (min(seen[0], first), seen[1] + count)
        return 0
    if len(pending) < QUEUE_LIMIT:
        pending[key] = (first, count)
        return 0
    return count


class AttemptBatcher:
    """Attempts on banned names gathered between flushes: key -> [first seen, count].

    The audit log keeps one (its writer thread takes it at each flush); a worker keeps
    one for the process that owns the audit trail (the supervisor), which adds the
    batches it receives to its own (``absorb``) and writes each attempt once."""

    def __init__(self) -> None:
        self._pending: dict[AttemptKey, Seen] = {}
        self._lock = threading.Lock()
        self.dropped = 0  # attempts that found it full, since the start

    def record(
        self,
        client: str,
        group: str,
        name: bytes | str,
        qtype: int | str,
        service: str,
        category: str,
        action: str,
    ) -> None:
        """Count one attempt; called on the answer path, so it only bumps a counter (a
        wire-form name and a numeric type are turned into text by the writer)."""
        key = (client, group, name, qtype, service, category, action)
        with self._lock:
            self.dropped += gather(self._pending, key, time.time(), 1)

    def absorb(self, batch: dict[AttemptKey, Seen], dropped: int = 0) -> None:
        """Attempts another process gathered, and how many it had to drop."""
        with self._lock:
            for key, (first, count) in batch.items():
                self.dropped += gather(self._pending, key, first, int(count))
            self.dropped += dropped

    def take(self) -> tuple[dict[AttemptKey, Seen], int]:
        """What was gathered since the last take, and the drops so far."""
        with self._lock:
            batch, self._pending = self._pending, {}
            return batch, self.dropped

    def __len__(self) -> int:
        return len(self._pending)
