"""The least a loop stall can be on this machine: how long the server's core is taken
away from a process that never sleeps.

A Python process spins on the server's core, reading the monotonic clock, and counts
every gap between two reads: the time the kernel or, in a virtual machine, the host
ran something else on that core. No server can answer in such a gap, so an event-loop
stall target below the worst gap cannot be met on this machine, whatever the server.
The benchmark measures it once, before the runs, with the machine otherwise quiet.

    python bench/floor.py SECONDS      # prints the gaps as JSON
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

# Gaps shorter than this are the clock read and the loop itself, not a stolen core.
NOTICED = 0.0002


def gaps(seconds: float) -> dict[str, Any]:
    """Spin for ``seconds``; the worst gap and how many were over 1, 2 and 5 ms."""
    worst = 0.0
    over = {1: 0, 2: 0, 5: 0}
    clock = time.monotonic
    last = clock()
    end = last + seconds
    while last < end:
        now = clock()
        gap = now - last
        last = now
        if gap > NOTICED:
            worst = max(worst, gap)
            for ms in over:
                if gap > ms / 1000:
                    over[ms] += 1
    return {
        "seconds": seconds,
        "worst_ms": round(worst * 1000, 2),
        **{f"over_{ms}ms": count for ms, count in over.items()},
    }


def describe(floor: dict[str, Any] | None) -> str:
    """One line of the report (empty when the floor was not measured)."""
    if not floor:
        return ""
    return (
        f"- the server's core, spun on by one Python process for {floor['seconds']:g} s before"
        f" the runs: worst gap {floor['worst_ms']:.2f} ms ({floor['over_2ms']} over 2 ms,"
        f" {floor['over_5ms']} over 5 ms); no server can answer within such a gap, so no"
        " loop stall below it can be measured here"
    )


if __name__ == "__main__":
    print(json.dumps(gaps(float(sys.argv[1]))))
