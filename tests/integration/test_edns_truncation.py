"""EDNS (RFC 6891) and truncation (RFC 1035 4.2.1, RFC 7766 5): OPT only when asked,
our payload size, BADVERS, TC over UDP, the full answer over TCP."""

from __future__ import annotations

import socket
import struct

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from tests.fakes.upstream import DEFAULT_A
from tests.support import RunningServer, ask, has_flag

READ_TIMEOUT = 3.0
OUR_PAYLOAD = 1232
BIG = 1500  # TXT rdata size: more than 1232, so truncated over UDP whatever EDNS says


def udp_raw(server: RunningServer, query: dns.message.Message) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(READ_TIMEOUT)
        sock.sendto(query.to_wire(), (server.host, server.port))
        return sock.recv(65535)


def header_counts(data: bytes) -> tuple[int, int, int, int]:
    qd, an, ns, ar = struct.unpack_from("!HHHH", data, 4)
    return qd, an, ns, ar


def txt_size(answer: dns.message.Message) -> int:
    return sum(len(s) for rrset in answer.answer for rdata in rrset for s in rdata.strings)


@pytest.mark.parametrize(
    ("name", "rdclass"),
    [
        ("opt.example.test", "IN"),  # forwarded
        ("chat.deepseek.com", "IN"),  # blocked, written by the server itself
        ("version.bind", "CH"),  # refused
    ],
)
def test_opt_in_the_answer_iff_the_query_had_one(start_server, upstream, name, rdclass):
    server = start_server()
    rdtype = "A" if rdclass == "IN" else "TXT"
    plain = dns.message.from_wire(udp_raw(server, dns.message.make_query(name, rdtype, rdclass)))
    assert plain.edns == -1
    assert not plain.options
    with_edns = dns.message.make_query(name, rdtype, rdclass, use_edns=0, payload=4096)
    answer = dns.message.from_wire(udp_raw(server, with_edns))
    assert answer.edns == 0
    # Our own size, not an echo of the client's.
    assert answer.payload == OUR_PAYLOAD
    assert answer.rcode() == plain.rcode()


def test_edns_version_1_gets_badvers_with_opt(start_server, upstream):
    server = start_server()
    query = dns.message.make_query("badvers.example.test", "A", use_edns=1)
    answer = dns.message.from_wire(udp_raw(server, query))
    assert answer.rcode() == dns.rcode.BADVERS
    assert answer.edns == 0  # we answer in the version we speak
    assert answer.answer == []
    assert upstream.queries == []


def test_do_bit_is_echoed_and_passed_upstream(start_server, upstream):
    server = start_server()
    signed = dns.message.make_query("do.example.test", "A", use_edns=0, want_dnssec=True)
    answer = dns.message.from_wire(udp_raw(server, signed))
    assert answer.ednsflags & dns.flags.DO
    unsigned = dns.message.make_query("nodo.example.test", "A", use_edns=0)
    answer = dns.message.from_wire(udp_raw(server, unsigned))
    assert answer.edns == 0
    assert not answer.ednsflags & dns.flags.DO
    assert [(q.name, q.do) for q in upstream.queries] == [
        ("do.example.test", True),
        ("nodo.example.test", False),
    ]
    # Upstream always gets our OPT, whatever the client sent.
    assert all(q.edns and q.payload == OUR_PAYLOAD for q in upstream.queries)


def test_big_answer_without_edns_is_truncated_to_512(start_server, upstream):
    upstream.set_big_txt("big.example.test", BIG)
    server = start_server()
    query = dns.message.make_query("Big.Example.TEST", "TXT")
    data = udp_raw(server, query)
    assert len(data) <= 512
    answer = dns.message.from_wire(data)
    assert answer.id == query.id
    assert answer.flags & dns.flags.TC
    assert answer.rcode() == dns.rcode.NOERROR
    assert answer.question[0].name.to_text() == "Big.Example.TEST."
    assert answer.question[0].rdtype == dns.rdatatype.TXT
    assert header_counts(data) == (1, 0, 0, 0)
    assert answer.edns == -1


def test_big_answer_over_edns_1232_is_truncated(start_server, upstream):
    upstream.set_big_txt("big1232.example.test", BIG)
    server = start_server()
    query = dns.message.make_query("big1232.example.test", "TXT", use_edns=0, payload=1232)
    data = udp_raw(server, query)
    assert len(data) <= 1232
    answer = dns.message.from_wire(data)
    assert answer.flags & dns.flags.TC
    assert answer.edns == 0
    assert len(answer.question) == 1
    assert answer.answer == []


def test_tcp_client_gets_the_full_answer_the_server_fetched_over_tcp(start_server, upstream):
    upstream.set_big_txt("bigtcp.example.test", BIG)
    server = start_server()
    answer = ask(server, "bigtcp.example.test", "TXT", tcp=True)
    assert not has_flag(answer, "TC")
    assert txt_size(answer) > BIG
    # Upstream's UDP answer was truncated, so the server asked again over TCP itself.
    assert [q.transport for q in upstream.queries_for("bigtcp.example.test")] == ["udp", "tcp"]


def test_udp_truncation_then_tcp_retry_uses_the_cached_full_answer(start_server, upstream):
    upstream.set_big_txt("retry.example.test", BIG)
    server = start_server()
    truncated = ask(server, "retry.example.test", "TXT")
    assert has_flag(truncated, "TC")
    full = ask(server, "retry.example.test", "TXT", tcp=True)
    assert not has_flag(full, "TC")
    assert txt_size(full) > BIG
    assert [q.transport for q in upstream.queries_for("retry.example.test")] == ["udp", "tcp"]


def test_edns_payload_below_512_is_treated_as_512(start_server, upstream):
    # About 450 bytes on the wire: over the 100 the client claims, under 512.
    upstream.set_records("medium.example.test", "TXT", ['"' + "a" * 200 + '" "' + "b" * 200 + '"'])
    server = start_server()
    query = dns.message.make_query("medium.example.test", "TXT", use_edns=0, payload=100)
    data = udp_raw(server, query)
    assert 100 < len(data) <= 512
    answer = dns.message.from_wire(data)
    assert not answer.flags & dns.flags.TC
    assert txt_size(answer) == 400


def test_small_answer_is_not_truncated_without_edns(start_server, upstream):
    server = start_server()
    answer = ask(server, "small.example.test", edns=False)
    assert not has_flag(answer, "TC")
    assert [str(r.address) for r in answer.answer[0]] == [DEFAULT_A]
