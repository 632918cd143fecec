"""ANY gets one synthesized HINFO record (RFC 8482), never an upstream round trip."""

from __future__ import annotations

import dns.rdatatype
import dns.rrset

from resolver.dns.codec import encode_answer
from resolver.dns.model import Outcome
from resolver.handlers.minimal_any import HINFO_TTL, MinimalAnyHandler
from tests.unit.handler_support import FakeNext, decode, make_query


def test_any_gets_a_single_hinfo_rfc8482_record():
    following = FakeNext()
    handler = MinimalAnyHandler(following)
    query = make_query("Big.Example.TEST", "ANY")
    answer = handler.handle(query)
    assert following.seen == []
    assert answer.outcome is Outcome.SYNTHESIZED
    reply = decode(query, answer)
    assert reply.rcode() == 0
    assert reply.answer == [
        dns.rrset.from_text("Big.Example.TEST.", HINFO_TTL, "IN", "HINFO", '"RFC8482" ""')
    ]
    assert str(reply.question[0].name) == "Big.Example.TEST."


def test_the_answer_is_barely_bigger_than_the_query():
    query = make_query("a.test", "ANY")
    data = encode_answer(query, MinimalAnyHandler(FakeNext()).handle(query), udp=True)
    assert len(data) <= len(query.raw) + 24


def test_the_root_name_works_too():
    query = make_query(".", "ANY")
    reply = decode(query, MinimalAnyHandler(FakeNext()).handle(query))
    assert reply.answer[0].rdtype == dns.rdatatype.HINFO
    assert str(reply.answer[0].name) == "."


def test_other_types_pass_through():
    following = FakeNext()
    handler = MinimalAnyHandler(following)
    for rdtype in ("A", "AAAA", "TXT", "HTTPS"):
        assert handler.handle(make_query("a.test", rdtype)).outcome is Outcome.FORWARDED
    assert len(following.seen) == 4
