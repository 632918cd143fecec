"""Upstream health: client failures only make an upstream suspect; the server's own
probe decides, and further probes back off until it answers."""

from __future__ import annotations

from resolver.upstream.health import UpstreamHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_failed_client_question_starts_one_probe_and_does_not_take_it_down():
    health = UpstreamHealth(clock=Clock())
    assert health.suspect() is True
    # While the probe runs, more failures start nothing more and change nothing.
    assert [health.suspect() for _ in range(100)] == [False] * 100
    assert health.up


def test_an_answered_probe_keeps_it_up_and_a_flood_of_failures_costs_one_probe_a_second():
    clock = Clock()
    health = UpstreamHealth(clock=clock)
    probes = 0
    # 300 unanswerable client names a second for 5 s: one probe per RECHECK_AFTER.
    for step in range(1500):
        clock.now = 100.0 + step / 300
        if health.suspect():
            probes += 1
            assert health.checked(alive=True) is False  # no state change: still up
    assert health.up
    assert probes == 5


def test_a_failed_probe_takes_it_down_and_later_probes_back_off_doubling():
    health = UpstreamHealth(first=1.0, maximum=8.0, clock=Clock())
    assert health.suspect()
    assert health.checked(alive=False) is True
    assert not health.up
    assert health.backoff == 1.0
    backoffs = []
    for _ in range(5):
        assert health.checked(alive=False) is False
        backoffs.append(health.backoff)
    assert backoffs == [2.0, 4.0, 8.0, 8.0, 8.0]
    # Down: client failures start no probe of their own (the prober is already on it).
    assert health.suspect() is False


def test_an_answered_probe_or_any_genuine_answer_brings_it_back():
    health = UpstreamHealth(clock=Clock())
    health.suspect()
    health.checked(alive=False)
    assert health.checked(alive=True) is True
    assert health.up
    assert health.backoff == 0.0
    health.checked(alive=False)
    assert health.succeeded() is True
    assert health.up
    assert health.succeeded() is False
