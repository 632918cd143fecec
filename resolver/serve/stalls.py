"""How long the event loop was kept from answering: its stalls, measured from inside.

A timer asks to run every ``TICK`` seconds; how late it runs is how long the loop was
busy with something else (a callback that did not return, the collector, another
thread holding the interpreter). Every query waiting at that moment waited as long.
The histogram shows how often; the maximum, the worst since the start (the figure
``make bench`` reports next to the p99).
"""

from __future__ import annotations

import asyncio
import time

from resolver.metrics import Metrics

TICK = 0.01


class LoopWatch:
    def __init__(self, metrics: Metrics) -> None:
        self._histogram = metrics.loop_stall
        self._worst = metrics.loop_stall_max
        self._worst_seen = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = time.monotonic() + TICK
        self._handle = loop.call_at(loop.time() + TICK, self._tick, loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        late = max(now - self._due, 0.0)
        self._histogram.observe(late)
        if late > self._worst_seen:
            self._worst_seen = late
            self._worst.set(late)
        self._due = now + TICK
        self._handle = loop.call_at(loop.time() + TICK, self._tick, loop)
