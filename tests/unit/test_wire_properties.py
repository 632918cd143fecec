"""Property tests: the wire readers survive any bytes, and agree with dnspython on real ones."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.dns import responses, wire
from resolver.dns.codec import encode_answer, parse_query
from resolver.dns.model import Outcome, Query

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Labels of any bytes (dnspython escapes them), mixed case included.
labels = st.binary(min_size=1, max_size=20) | st.from_regex(r"[A-Za-z0-9_-]{1,63}", fullmatch=True)


@st.composite
def names(draw: st.DrawFn) -> dns.name.Name:
    parts: list[bytes] = []
    size = 1
    for label in draw(st.lists(labels, max_size=8)):
        encoded = label.encode() if isinstance(label, str) else label
        if size + len(encoded) + 1 > 255:
            break
        parts.append(encoded)
        size += len(encoded) + 1
    return dns.name.Name([*parts, b""])


qtypes = st.integers(min_value=1, max_value=65535).filter(lambda t: t != wire.TYPE_OPT)
qclasses = st.sampled_from([dns.rdataclass.IN, dns.rdataclass.CH, dns.rdataclass.ANY])


def header_then(body: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Bytes that start like a DNS header with small counts, so readers go past the header."""
    counts = st.tuples(*[st.integers(0, 3)] * 4)
    return st.builds(
        lambda ident, flags, c, rest: wire.HEADER.pack(ident, flags, *c) + rest,
        st.integers(0, 65535),
        st.integers(0, 65535),
        counts,
        body,
    )


def _samples() -> list[bytes]:
    query = dns.message.make_query("www.Example.com", "A", use_edns=0)
    response = dns.message.make_response(query)
    response.answer.append(
        dns.rrset.from_text("www.example.com.", 60, "IN", "CNAME", "cdn.example.com.")
    )
    response.answer.append(dns.rrset.from_text("cdn.example.com.", 30, "IN", "A", "192.0.2.1"))
    negative = dns.message.make_response(query)
    negative.set_rcode(3)
    negative.authority.append(
        dns.rrset.from_text(
            "example.com.", 60, "IN", "SOA", "ns.example.com. h.example.com. 1 2 3 4 5"
        )
    )
    return [query.to_wire(), response.to_wire(), negative.to_wire()]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """Real messages with a few bytes changed and maybe cut: close enough to be read far."""
    data = bytearray(draw(st.sampled_from(_samples())))
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


arbitrary = st.binary(max_size=600) | header_then(st.binary(max_size=300)) | mutated()


@SETTINGS
@given(arbitrary)
def test_parse_query_never_raises(data):
    query = parse_query(data, "udp", "192.0.2.7")
    assert query is None or isinstance(query, Query)
    if query is not None:
        assert len(data) >= 12
        assert not wire.HEADER.unpack_from(data)[1] & wire.QR
        # A query without a problem has a question that encode_answer can echo.
        if not query.problem:
            assert query.qname == data[12 : query.question_end - 4].lower()
        # Whatever was read, the error answer for it is a message a real client can read.
        rcode = wire.FORMERR if query.problem else wire.REFUSED
        answer = encode_answer(query, responses.error(query, rcode, Outcome.FORMERR), udp=True)
        if query.flags & wire.OPCODE_MASK == 5 << 11:
            # dnspython reads an UPDATE's question as a zone section that must be SOA;
            # the header is all an UPDATE client reads from an error anyway.
            ident, flags, qdcount = wire.HEADER.unpack_from(answer)[:3]
            assert (ident, flags & wire.RCODE_MASK) == (query.id, rcode)
            assert qdcount == (1 if query.qname else 0)
            return
        reply = dns.message.from_wire(answer)
        assert reply.id == query.id
        assert reply.rcode() == rcode
        assert len(reply.question) == (1 if query.qname else 0)


@SETTINGS
@given(arbitrary)
def test_scan_response_raises_only_wire_error(data):
    try:
        scan = wire.scan_response(data)
    except wire.WireError:
        return
    for offset in scan.ttl_offsets:
        assert 12 <= offset <= len(data) - 4
    stripped, offsets = wire.without_opt(data, scan)
    assert len(offsets) == len(scan.ttl_offsets)
    assert all(o + 4 <= len(stripped) for o in offsets)


@SETTINGS
@given(names(), qtypes, qclasses, st.integers(0, 65535), st.booleans())
def test_parse_query_reads_what_dnspython_wrote(name, qtype, qclass, ident, edns):
    message = dns.message.make_query(name, qtype, qclass, use_edns=0 if edns else False)
    message.id = ident
    data = message.to_wire()
    query = parse_query(data, "udp", "192.0.2.7")
    assert query is not None
    assert query.problem == ""
    assert query.id == ident
    assert (query.qtype, query.qclass) == (qtype, qclass)
    assert query.qname == name.canonicalize().to_wire()
    assert len(query.labels) == len(name.labels) - 1
    assert (query.edns is not None) is edns

    answer = responses.error(query, wire.REFUSED, Outcome.REFUSED)
    reply = dns.message.from_wire(encode_answer(query, answer, udp=True))
    assert reply.id == ident
    assert reply.rcode() == wire.REFUSED
    (question,) = reply.question
    # Exact labels, case included: the question is echoed as asked.
    assert question.name.labels == name.labels
    assert (question.rdtype, question.rdclass) == (qtype, qclass)
    assert (reply.edns == 0) is edns


@SETTINGS
@given(names(), st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=4), st.booleans())
def test_scan_response_agrees_with_dnspython(owner, ttls, edns):
    query = dns.message.make_query(owner, "A", use_edns=0 if edns else False)
    response = dns.message.make_response(query)
    for index, ttl in enumerate(ttls):
        child = (
            dns.name.Name([b"n%d" % index, *owner.labels]) if len(owner.to_wire()) < 240 else owner
        )
        response.answer.append(dns.rrset.from_text(child, ttl, "IN", "A", f"192.0.2.{index}"))
    data = response.to_wire()
    scan = wire.scan_response(data)
    expected = [rrset.ttl for rrset in response.answer]
    assert scan.min_ttl == min(expected)
    assert len(scan.ttl_offsets) == len(expected)
    assert [wire.U32.unpack_from(data, o)[0] for o in scan.ttl_offsets] == expected
    assert (scan.opt_start >= 0) is edns
