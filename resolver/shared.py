"""State the worker processes of one server share: upstream health and rate limits.

Both live in anonymous shared memory (``mmap(-1, ...)``) made by the supervisor before
it starts the workers, so every worker (a restarted one too) sees the same bytes:
- ``HealthBoard``: one byte per upstream, 1 while it is used, 0 while the supervisor's
  probe finds it dead. The supervisor is its only writer.
- ``BucketTable``: the rate limiter's token buckets, one per client prefix, whichever
  worker a query reaches. Updates are not locked: two workers updating the same bucket
  in the same microsecond may lose one decrement, which the limit tolerates.

In a single-process server neither exists; the upstream health and the buckets are
plain objects of that process.
"""

from __future__ import annotations

import mmap
import secrets
import struct

MAX_UPSTREAMS = 256


class HealthBoard:
    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, MAX_UPSTREAMS)
        self._memory.write(b"\x01" * MAX_UPSTREAMS)

    def is_up(self, slot: int) -> bool:
        return self._memory[slot] != 0

    def set_up(self, slot: int, up: bool) -> None:
        self._memory[slot] = 1 if up else 0


# key (u64; 0 = empty), tokens (f64), last refill (f64, monotonic), answers limited (u64)
_BUCKET = struct.Struct("=QddQ")


class BucketTable:
    """Token buckets keyed by a client prefix (an int), in a fixed table of at least
    ``prefixes`` slots: a prefix whose slot another one holds takes it over with a full
    bucket, so a flood of spoofed prefixes costs bounded memory. Slots are picked by a
    keyed hash (a secret of the table), so nobody outside can aim at a victim's slot."""

    def __init__(self, prefixes: int = 100_000) -> None:
        slots = 1024
        while slots < prefixes:
            slots *= 2
        self._mask = slots - 1
        self._secret = secrets.randbits(64)
        self._memory = mmap.mmap(-1, slots * _BUCKET.size)

    def take(self, key: int, now: float, rate: float, burst: float) -> int:
        """Take one token for ``key``. 0 when there was one; else the number of answers
        limited so far for this prefix, this one included (for the slip count)."""
        key = (hash((key, self._secret)) & 0xFFFFFFFFFFFFFFFF) or 1
        offset = (key & self._mask) * _BUCKET.size
        stored: int
        tokens: float
        last: float
        limited: int
        stored, tokens, last, limited = _BUCKET.unpack_from(self._memory, offset)
        if stored != key:
            tokens, last, limited = burst, now, 0
        else:
            tokens = min(burst, tokens + (now - last) * rate)
        if tokens >= 1.0:
            _BUCKET.pack_into(self._memory, offset, key, tokens - 1.0, now, limited)
            return 0
        limited += 1
        _BUCKET.pack_into(self._memory, offset, key, tokens, now, limited)
        return limited
