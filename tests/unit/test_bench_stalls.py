"""The benchmark's per-run stall figure: the highest histogram bucket that gained an
observation between two scrapes of aiwall_loop_stall_seconds."""

from __future__ import annotations

import math

from bench.servers import worst_stall_between

BOUNDS = (0.001, 0.002, 0.005, 0.01, math.inf)


def _cumulative(counts: list[int]) -> dict[float, float]:
    total, out = 0, {}
    for bound, count in zip(BOUNDS, counts, strict=True):
        total += count
        out[bound] = float(total)
    return out


def test_only_the_window_counts_not_what_came_before() -> None:
    # A 7 ms stall before the window (a full-load run) must not be this run's figure.
    before = _cumulative([100, 5, 0, 1, 0])
    after = _cumulative([400, 9, 2, 1, 0])
    assert worst_stall_between(before, after) == 5.0


def test_the_highest_bucket_that_gained_is_the_bound() -> None:
    before = _cumulative([10, 0, 0, 0, 0])
    after = _cumulative([20, 0, 0, 1, 0])
    assert worst_stall_between(before, after) == 10.0


def test_past_the_last_finite_bound_is_infinite() -> None:
    assert worst_stall_between(_cumulative([0] * 5), _cumulative([3, 0, 0, 0, 1])) == math.inf


def test_no_tick_observed_is_none() -> None:
    same = _cumulative([3, 1, 0, 0, 0])
    assert worst_stall_between(same, dict(same)) is None
