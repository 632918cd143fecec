"""Attempts on banned names, gathered between two writes of the audit trail.

Attempts alike (same client, group, name, type, service, category, action) within one
flush interval become one row with a count. The trail's writer takes what was gathered
at each flush (``audit.trail``); a worker process gathers its own and sends them to the
supervisor, which owns the trail and adds them to its own (``absorb``).
"""

from __future__ import annotations

import time

from resolver.dns import wire

# Distinct attempts waiting for the writer; beyond this (a writer starved or stuck) new
# ones are dropped and counted rather than letting memory grow without bound.
QUEUE_LIMIT = 200_000

# (client, group, name, qtype, service, category, action): attempts alike within one
# flush interval are one row with a count, so a client retrying a banned name a thousand
# times a second costs one row, not a thousand.
AttemptKey = tuple[str, str, bytes | str, int | str, str, str, str]

# The type of an attempt recorded as the question came: its name is then the datagram
# without its ID (header, name, type, class, what follows), as the fast path keeps it.
# Reading the name out of it and lowering its case cost the answering process about a
# microsecond per banned answer; the writer process does it (``settled``), where alike
# attempts are merged again.
QUESTION = -1


# (first seen, count). A tuple of numbers, replaced rather than changed: the garbage
# collector stops tracking it, so a second's attempts never lengthen its pauses.
Seen = tuple[float, int]


# Distinct attempts per dict in the answering process. A dict that grows copies itself
# whole each time it doubles (8.9 ms at 87,381 keys, 16 ms at 174,762 on the development
# VM), in the callback that answers; so past this size a new one is started, and each
# copy costs a fraction of a millisecond. The writer process merges attempts alike that
# end up in two of them, before it writes a row.
BOUNDED = 8_192


class AttemptBatcher:
    """Attempts on banned names gathered between flushes: key -> (first seen, count).

    The answering process keeps one (``writer.AuditWriter`` takes it at each flush), and
    so does the writer process's trail; a worker keeps one for the process that owns
    the audit trail (the supervisor), which adds the batches it receives to its own
    (``absorb``) and writes each attempt once. With ``bounded`` (the processes that
    answer, or relay for those that do), no dict holds more than ``BOUNDED`` keys.

    Called from one thread only, the event loop's (no lock: taking one cost about a
    third of ``record``, which runs for every banned name answered).
    """

    def __init__(self, bounded: bool = False, settle: bool = False) -> None:
        self._settle = settle  # the writer's: turn QUESTION attempts into names
        self._pending: dict[AttemptKey, Seen] = {}
        self._full: list[dict[AttemptKey, Seen]] = []  # bounded: dicts that reached it
        self._held = 0  # keys in ``_full``
        self._bound = BOUNDED if bounded else QUEUE_LIMIT
        # Keys ``_pending`` takes before it is full or the cap is reached: until then a
        # new attempt goes straight in (``record``).
        self._room = self._bound
        self.dropped = 0  # attempts that found it full, since the start
        self.count = 0  # attempts held now (each key's count, summed)

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
        pending = self._pending
        seen = pending.get(key)
        if seen is not None:  # the same attempt again (first seen: the first recorded)
            pending[key] = (seen[0], seen[1] + 1)
        elif len(pending) < self._room:
            pending[key] = (time.time(), 1)
        else:
            self._gather(key, time.time(), 1)
            return
        self.count += 1

    def absorb(self, batches: list[dict[AttemptKey, Seen]], dropped: int = 0) -> None:
        """Attempts another process gathered, and how many it had to drop."""
        settle = self._settle
        for batch in batches:
            for key, (first, count) in batch.items():
                if settle and key[3] == QUESTION:
                    key = settled(key)
                self._gather(key, first, int(count))
        self.dropped += dropped

    def _gather(self, key: AttemptKey, first: float, count: int) -> None:
        pending = self._pending
        seen = pending.get(key)
        if seen is not None:
            pending[key] = (min(seen[0], first), seen[1] + count)
            self.count += count
        elif self._held + len(pending) >= QUEUE_LIMIT:
            # Full. An attempt alike to one in the newest dict still counted above; one
            # alike to an attempt in an earlier dict is dropped, and counted, with the
            # new ones: looking through every earlier dict made each attempt cost 9.1 µs
            # instead of 1.3 (24 dicts; development VM) under the flood that fills it.
            self.dropped += count
        else:
            self.count += count
            if len(pending) >= self._bound:
                self._full.append(pending)
                self._held += len(pending)
                self._room = min(self._bound, QUEUE_LIMIT - self._held)
                pending = self._pending = {}
            pending[key] = (first, count)

    def take(self) -> tuple[list[dict[AttemptKey, Seen]], int]:
        """What was gathered since the last take (non-empty dicts), and the drops so far."""
        batches = [*self._full, self._pending] if self._pending else self._full
        self._pending, self._full, self._held, self.count = {}, [], 0, 0
        self._room = self._bound
        return batches, self.dropped

    def __len__(self) -> int:
        return self._held + len(self._pending)


def settled(key: AttemptKey) -> AttemptKey:
    """A QUESTION attempt as the others are: its name in lowercase wire form (RFC 4343:
    names compare without case), its type as a number. A kept question is always whole;
    one that is not keeps what it has (the bytes after the header, type 0)."""
    client, group, question, _, service, category, action = key
    assert isinstance(question, bytes)
    try:
        # After the header's flags and four counts (RFC 1035 4.1.1): no ID in a key.
        end, _ = wire.read_question_name(question, 10)
    except wire.WireError:
        end = len(question)
    qtype = int.from_bytes(question[end : end + 2], "big")
    return (client, group, question[10:end].lower(), qtype, service, category, action)
