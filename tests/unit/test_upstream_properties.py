"""Property tests for the RFC 5452 answer check (``upstream.udp.check``): any bytes are
either the answer to our question or rejected with a bounded reason, never a crash; a
genuine answer is always accepted and relayed readable."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from resolver.dns import wire
from resolver.upstream.messages import answer_from as _answer_from
from resolver.upstream.streams import Rejected
from resolver.upstream.udp import Expected, check

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
REASONS = {"malformed", "wrong_id", "wrong_question"}

label_text = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
names = st.lists(label_text, min_size=1, max_size=5).map(
    lambda labels: dns.name.from_text(".".join(labels) + ".")
)
qtypes = st.sampled_from(["A", "AAAA", "TXT", "MX", "HTTPS", "CNAME", "NS", "SOA"])


def expected_for(query: dns.message.Message) -> Expected:
    data = query.to_wire()
    question = query.question[0]
    qname = question.name.canonicalize().to_wire()
    end = 12 + len(qname)
    return Expected(query.id, qname, data[end : end + 4])


@st.composite
def exchanges(draw: st.DrawFn) -> tuple[dns.message.Message, dns.message.Message]:
    """A query as we send it and a genuine answer, with random records and case."""
    name = draw(names)
    query = dns.message.make_query(name, draw(qtypes), use_edns=0)
    query.id = draw(st.integers(0, 65535))
    response = dns.message.make_response(query)
    if draw(st.booleans()):
        # Upstreams may echo the question in another case (0x20): still ours.
        mixed = "".join(
            c.upper() if draw(st.booleans()) else c for c in name.to_text(omit_final_dot=True)
        )
        response.question[0].name = dns.name.from_text(mixed + ".")
    for index in range(draw(st.integers(0, 4))):
        ttl = draw(st.integers(0, 2**31 - 1))
        response.answer.append(dns.rrset.from_text(name, ttl, "IN", "A", f"192.0.2.{index + 1}"))
    response.set_rcode(draw(st.sampled_from([0, 2, 3, 5])))
    if draw(st.booleans()):
        response.flags |= dns.flags.AA
    if draw(st.booleans()):
        response.use_edns(False)
    return query, response


def check_reason(data: bytes, expected: Expected) -> str:
    try:
        check(data, expected)
    except Rejected as rejected:
        return rejected.reason
    return "accepted"


@SETTINGS
@given(exchanges(), st.binary(max_size=600))
def test_any_bytes_are_accepted_or_rejected_with_a_bounded_reason(exchange, data):
    query, _ = exchange
    assert check_reason(data, expected_for(query)) in REASONS | {"accepted"}


@SETTINGS
@given(exchanges())
def test_a_genuine_answer_is_accepted_and_relayed_readable(exchange):
    query, response = exchange
    data = response.to_wire()
    scan = check(data, expected_for(query))
    answer = _answer_from(data, scan)
    relayed = dns.message.from_wire(answer.message)
    assert relayed.rcode() == response.rcode()
    assert relayed.edns < 0  # EDNS is hop by hop: the codec adds our own OPT
    assert not relayed.flags & dns.flags.AA  # we never claim authority
    assert sorted(r.to_text() for rrset in relayed.answer for r in rrset) == sorted(
        r.to_text() for rrset in response.answer for r in rrset
    )
    for offset in answer.ttl_offsets:
        assert 12 <= offset <= len(answer.message) - 4


@SETTINGS
@given(exchanges(), st.integers(1, 65535))
def test_any_other_id_is_rejected(exchange, delta):
    query, response = exchange
    response.id = (query.id + delta) % 65536
    assert check_reason(response.to_wire(), expected_for(query)) == "wrong_id"


@SETTINGS
@given(exchanges(), names, qtypes, st.sampled_from(["IN", "CH"]))
def test_any_other_question_is_rejected(exchange, name, qtype, qclass):
    query, _ = exchange
    other = dns.message.make_query(name, qtype, qclass)
    original = query.question[0]
    assume(
        (other.question[0].name, other.question[0].rdtype, other.question[0].rdclass)
        != (original.name, original.rdtype, original.rdclass)
    )
    forged = dns.message.make_response(other)
    forged.id = query.id
    assert check_reason(forged.to_wire(), expected_for(query)) == "wrong_question"


@SETTINGS
@given(exchanges(), st.sampled_from(["query_bit", "opcode", "qdcount"]))
def test_what_is_not_an_answer_is_malformed(exchange, breakage):
    query, response = exchange
    data = bytearray(response.to_wire())
    flags = wire.U16.unpack_from(data, 2)[0]
    if breakage == "query_bit":
        wire.U16.pack_into(data, 2, flags & ~wire.QR)
    elif breakage == "opcode":
        wire.U16.pack_into(data, 2, flags | (dns.opcode.NOTIFY << 11))
    else:
        wire.U16.pack_into(data, 4, 2)
    assert check_reason(bytes(data), expected_for(query)) == "malformed"


@SETTINGS
@given(exchanges(), st.data())
def test_cut_or_flipped_answers_never_crash_and_accepted_ones_are_walkable(exchange, data):
    query, response = exchange
    message = bytearray(response.to_wire())
    for _ in range(data.draw(st.integers(0, 3))):
        message[data.draw(st.integers(0, len(message) - 1))] = data.draw(st.integers(0, 255))
    cut = bytes(message[: data.draw(st.integers(0, len(message)))])
    if check_reason(cut, expected_for(query)) != "accepted":
        return
    answer = _answer_from(cut, check(cut, expected_for(query)))
    assert wire.HEADER.unpack_from(answer.message)[0] == query.id
    for offset in answer.ttl_offsets:
        assert 12 <= offset <= len(answer.message) - 4
