"""The young-generation collector: the tuples an answering loop leaves behind are
untracked within a few of its ticks, not whenever the interpreter's count says so."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from resolver.serve.young import EVERY, YoungCollector, middle_due


@pytest.fixture
def no_automatic_collection() -> Iterator[None]:
    # Only the collector under test may collect: the interpreter's own count would
    # otherwise decide when, which is what the collector exists to make irrelevant.
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def survivors(count: int) -> list[tuple[str, int]]:
    return [(str(i), i) for i in range(count)]


async def left_tracked(collector: YoungCollector | None) -> int:
    loop = asyncio.get_running_loop()
    if collector is not None:
        collector.start(loop)
    kept = survivors(20_000)
    assert all(gc.is_tracked(item) for item in kept)
    await asyncio.sleep(EVERY * 5)
    if collector is not None:
        collector.stop()
    return sum(gc.is_tracked(item) for item in kept)


def test_the_collector_untracks_what_the_loop_left_behind(no_automatic_collection: None) -> None:
    assert asyncio.run(left_tracked(YoungCollector())) == 0


def test_without_it_they_stay_in_the_young_generation(no_automatic_collection: None) -> None:
    assert asyncio.run(left_tracked(None)) == 20_000


def test_stop_cancels_the_timer() -> None:
    async def scenario() -> int:
        collector = YoungCollector()
        collector.start(asyncio.get_running_loop())
        collector.stop()
        before = gc.get_stats()[0]["collections"]
        await asyncio.sleep(EVERY * 3)
        return int(gc.get_stats()[0]["collections"] - before)

    gc.disable()
    try:
        assert asyncio.run(scenario()) == 0
    finally:
        gc.enable()


class Node:
    """A reference cycle's node, counted when freed."""

    freed = 0

    def __init__(self) -> None:
        self.other: Node | None = None

    def __del__(self) -> None:
        Node.freed += 1


def make_cycle() -> Node:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return first


async def cycles_freed(collector: YoungCollector, made: int, patience: float) -> int:
    """Make ``made`` reference cycles that each live a few ticks (so they outlive a young
    collection) before they become garbage, at a rate far below the interpreter's own
    trigger; return how many nodes were freed while the loop ran (waiting at most
    ``patience`` seconds after the last for all of them)."""
    loop = asyncio.get_running_loop()
    collector.start(loop)
    Node.freed = 0
    alive: list[Node] = []
    for _ in range(made):
        alive.append(make_cycle())
        if len(alive) > 3:
            alive.pop(0)  # garbage now, after living three ticks
        await asyncio.sleep(EVERY)
    alive.clear()
    waited = 0.0
    while Node.freed < 2 * made and waited < patience:
        await asyncio.sleep(EVERY)
        waited += EVERY
    collector.stop()
    return Node.freed


class YoungOnly(YoungCollector):
    """The collector as it was: the young generation only."""

    def _collect(self, loop: asyncio.AbstractEventLoop) -> None:
        gc.collect(0)
        self._handle = loop.call_later(EVERY, self._collect, loop)


@pytest.fixture
def a_trickle() -> Iterator[None]:
    """As at a trickle of queries: the interpreter's own trigger is never reached."""
    thresholds = gc.get_threshold()
    gc.set_threshold(10_000_000, thresholds[1], thresholds[2])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.collect()


def test_cycles_that_outlive_a_young_collection_are_freed_at_a_trickle(a_trickle: None) -> None:
    """An office's server allocates far fewer objects than the interpreter's trigger:
    with only the collector's collections, the older generations must still be
    collected, or every cycle that lived past one young collection stays for good."""
    assert asyncio.run(cycles_freed(YoungCollector(full_every=0.5), 40, patience=20.0)) == 80


def test_with_young_collections_alone_such_cycles_stay(a_trickle: None) -> None:
    """The check on the test above: collecting the young generation alone, they stay
    (the test above frees them all within 1.5 s, its full collections every 0.5 s)."""
    assert asyncio.run(cycles_freed(YoungOnly(), 40, patience=1.5)) == 0


def test_the_middle_generation_is_due_by_the_interpreters_threshold() -> None:
    thresholds = gc.get_threshold()
    gc.disable()
    try:
        gc.set_threshold(700, 3, 10)
        gc.collect()  # every count at 0
        seen = []
        for _ in range(9):
            due = middle_due()
            seen.append(due)
            gc.collect(1 if due else 0)
        assert seen == [False, False, False, True] * 2 + [False]
    finally:
        gc.set_threshold(*thresholds)
        gc.enable()


def test_a_full_collection_comes_every_full_every_seconds_and_no_more(a_trickle: None) -> None:
    async def scenario() -> int:
        collector = YoungCollector(full_every=0.2)
        before = gc.get_stats()[2]["collections"]
        collector.start(asyncio.get_running_loop())
        await asyncio.sleep(1.1)
        collector.stop()
        return int(gc.get_stats()[2]["collections"] - before)

    # Five due in 1.1 s; the ticks may come late on a busy machine, never early.
    assert 1 <= asyncio.run(scenario()) <= 5
