"""The young-generation collector: the tuples an answering loop leaves behind are
untracked within a few of its ticks, not whenever the interpreter's count says so."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from resolver.serve.young import EVERY, YoungCollector


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
