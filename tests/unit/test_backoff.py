"""Upstream back-off: skipped after consecutive failures, doubling, one probe at a time."""

from __future__ import annotations

from resolver.backoff import Admission, UpstreamHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def failing(health: UpstreamHealth, clock: Clock, times: int) -> list[bool]:
    results = []
    for _ in range(times):
        admission = health.admit()
        sent = clock.now
        clock.now += 0.5  # the timeout
        results.append(health.failed(admission, sent))
    return results


def test_three_consecutive_failures_start_a_five_second_backoff():
    clock = Clock()
    health = UpstreamHealth(clock=clock)
    assert failing(health, clock, 3) == [False, False, True]
    assert not health.up
    assert health.admit() is Admission.SKIP
    clock.now += 4.9
    assert health.admit() is Admission.SKIP
    clock.now += 0.2
    assert health.admit() is Admission.PROBE


def test_a_success_in_between_resets_the_count():
    clock = Clock()
    health = UpstreamHealth(clock=clock)
    failing(health, clock, 2)
    health.succeeded()
    clock.now += 1
    assert failing(health, clock, 2) == [False, False]
    assert health.up


def test_only_one_probe_at_a_time_and_its_failure_doubles_the_backoff():
    clock = Clock()
    health = UpstreamHealth(clock=clock)
    failing(health, clock, 3)
    clock.now += 5
    probe = health.admit()
    assert probe is Admission.PROBE
    assert health.admit() is Admission.SKIP  # the probe is still out
    sent = clock.now
    clock.now += 0.5
    assert health.failed(probe, sent) is True
    assert health.backoff == 10
    clock.now += 9.9
    assert health.admit() is Admission.SKIP
    clock.now += 0.2
    assert health.admit() is Admission.PROBE


def test_backoff_doubles_up_to_the_maximum():
    clock = Clock()
    health = UpstreamHealth(clock=clock)
    failing(health, clock, 3)
    periods = []
    for _ in range(6):
        clock.now += health.backoff
        probe = health.admit()
        assert probe is Admission.PROBE
        health.failed(probe, clock.now)
        periods.append(health.backoff)
    assert periods == [10, 20, 40, 60, 60, 60]


def test_a_successful_probe_brings_the_upstream_back():
    clock = Clock()
    health = UpstreamHealth(clock=clock)
    failing(health, clock, 3)
    clock.now += 5
    assert health.admit() is Admission.PROBE
    health.succeeded()
    assert health.up
    assert health.admit() is Admission.SEND


def test_a_cancelled_probe_lets_the_next_query_probe():
    clock = Clock()
    health = UpstreamHealth(clock=clock)
    failing(health, clock, 3)
    clock.now += 5
    probe = health.admit()
    health.abandoned(probe)
    assert health.admit() is Admission.PROBE


def test_failures_of_queries_sent_before_the_backoff_do_not_extend_it():
    clock = Clock()
    health = UpstreamHealth(clock=clock)
    stragglers = [(health.admit(), clock.now) for _ in range(10)]
    clock.now += 0.5
    verdicts = [health.failed(admission, sent) for admission, sent in stragglers]
    assert verdicts.count(True) == 1
    assert health.backoff == 5


def test_a_slow_question_does_not_count_while_the_upstream_answers_others():
    # Queries for a name whose own servers are dead time out, but the upstream keeps
    # answering everything else meanwhile: it is healthy, and must not be backed off.
    clock = Clock()
    health = UpstreamHealth(clock=clock)
    slow = [(health.admit(), clock.now) for _ in range(5)]
    clock.now += 0.1
    health.succeeded()
    clock.now += 0.4
    assert [health.failed(admission, sent) for admission, sent in slow] == [False] * 5
    assert health.up
