"""Keeps the garbage collector's youngest generation small, so that collecting it
never holds the event loop for long, and collects the older generations, which the
interpreter left alone in a quiet server.

CPython starts a collection of the youngest generation after a number of allocations,
but a tuple taken from the interpreter's free list joins that generation without being
counted. The answering path makes mostly such tuples, and each audit attempt keeps two
(its key and its first-seen time and count) until the next flush. With 20,000 banned
answers a second, the youngest generation held 42,000-48,000 objects when a collection
finally came, and that collection took 9-11 ms (development VM, 2026-11-30). In 15 s at
that rate, the loop's 10 ms tick was late by over 10 ms twice in two runs of three
before, and in none of three after. Collected every ``EVERY`` seconds, the generation
holds a few hundred objects; the tuples of numbers and strings it finds are then
untracked for good.

The interpreter collects an older generation only when it counts ``threshold0`` (700)
new objects since the last collection. A collection made here resets that count, so a
server allocating fewer than 70,000 objects a second (any office at a few hundred
queries a second) never reached it: no older generation was ever collected, and every
reference cycle that lived past one young collection (an exception kept with its
traceback, as on a refused upstream; a closed connection's objects) stayed in memory for
good. 950 queries in 20 s against a refused upstream, half of them over TCP, with a
metrics scrape every tenth, left 260 unreachable objects (development VM, 2026-12-01;
none with the collections below). So this collects, too:
- the middle generation by the interpreter's own rule: after ``threshold1`` (10) young
  collections, about every 100 ms; 0.1 ms each under load;
- the oldest every ``FULL_EVERY`` seconds. Its objects are few (the policy is frozen,
  ``gc.freeze``), but a full collection walks every tracked container, the audit trail's
  table of attempts included: 1.4-2.7 ms each under 45,000 banned answers a second,
  0.13 ms at a trickle. The interpreter's rule would make that about once a second; a
  cycle that reaches the oldest generation waits at most this long to be freed instead.
"""

from __future__ import annotations

import asyncio
import gc

EVERY = 0.01
FULL_EVERY = 10.0


class YoungCollector:
    def __init__(self, full_every: float = FULL_EVERY) -> None:
        self._handle: asyncio.TimerHandle | None = None
        self._full_every = full_every
        self._full_due = 0.0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._full_due = loop.time() + self._full_every
        self._handle = loop.call_later(EVERY, self._collect, loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _collect(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        if now >= self._full_due:
            self._full_due = now + self._full_every
            gc.collect(2)
        else:
            gc.collect(1 if middle_due() else 0)
        self._handle = loop.call_later(EVERY, self._collect, loop)


def middle_due() -> bool:
    """Whether the interpreter's own rule calls for a collection of the middle
    generation: ``threshold1`` young collections since its last (``gc.get_count()``)."""
    threshold1 = gc.get_threshold()[1]
    return bool(threshold1) and gc.get_count()[1] >= threshold1
