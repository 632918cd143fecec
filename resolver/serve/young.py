"""Keeps the garbage collector's youngest generation small, so that collecting it
never holds the event loop for long.

CPython starts a collection of the youngest generation after a number of allocations,
but a tuple taken from the interpreter's free list joins that generation without being
counted. The answering path makes mostly such tuples, and each audit attempt keeps two
(its key and its first-seen time and count) until the next flush. With 20,000 banned
answers a second, the youngest generation held 42,000-48,000 objects when a collection
finally came, and that collection took 9-11 ms (development VM, 2026-11-30). In 15 s at
that rate, the loop's 10 ms tick was late by over 10 ms twice in two runs of three
before, and in none of three after. Collected every ``EVERY`` seconds, the generation holds a few
hundred objects; the tuples of numbers and strings it finds are then untracked for good.
"""

from __future__ import annotations

import asyncio
import gc

EVERY = 0.01


class YoungCollector:
    def __init__(self) -> None:
        self._handle: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = loop.call_later(EVERY, self._collect, loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _collect(self, loop: asyncio.AbstractEventLoop) -> None:
        gc.collect(0)
        self._handle = loop.call_later(EVERY, self._collect, loop)
