"""Malformed and unsupported queries (RFC 1035, RFC 6891): dropped when they cannot be
answered at all, FORMERR / NOTIMP / REFUSED otherwise, never forwarded."""

from __future__ import annotations

import socket
import struct

import dns.message
import dns.opcode
import dns.rcode
import dns.update
import pytest

from tests.fakes.upstream import DEFAULT_A
from tests.support import RunningServer, ask

READ_TIMEOUT = 3.0
# How long to wait to conclude that no answer is coming.
SILENCE = 0.3
DROPPED = "aiwall_dropped_packets_total"

QUESTION = b"\x07example\x04test\x00" + struct.pack("!HH", 1, 1)  # example.test A IN


def header(ident: int = 0x4242, flags: int = 0x0100, qd: int = 1, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, 0, 0, ar)


def opt(payload: int = 1232) -> bytes:
    return b"\x00" + struct.pack("!HHIH", 41, payload, 0, 0)


def send(server: RunningServer, data: bytes, timeout: float = READ_TIMEOUT) -> bytes | None:
    """One datagram out, the answer back; None when nothing came within ``timeout``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, (server.host, server.port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def answer_to(server: RunningServer, data: bytes) -> tuple[int, int, bytes]:
    """(ID, rcode, raw) of the answer: read from the header, whatever the opcode."""
    raw = send(server, data)
    assert raw is not None, "no answer"
    ident, flags = struct.unpack_from("!HH", raw)
    assert flags & 0x8000, "QR not set"
    return ident, flags & 0x000F, raw


def response_packet() -> bytes:
    query = dns.message.make_query("qr.example.test", "A")
    return dns.message.make_response(query).to_wire()


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(b"\x12\x34garbage", id="shorter-than-header"),
        pytest.param(b"", id="empty"),
        pytest.param(response_packet(), id="qr-set"),
    ],
)
def test_unanswerable_packets_are_dropped_and_counted(start_server, upstream, packet):
    server = start_server()
    assert send(server, packet, timeout=SILENCE) is None
    assert server.metric(DROPPED, protocol="udp", reason="unparsable") == 1
    # The listener is fine afterwards.
    answer = ask(server, "after-drop.example.test")
    assert str(answer.answer[0][0].address) == DEFAULT_A
    assert upstream.answer_count("after-drop.example.test") == 1
    assert len(upstream.queries) == 1


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(header(qd=0), id="qdcount-0"),
        pytest.param(header(qd=2) + QUESTION + QUESTION, id="qdcount-2"),
        pytest.param(header(ar=2) + QUESTION + opt() + opt(), id="two-opt"),
        pytest.param(header() + b"\xc0\x0c" + struct.pack("!HH", 1, 1), id="pointer-in-question"),
        pytest.param(header() + b"\x07example\x04te", id="question-cut-short"),
        pytest.param(header(ar=1) + QUESTION + opt()[:5], id="opt-cut-short"),
    ],
)
def test_malformed_queries_get_formerr(start_server, upstream, packet):
    server = start_server()
    ident, rcode, _ = answer_to(server, packet)
    assert ident == 0x4242
    assert rcode == dns.rcode.FORMERR
    assert upstream.queries == []


def test_formerr_keeps_a_readable_question(start_server, upstream):
    server = start_server()
    packet = header(ar=2) + QUESTION + opt() + opt()
    _, rcode, raw = answer_to(server, packet)
    assert rcode == dns.rcode.FORMERR
    answer = dns.message.from_wire(raw)
    assert answer.question[0].name.to_text() == "example.test."
    # Two OPTs: which one would we believe? Neither, so no OPT back.
    assert answer.edns == -1


@pytest.mark.parametrize("opcode", [dns.opcode.NOTIFY, dns.opcode.UPDATE])
def test_unsupported_opcodes_get_notimp(start_server, upstream, opcode):
    server = start_server()
    if opcode == dns.opcode.UPDATE:
        message: dns.message.Message = dns.update.UpdateMessage("example.test", id=0x4242)
    else:
        message = dns.message.make_query("example.test", "SOA", id=0x4242)
        message.set_opcode(opcode)
    ident, rcode, raw = answer_to(server, message.to_wire())
    assert ident == 0x4242
    assert rcode == dns.rcode.NOTIMP
    assert (struct.unpack_from("!H", raw, 2)[0] >> 11) & 0xF == opcode
    assert upstream.queries == []


@pytest.mark.parametrize(
    ("name", "rdtype", "rdclass"),
    [
        ("version.bind", "TXT", "CH"),
        ("example.test", "A", "ANY"),
        ("example.test", "AXFR", "IN"),
        ("example.test", "IXFR", "IN"),
    ],
)
def test_unsupported_questions_are_refused(start_server, upstream, name, rdtype, rdclass):
    server = start_server()
    query = dns.message.make_query(name, rdtype, rdclass, use_edns=0)
    answer = dns.message.from_wire(answer_to(server, query.to_wire())[2])
    assert answer.rcode() == dns.rcode.REFUSED
    assert answer.answer == []
    assert answer.question[0].name.to_text() == name + "."
    assert upstream.queries == []


def test_axfr_over_tcp_is_refused(start_server, upstream):
    server = start_server()
    answer = ask(server, "example.test", "AXFR", tcp=True)
    assert answer.rcode() == dns.rcode.REFUSED
    assert upstream.queries == []


def test_qtype_opt_in_the_question_gets_formerr(start_server, upstream):
    server = start_server()
    packet = header() + b"\x07example\x04test\x00" + struct.pack("!HH", 41, 1)
    assert answer_to(server, packet)[1] == dns.rcode.FORMERR
    assert upstream.queries == []
