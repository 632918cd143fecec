"""The rate limit handler: a token bucket per client prefix, slip, bounded memory."""

from __future__ import annotations

import dataclasses

import dns.flags
import pytest

from resolver.config import RateLimitConfig
from resolver.dns.codec import encode_answer, parse_query
from resolver.dns.model import Outcome
from resolver.handlers.ratelimit import RateLimitHandler
from resolver.metrics import Metrics
from resolver.shared import BucketTable
from tests.unit.handler_support import FakeNext, decode, make_query


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(
    following: FakeNext,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
    buckets: BucketTable | None = None,
    **options,
) -> RateLimitHandler:
    config = RateLimitConfig(**{"rate": 10.0, "burst": 5, "slip": 2, **options})
    return RateLimitHandler(config, metrics or Metrics(), following, clock or Clock(), buckets)


def outcomes(handler: RateLimitHandler, count: int, client: str = "192.0.2.1") -> list[Outcome]:
    return [handler.handle(make_query("a.test", client=client)).outcome for _ in range(count)]


def test_burst_passes_then_answers_alternate_truncated_and_dropped():
    following = FakeNext()
    metrics = Metrics()
    handler = limiter(following, metrics=metrics)
    got = outcomes(handler, 9)
    assert got[:5] == [Outcome.FORWARDED] * 5
    assert got[5:] == [Outcome.DROPPED, Outcome.TRUNCATED, Outcome.DROPPED, Outcome.TRUNCATED]
    assert len(following.seen) == 5
    assert metrics.ratelimited.value(("dropped",)) == 2
    assert metrics.ratelimited.value(("truncated",)) == 2


def test_tokens_come_back_at_the_configured_rate():
    clock = Clock()
    handler = limiter(FakeNext(), clock)
    assert outcomes(handler, 6)[-1] is Outcome.DROPPED
    clock.now += 0.1  # one token at 10 per second
    assert outcomes(handler, 2) == [Outcome.FORWARDED, Outcome.TRUNCATED]
    clock.now += 60  # a long pause refills only up to the burst
    assert outcomes(handler, 6).count(Outcome.FORWARDED) == 5


def test_truncated_answer_has_tc_and_the_question_only_and_is_no_bigger_than_the_query():
    handler = limiter(FakeNext(), slip=1, burst=1)
    handler.handle(make_query("big.example.test", "TXT"))
    query = make_query("big.example.test", "TXT")
    answer = handler.handle(query)
    assert answer.outcome is Outcome.TRUNCATED
    wire_answer = encode_answer(query, answer, udp=True)
    reply = decode(query, answer)
    assert reply.flags & dns.flags.TC
    assert [str(q.name) for q in reply.question] == ["big.example.test."]
    assert reply.answer == reply.authority == []
    assert len(wire_answer) <= len(query.raw)


def test_slip_zero_drops_everything_over_the_limit():
    handler = limiter(FakeNext(), slip=0, burst=1)
    assert outcomes(handler, 5)[1:] == [Outcome.DROPPED] * 4


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        ("192.0.2.1", "192.0.2.254", True),  # same /24
        ("192.0.2.1", "192.0.3.1", False),
        ("2001:db8:0:ff::1", "2001:db8:0:aa::2", True),  # same /56
        ("2001:db8:0:100::1", "2001:db8:0:200::1", False),
        ("::ffff:192.0.2.1", "192.0.2.9", True),  # IPv4-mapped counts as IPv4
        ("fe80::1%eth0", "fe80::2%eth1", True),
    ],
)
def test_clients_share_a_bucket_by_prefix(first, second, shared):
    handler = limiter(FakeNext(), burst=1)
    assert outcomes(handler, 1, first) == [Outcome.FORWARDED]
    expected = Outcome.DROPPED if shared else Outcome.FORWARDED
    assert outcomes(handler, 1, second) == [expected]


def test_other_prefixes_are_unaffected_by_a_flood():
    handler = limiter(FakeNext(), burst=3)
    outcomes(handler, 100, "198.51.100.7")
    assert outcomes(handler, 3, "203.0.113.5") == [Outcome.FORWARDED] * 3


def test_tcp_is_not_limited():
    following = FakeNext()
    handler = limiter(following, burst=1)
    udp = make_query("a.test", client="192.0.2.1")
    tcp = dataclasses.replace(udp, protocol="tcp")
    assert [handler.handle(tcp).outcome for _ in range(10)] == [Outcome.FORWARDED] * 10


def test_tracked_prefixes_share_a_fixed_table_and_a_flood_pushes_old_ones_out():
    handler = limiter(FakeNext(), burst=1, max_prefixes=100)  # a table of 1,024 slots
    outcomes(handler, 2, "10.0.0.1")  # its bucket is empty now
    for index in range(20_000):
        outcomes(handler, 1, f"10.{index // 256 + 1}.{index % 256}.1")
    # Its slot was taken over, so it starts again with a full bucket: bounded memory
    # over precision, as the single-process limiter always did.
    assert outcomes(handler, 1, "10.0.0.1") == [Outcome.FORWARDED]


def test_workers_sharing_a_table_share_the_limit():
    shared = BucketTable(1000)
    first = limiter(FakeNext(), burst=4, buckets=shared)
    second = limiter(FakeNext(), burst=4, buckets=shared)
    got = outcomes(first, 2, "192.0.2.1") + outcomes(second, 4, "192.0.2.9")
    assert got.count(Outcome.FORWARDED) == 4


def test_a_query_without_an_address_is_not_limited():
    handler = limiter(FakeNext(), burst=1)
    query = parse_query(make_query("a.test").raw, "udp", "")
    assert query is not None
    assert [handler.handle(query).outcome for _ in range(3)] == [Outcome.FORWARDED] * 3
