"""Tests for the fake upstream resolver used by the integration tests.

The fake is only useful if it behaves exactly as the integration tests assume, so
each behaviour is checked here from the client side with dnspython and raw sockets.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.fakes.upstream import (
    DEFAULT_A,
    DEFAULT_AAAA,
    FORGED_A,
    FakeUpstream,
    Received,
    ipv6_loopback_available,
)

TIMEOUT = 1.0


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream
        # A bug in the fake shows up as a timeout in the test; make the cause visible.
        assert upstream.errors == []


def _udp(fake: FakeUpstream, qname: str, rdtype: str = "A", **kw: object) -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype, **kw)  # type: ignore[arg-type]
    host, port = fake.address
    return dns.query.udp(query, host, port=port, timeout=TIMEOUT)


def _tcp(fake: FakeUpstream, qname: str, rdtype: str = "A", **kw: object) -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype, **kw)  # type: ignore[arg-type]
    host, port = fake.address
    return dns.query.tcp(query, host, port=port, timeout=TIMEOUT)


def _answers(response: dns.message.Message) -> list[tuple[str, str, str]]:
    return [
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rdata.to_text())
        for rrset in response.answer
        for rdata in rrset
    ]


def _recv_frame(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("EOF")
            buf += chunk
        return buf

    (length,) = struct.unpack("!H", exactly(2))
    return exactly(length)


# ------------------------------------------------------------------ lifecycle


def test_start_stop_and_address() -> None:
    upstream = FakeUpstream().start()
    try:
        host, port = upstream.address
        assert host == "127.0.0.1"
        assert port > 0
        assert upstream.server_spec == f"127.0.0.1:{port}"
        assert _answers(_udp(upstream, "x.test."))
        assert _answers(_tcp(upstream, "x.test."))
    finally:
        upstream.stop()
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(dns.message.make_query("x.test.", "A"), host, port=port, timeout=0.2)
    with upstream:
        assert _answers(_udp(upstream, "again.test."))


def test_answers_while_caller_runs_its_own_loop(fake: FakeUpstream) -> None:
    # The server under test may run in the test's loop; the fake must not share it.
    async def ask() -> dns.message.Message:
        host, port = fake.address
        query = dns.message.make_query("loop.test.", "A")
        return await dns.asyncquery.udp(query, host, port=port, timeout=TIMEOUT)

    assert _answers(asyncio.run(ask())) == [("loop.test.", "A", DEFAULT_A)]


# ------------------------------------------------------------------- answers


def test_default_a_and_aaaa(fake: FakeUpstream) -> None:
    response = _udp(fake, "Unknown.Example.")
    assert response.rcode() == dns.rcode.NOERROR
    assert _answers(response) == [("Unknown.Example.", "A", DEFAULT_A)]
    assert response.answer[0].ttl == 300
    assert response.flags & dns.flags.QR
    assert response.flags & dns.flags.RA
    assert response.flags & dns.flags.RD
    assert not response.flags & dns.flags.AA
    assert response.edns < 0

    response = _tcp(fake, "unknown.example.", "AAAA")
    assert _answers(response) == [("unknown.example.", "AAAA", DEFAULT_AAAA)]


def test_other_type_is_nodata_with_soa(fake: FakeUpstream) -> None:
    response = _udp(fake, "a.b.zone.test.", "MX")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    (soa,) = response.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.ttl == 300
    assert soa[0].minimum == 300
    assert soa.name.to_text() == "zone.test."


def test_edns_response_has_payload_1232_and_echoes_do(fake: FakeUpstream) -> None:
    response = _udp(fake, "edns.test.", use_edns=0, payload=4096, want_dnssec=True)
    assert response.edns == 0
    assert response.payload == 1232
    assert response.ednsflags & dns.flags.DO


def test_set_records(fake: FakeUpstream) -> None:
    fake.set_records("Multi.Test.", "A", ["192.0.2.1", "192.0.2.2"], ttl=42)
    fake.set_records("multi.test", "TXT", ['"hello"'])
    response = _udp(fake, "multi.test.")
    assert sorted(_answers(response)) == [
        ("multi.test.", "A", "192.0.2.1"),
        ("multi.test.", "A", "192.0.2.2"),
    ]
    assert response.answer[0].ttl == 42
    assert _answers(_udp(fake, "multi.test.", "TXT")) == [("multi.test.", "TXT", '"hello"')]


def test_empty_records_mean_nodata(fake: FakeUpstream) -> None:
    fake.set_records("v6only.test", "A", [])
    response = _udp(fake, "v6only.test.")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_cname_chain_is_followed(fake: FakeUpstream) -> None:
    fake.set_records("tracker.cloak.test", "CNAME", ["mid.cloak.test."])
    fake.set_records("mid.cloak.test", "CNAME", ["chat.deepseek.com."])
    response = _udp(fake, "tracker.cloak.test.")
    assert _answers(response) == [
        ("tracker.cloak.test.", "CNAME", "mid.cloak.test."),
        ("mid.cloak.test.", "CNAME", "chat.deepseek.com."),
        ("chat.deepseek.com.", "A", DEFAULT_A),
    ]
    # Asking for the CNAME itself stops at the first hop.
    assert _answers(_udp(fake, "tracker.cloak.test.", "CNAME")) == [
        ("tracker.cloak.test.", "CNAME", "mid.cloak.test.")
    ]


def test_cname_to_programmed_target(fake: FakeUpstream) -> None:
    fake.set_records("alias.test", "CNAME", ["real.test."])
    fake.set_records("real.test", "AAAA", ["2001:db8::99"])
    assert _answers(_udp(fake, "alias.test.", "AAAA")) == [
        ("alias.test.", "CNAME", "real.test."),
        ("real.test.", "AAAA", "2001:db8::99"),
    ]


def test_cname_to_nxdomain_keeps_chain(fake: FakeUpstream) -> None:
    fake.set_records("alias.test", "CNAME", ["dead.test"])  # no trailing dot: still absolute
    fake.set_rcode("dead.test", "NXDOMAIN")
    response = _udp(fake, "alias.test.")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert _answers(response) == [("alias.test.", "CNAME", "dead.test.")]
    assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_cname_loop_is_servfail(fake: FakeUpstream) -> None:
    fake.set_records("loop1.test", "CNAME", ["loop2.test."])
    fake.set_records("loop2.test", "CNAME", ["loop1.test."])
    assert _udp(fake, "loop1.test.").rcode() == dns.rcode.SERVFAIL


def test_nxdomain_with_soa(fake: FakeUpstream) -> None:
    fake.set_rcode("gone.example.test", "NXDOMAIN")
    response = _udp(fake, "gone.example.test.")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.answer == []
    (soa,) = response.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name.to_text() == "example.test."
    assert soa[0].minimum == 300


def test_nxdomain_soa_can_be_tuned(fake: FakeUpstream) -> None:
    fake.set_rcode("gone.test", "NXDOMAIN")
    fake.set_soa("gone.test", ttl=120, minimum=30)
    (soa,) = _udp(fake, "gone.test.").authority
    assert soa.ttl == 120
    assert soa[0].minimum == 30


@pytest.mark.parametrize("rcode", ["SERVFAIL", "REFUSED"])
def test_error_rcodes(fake: FakeUpstream, rcode: str) -> None:
    fake.set_rcode("broken.test", rcode)
    response = _tcp(fake, "broken.test.")
    assert response.rcode() == dns.rcode.from_text(rcode)
    assert response.answer == []
    assert response.authority == []


# ---------------------------------------------------------- timing behaviour


def test_delay_does_not_block_other_udp_queries(fake: FakeUpstream) -> None:
    fake.set_delay("slow.test", 0.3)
    result: dict[str, float] = {}

    def slow() -> None:
        _udp(fake, "slow.test.")
        result["slow"] = time.monotonic()

    start = time.monotonic()
    thread = threading.Thread(target=slow)
    thread.start()
    assert fake.wait_for_queries(1, name="slow.test")
    _udp(fake, "fast.test.")
    result["fast"] = time.monotonic()
    thread.join()
    assert result["fast"] < result["slow"]
    assert result["slow"] - start >= 0.3


@pytest.mark.parametrize("setter", ["set_delay", "set_late"])
def test_tcp_pipelining_answers_as_completed(fake: FakeUpstream, setter: str) -> None:
    getattr(fake, setter)("slow.test", 0.2)
    slow = dns.message.make_query("slow.test.", "A")
    fast = dns.message.make_query("fast.test.", "A")
    slow.id, fast.id = 1111, 2222
    with socket.create_connection(fake.address, timeout=TIMEOUT) as sock:
        sock.sendall(slow.to_wire(prepend_length=True) + fast.to_wire(prepend_length=True))
        first = dns.message.from_wire(_recv_frame(sock))
        second = dns.message.from_wire(_recv_frame(sock))
    assert (first.id, second.id) == (2222, 1111)
    assert [r.transport for r in fake.queries] == ["tcp", "tcp"]
    # Both came in on the same connection.
    assert fake.queries[0].source == fake.queries[1].source


def test_tcp_answers_pending_queries_after_half_close(fake: FakeUpstream) -> None:
    fake.set_delay("slow.test", 0.1)
    query = dns.message.make_query("slow.test.", "A")
    with socket.create_connection(fake.address, timeout=TIMEOUT) as sock:
        sock.sendall(query.to_wire(prepend_length=True))
        sock.shutdown(socket.SHUT_WR)
        assert dns.message.from_wire(_recv_frame(sock)).id == query.id
        assert sock.recv(1) == b""  # closed after EOF


def test_silent_name_times_out(fake: FakeUpstream) -> None:
    fake.set_silent("blackhole.test")
    query = dns.message.make_query("blackhole.test.", "A")
    host, port = fake.address
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(query, host, port=port, timeout=0.2)
    assert _answers(_udp(fake, "other.test."))
    assert fake.answer_count("blackhole.test") == 1


def test_silent_everything(fake: FakeUpstream) -> None:
    fake.set_silent()
    host, port = fake.address
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(dns.message.make_query("a.test.", "A"), host, port=port, timeout=0.2)
    with pytest.raises(dns.exception.Timeout):
        dns.query.tcp(dns.message.make_query("b.test.", "A"), host, port=port, timeout=0.2)
    assert [q.name for q in fake.queries] == ["a.test", "b.test"]


def test_stop_with_open_connections_and_pending_answers() -> None:
    upstream = FakeUpstream().start()
    upstream.set_delay("slow.test", 5.0)
    query = dns.message.make_query("slow.test.", "A")
    with socket.create_connection(upstream.address, timeout=TIMEOUT) as sock:
        sock.sendall(query.to_wire(prepend_length=True))
        assert upstream.wait_for_queries(1)
        start = time.monotonic()
        upstream.stop()
        assert time.monotonic() - start < 0.5
        assert sock.recv(1) == b""
    assert upstream.errors == []


# ------------------------------------------------------------------ big TXT


def test_big_txt_truncates_over_udp_without_edns(fake: FakeUpstream) -> None:
    fake.set_big_txt("big.test")
    response = _udp(fake, "big.test.", "TXT")
    assert response.flags & dns.flags.TC
    assert response.answer == []
    assert response.question[0].name.to_text() == "big.test."


def test_big_txt_truncates_when_over_edns_payload(fake: FakeUpstream) -> None:
    fake.set_big_txt("big.test", size=1500)
    response = _udp(fake, "big.test.", "TXT", use_edns=0, payload=1232)
    assert response.flags & dns.flags.TC
    assert response.answer == []
    assert response.edns == 0


def test_big_txt_fits_large_edns_payload(fake: FakeUpstream) -> None:
    fake.set_big_txt("big.test", size=1500)
    response = _udp(fake, "big.test.", "TXT", use_edns=0, payload=4096)
    assert not response.flags & dns.flags.TC
    assert len(response.to_wire()) > 1500


def test_big_txt_complete_over_tcp(fake: FakeUpstream) -> None:
    fake.set_big_txt("big.test", size=3000)
    response = _tcp(fake, "big.test.", "TXT", use_edns=0, payload=1232)
    assert not response.flags & dns.flags.TC
    (rrset,) = response.answer
    assert sum(len(s) for s in rrset[0].strings) > 3000


# ----------------------------------------------------------------- forgeries


def _forgery_exchange(
    fake: FakeUpstream, kind: str
) -> tuple[dns.message.Message, bytes, tuple[str, int], bytes, tuple[str, int]]:
    fake.set_forgery("victim.test", kind)
    query = dns.message.make_query("victim.test.", "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(query.to_wire(), fake.address)
        forged, forged_from = sock.recvfrom(65535)
        genuine, genuine_from = sock.recvfrom(65535)
    return query, forged, forged_from, genuine, genuine_from


def _assert_genuine(
    fake: FakeUpstream, query: dns.message.Message, wire: bytes, source: tuple[str, int]
) -> None:
    assert source == fake.address
    response = dns.message.from_wire(wire)
    assert response.id == query.id
    assert _answers(response) == [("victim.test.", "A", DEFAULT_A)]
    assert query.is_response(response)


def test_forgery_wrong_id(fake: FakeUpstream) -> None:
    query, forged, forged_from, genuine, genuine_from = _forgery_exchange(fake, "wrong-id")
    message = dns.message.from_wire(forged)
    assert message.id == (query.id + 1) & 0xFFFF
    assert _answers(message) == [("victim.test.", "A", FORGED_A)]
    assert forged_from == fake.address
    _assert_genuine(fake, query, genuine, genuine_from)


def test_forgery_wrong_question(fake: FakeUpstream) -> None:
    query, forged, forged_from, genuine, genuine_from = _forgery_exchange(fake, "wrong-question")
    message = dns.message.from_wire(forged)
    assert message.id == query.id
    assert message.question[0].name.to_text() == "forged.example."
    assert _answers(message) == [("forged.example.", "A", FORGED_A)]
    assert forged_from == fake.address
    _assert_genuine(fake, query, genuine, genuine_from)


def test_forgery_wrong_source(fake: FakeUpstream) -> None:
    query, forged, forged_from, genuine, genuine_from = _forgery_exchange(fake, "wrong-source")
    message = dns.message.from_wire(forged)
    assert message.id == query.id
    assert _answers(message) == [("victim.test.", "A", FORGED_A)]
    assert forged_from[0] == "127.0.0.1"
    assert forged_from[1] != fake.address[1]
    assert forged_from == fake.forger_address
    _assert_genuine(fake, query, genuine, genuine_from)


def test_forgery_malformed(fake: FakeUpstream) -> None:
    query, forged, forged_from, genuine, genuine_from = _forgery_exchange(fake, "malformed")
    assert len(forged) == 7
    assert forged_from == fake.address
    _assert_genuine(fake, query, genuine, genuine_from)


def test_forgery_truncated_garbage(fake: FakeUpstream) -> None:
    query, forged, forged_from, genuine, genuine_from = _forgery_exchange(fake, "truncated-garbage")
    (msg_id, flags, qdcount, ancount) = struct.unpack("!HHHH", forged[:8])
    assert msg_id == query.id
    assert flags & dns.flags.QR
    assert not flags & dns.flags.TC
    assert (qdcount, ancount) == (1, 1)
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(forged)
    assert forged_from == fake.address
    _assert_genuine(fake, query, genuine, genuine_from)


def test_forgery_is_udp_only(fake: FakeUpstream) -> None:
    fake.set_forgery("victim.test", "wrong-id")
    assert _answers(_tcp(fake, "victim.test.")) == [("victim.test.", "A", DEFAULT_A)]


def test_unknown_forgery_kind_rejected(fake: FakeUpstream) -> None:
    with pytest.raises(ValueError, match="forgery kind"):
        fake.set_forgery("x.test", "bogus")


# ---------------------------------------------------------------- recording


def test_queries_are_recorded(fake: FakeUpstream) -> None:
    udp_query = dns.message.make_query(
        "Rec.Test.", "AAAA", use_edns=0, payload=1400, want_dnssec=True
    )
    host, port = fake.address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        client_port = sock.getsockname()[1]
        dns.query.udp(udp_query, host, port=port, timeout=TIMEOUT, sock=sock)
    tcp_query = dns.message.make_query("rec.test.", "MX")
    dns.query.tcp(tcp_query, host, port=port, timeout=TIMEOUT)

    assert fake.queries[0] == Received(
        name="rec.test",
        rrtype="AAAA",
        transport="udp",
        source=("127.0.0.1", client_port),
        id=udp_query.id,
        edns=True,
        do=True,
        payload=1400,
        raw=udp_query.to_wire(),
    )
    second = fake.queries[1]
    assert (second.name, second.rrtype, second.transport, second.id) == (
        "rec.test",
        "MX",
        "tcp",
        tcp_query.id,
    )
    assert (second.edns, second.do, second.payload) == (False, False, None)
    assert fake.answer_count("rec.test.") == 2
    assert fake.answer_count("REC.TEST") == 2
    assert fake.answer_count("other.test") == 0

    fake.clear()
    assert fake.queries == []
    assert fake.answer_count("rec.test") == 0


def test_garbage_is_recorded_separately(fake: FakeUpstream) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x01\x02\x03", fake.address)
    assert _answers(_udp(fake, "after.test."))
    assert fake.bad_packets == [b"\x01\x02\x03"]
    assert [q.name for q in fake.queries] == ["after.test"]


def test_reset_forgets_behaviour(fake: FakeUpstream) -> None:
    fake.set_rcode("x.test", "NXDOMAIN")
    fake.reset()
    assert _udp(fake, "x.test.").rcode() == dns.rcode.NOERROR


# --------------------------------------------------------------------- IPv6


@pytest.mark.skipif(not ipv6_loopback_available(), reason="::1 not available")
def test_ipv6_host() -> None:
    with FakeUpstream("::1") as upstream:
        host, port = upstream.address
        assert host == "::1"
        assert upstream.server_spec == f"[::1]:{port}"
        query = dns.message.make_query("v6.test.", "A")
        assert _answers(dns.query.udp(query, "::1", port=port, timeout=TIMEOUT))
        assert _answers(dns.query.tcp(query, "::1", port=port, timeout=TIMEOUT))
        assert upstream.queries[0].source[0] == "::1"
