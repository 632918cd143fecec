"""FastPath on its own: what it keeps, for whom, for how long, and the effects it
repeats for every answer it gives (no sockets)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import dns.message
import dns.rrset
import pytest

from resolver.audit.attempts import QUESTION, settled
from resolver.dns import responses, wire
from resolver.dns.codec import encode_answer
from resolver.dns.model import Answer, Outcome, Query
from resolver.metrics import Metrics
from resolver.serve import fastpath
from resolver.serve.fastpath import FastPath
from tests.unit.handler_support import make_query

OFFICE, LAB = object(), object()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(fastpath.time, "monotonic", fake)
    return fake


def blocked(query: Query, until: float) -> Answer:
    answer = responses.error(query, wire.NXDOMAIN, Outcome.BLOCKED)
    answer.service, answer.category, answer.group = "deepseek", "chat_assistant", "office"
    answer.reuse_until = until
    return answer


def kept(fast: FastPath, query: Query, answer: Answer) -> bytes:
    sent = encode_answer(query, answer, udp=True)
    fast.keep(query, answer, sent)
    return sent


def with_id(data: bytes, query_id: int) -> bytes:
    return query_id.to_bytes(2, "big") + data[2:]


def make(audit: list[tuple[Any, ...]] | None = None, limit: int = 100) -> FastPath:
    groups = {"127.0.0.3": LAB}

    def record(*row: Any) -> None:
        # As the writer process reads it: a question as it came becomes a name and type.
        assert audit is not None
        audit.append(settled(row) if row[3] == QUESTION else row)  # type: ignore[arg-type]

    return FastPath(
        Metrics(),
        lambda client: groups.get(client, OFFICE),
        None if audit is None else record,
        capacity=limit,
        clients=limit,
    )


def test_a_kept_blocked_answer_is_given_with_the_new_id_and_every_effect(clock: Clock) -> None:
    audit: list[tuple[Any, ...]] = []
    fast = make(audit)
    query = make_query("chat.deepseek.com")
    sent = kept(fast, query, blocked(query, math.inf))
    again = fast.answer(with_id(query.raw, 4242), "127.0.0.1")
    assert again == with_id(sent, 4242)
    metrics = fast._metrics
    assert metrics.queries.value(("udp", wire.TYPE_A)) == 1
    assert metrics.responses.value((Outcome.BLOCKED, wire.NXDOMAIN)) == 1
    assert metrics.blocked.value(("deepseek", "chat_assistant", "office")) == 1
    assert metrics.cache_hits.value() == 0
    assert audit == [
        ("127.0.0.1", "office", query.qname, wire.TYPE_A, "deepseek", "chat_assistant", "blocked")
    ]


def test_a_cached_answer_counts_as_a_cache_hit_and_expires(clock: Clock) -> None:
    fast = make([])
    query = make_query("example.test")
    answer = responses.error(query, wire.NOERROR, Outcome.CACHED)
    answer.reuse_until = clock.now + 0.5
    kept(fast, query, answer)
    assert fast.answer(query.raw, "127.0.0.1") is not None
    assert fast._metrics.cache_hits.value() == 1
    clock.now += 0.5
    assert fast.answer(query.raw, "127.0.0.1") is None
    assert fast._metrics.cache_hits.value() == 1  # nothing counted for what it did not answer


def test_answers_not_marked_for_reuse_and_tcp_questions_are_not_kept(clock: Clock) -> None:
    fast = make()
    forwarded = make_query("example.test")
    kept(fast, forwarded, responses.error(forwarded, wire.NOERROR, Outcome.FORWARDED))
    stale = make_query("stale.test")
    kept(fast, stale, blocked(stale, clock.now))
    tcp = make_query("chat.deepseek.com")
    tcp.protocol = "tcp"
    kept(fast, tcp, blocked(tcp, math.inf))
    for query in (forwarded, stale, tcp):
        assert fast.answer(query.raw, "127.0.0.1") is None


def test_another_group_never_gets_an_answer_kept_for_the_first(clock: Clock) -> None:
    fast = make()
    query = make_query("chat.deepseek.com")
    kept(fast, query, blocked(query, math.inf))
    assert fast.answer(query.raw, "127.0.0.3") is None  # the lab group
    lab_query = make_query("chat.deepseek.com", client="127.0.0.3")
    lab_query.raw = query.raw
    allowed = responses.error(lab_query, wire.NOERROR, Outcome.CACHED)
    allowed.reuse_until = math.inf
    lab_sent = kept(fast, lab_query, allowed)
    assert fast.answer(query.raw, "127.0.0.3") == with_id(lab_sent, query.id)
    office = fast.answer(query.raw, "127.0.0.1")
    assert office is not None
    assert office[2:] != lab_sent[2:]


def test_clear_forgets_everything(clock: Clock) -> None:
    fast = make()
    query = make_query("chat.deepseek.com")
    kept(fast, query, blocked(query, math.inf))
    fast.clear()
    assert fast.answer(query.raw, "127.0.0.1") is None


def test_the_tables_are_bounded(clock: Clock) -> None:
    fast = make(limit=3)
    queries = [make_query(f"n{i}.deepseek.com") for i in range(4)]
    for query in queries:
        kept(fast, query, blocked(query, math.inf))
    assert len(fast) <= 3
    clients = [make_query("x.deepseek.com", client=f"10.0.0.{i}") for i in range(5)]
    for query in clients:
        kept(fast, query, blocked(query, math.inf))
    assert fast.clients <= 3


def cached(query: Query, stored: float, now: float) -> Answer:
    """The cache's answer to ``query``: one A record, TTL 300, stored at ``stored``."""
    upstream = dns.message.make_response(dns.message.from_wire(query.raw))
    owner = upstream.question[0].name
    upstream.answer.append(dns.rrset.from_text(owner, 300, "IN", "A", "192.0.2.1"))
    upstream.use_edns(False)  # an Answer's message has no OPT: the codec adds it
    message = upstream.to_wire()
    ttl_at = message.index(bytes.fromhex("0000012c"))  # 300
    return Answer(
        message,
        Outcome.CACHED,
        wire.NOERROR,
        ttl_offsets=(ttl_at,),
        reuse_until=now + 300,
        countdown=(stored, 0),
    )


def on_the_second(query: Query, stored: float) -> float:
    """A store time shifted by how early the fast path recounts ``query``'s TTLs (spread
    by the question's hash), so that they are recounted right at each whole second of
    age since ``stored``: a schedule a test can name."""
    return stored + fastpath._early(query.raw[2:])


def test_a_cached_answer_counts_its_ttls_down_itself(clock: Clock) -> None:
    fast = make()
    query = make_query("example.test")
    stored = on_the_second(query, clock.now - 0.5)
    kept(fast, query, cached(query, stored, clock.now))
    clock.now += 0.4  # the same whole second of age
    same = dns.message.from_wire(fast.answer(query.raw, "127.0.0.1") or b"")
    assert same.answer[0].ttl == 300
    clock.now += 2.2  # 3.1 s after it was stored: age 3
    later = dns.message.from_wire(fast.answer(query.raw, "127.0.0.1") or b"")
    assert later.answer[0].ttl == 297
    clock.now += 1.0  # age 4: counted from the original, not from the last copy
    assert dns.message.from_wire(fast.answer(query.raw, "127.0.0.1") or b"").answer[0].ttl == 296


def test_a_truncated_cached_answer_is_kept_until_its_next_second_only(clock: Clock) -> None:
    fast = make()
    query = make_query("example.test")
    answer = responses.error(query, wire.NOERROR, Outcome.CACHED)
    answer.ttl_offsets = (40,)
    answer.reuse_until = clock.now + 300
    answer.countdown = (on_the_second(query, clock.now - 0.5), 0)
    sent = bytearray(encode_answer(query, answer, udp=True))
    sent[2] |= 0x02  # TC: the records are not where the cache has them
    fast.keep(query, answer, bytes(sent))
    assert fast.answer(query.raw, "127.0.0.1") is not None
    clock.now += 0.6  # past the next whole second of age
    assert fast.answer(query.raw, "127.0.0.1") is None


def test_a_kept_answer_asked_in_another_case_is_audited_under_the_name_as_the_pipeline_has_it(
    clock: Clock,
) -> None:
    """Resolvers randomise the case of the names they ask (the 0x20 defence): one name,
    one audit row, however it was written."""
    audit: list[tuple[Any, ...]] = []
    fast = make(audit)
    query = make_query("Chat.DeepSeek.COM")
    kept(fast, query, blocked(query, math.inf))
    assert fast.answer(with_id(query.raw, 7), "127.0.0.1") is not None
    assert [row[2] for row in audit] == [query.qname] == [b"\x04chat\x08deepseek\x03com\x00"]


def test_nothing_set_aside_by_a_clear_is_served_while_it_is_being_freed(clock: Clock) -> None:
    async def scenario() -> tuple[int, bytes | None, bytes | None]:
        fast = make(limit=8_192)
        queries = [make_query(f"n{i}.deepseek.com") for i in range(3_000)]
        for query in queries:
            kept(fast, query, blocked(query, math.inf))
        assert fast.answer(queries[0].raw, "127.0.0.1") is not None
        fast.clear()  # inside the loop: the slabs are freed over the next turns
        retired = fast._tables.retired
        during = fast.answer(queries[0].raw, "127.0.0.1")
        for _ in range(retired + 1):
            await asyncio.sleep(0)
        return retired, during, fast.answer(queries[1].raw, "127.0.0.1")

    retired, during, after = asyncio.run(scenario())
    assert retired > 0
    assert during is None
    assert after is None


def test_answers_cached_together_are_recounted_spread_over_the_second(clock: Clock) -> None:
    fast = make(limit=8_192)
    stored = clock.now
    queries = [make_query(f"host{i}.example.test") for i in range(200)]
    for query in queries:
        kept(fast, query, cached(query, stored, clock.now))
    recounted_at: dict[int, int] = {}
    for step in range(1, 151):  # 1.5 s in 10 ms steps
        clock.now = stored + step / 100
        true_age = int(clock.now - stored)
        for index, query in enumerate(queries):
            ttl = dns.message.from_wire(fast.answer(query.raw, "127.0.0.1") or b"").answer[0].ttl
            # Never higher than the cache's own count, at most a second lower.
            assert 300 - true_age - 1 <= ttl <= 300 - true_age
            if ttl == 299:
                recounted_at.setdefault(index, step)
    assert len(recounted_at) == len(queries)
    # Spread over the second rather than all at its end: 200 names, over 50 moments.
    assert len(set(recounted_at.values())) > 50
