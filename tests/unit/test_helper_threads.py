"""The answering process's helper threads (``asyncio.to_thread``: a reload's loading and
freeing of policies, a list's refresh) leave the interpreter and the core to the event
loop: resolver.background.threads_take_turns and helper_threads."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from resolver import background

TICKS = 300


@pytest.fixture
def switch_interval() -> Iterator[None]:
    was = sys.getswitchinterval()
    try:
        yield
    finally:
        sys.setswitchinterval(was)


def busy(stop: threading.Event) -> int:
    """Python work that never blocks, as a policy being loaded or freed."""
    total = 0
    while not stop.is_set():
        for number in range(1000):
            total += number
    return total


async def lateness_with_a_busy_helper() -> list[float]:
    """How late a 2 ms timer of the loop runs, again and again, while a helper thread
    runs Python."""
    loop = asyncio.get_running_loop()
    background.helper_threads(loop)
    stop = threading.Event()
    helper = asyncio.ensure_future(asyncio.to_thread(busy, stop))
    late = []
    for _ in range(TICKS):
        due = time.monotonic() + 0.002
        await asyncio.sleep(0.002)
        late.append(time.monotonic() - due)
    stop.set()
    await helper
    return late


def test_a_busy_helper_thread_holds_the_loop_up_for_well_under_python_s_5_ms(
    switch_interval: None,
) -> None:
    # At Python's own switch interval (5 ms), each of these turns waited about 5.2 ms
    # for the interpreter (the median; development VM); at SWITCH_INTERVAL, 0.7 ms.
    background.threads_take_turns()
    late = asyncio.run(lateness_with_a_busy_helper())
    assert statistics.median(late) < 2.5e-3, sorted(late)[TICKS // 2 :: 30]


def test_helper_threads_run_at_a_lower_priority_than_the_loop() -> None:
    async def priorities() -> tuple[int, int]:
        background.helper_threads(asyncio.get_running_loop())
        mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        def helper_priority() -> int:
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        return mine, await asyncio.to_thread(helper_priority)

    if sys.platform != "linux":
        pytest.skip("a priority of its own per thread is Linux's")
    loop_thread, helper = asyncio.run(priorities())
    # Linux's threads each have their own: the loop's is untouched.
    assert helper == min(loop_thread + background.HELPER_THREAD_NICE, 19)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_thread
