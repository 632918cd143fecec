"""Upstream faults: a dead upstream is skipped for a back-off instead of costing every
query a timeout; with all of them down, known names are served stale (RFC 8767) and
unknown ones get SERVFAIL; broken upstream answers are rejected and counted."""

from __future__ import annotations

import concurrent.futures
import socket
import struct
import time
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest

from tests.fakes.upstream import DEFAULT_A, FakeUpstream
from tests.peers.wait import wait_until
from tests.support import ask

SECOND_A = "192.0.2.2"
STALE_EDE = dns.edns.EDECode.STALE_ANSWER


def ede_codes(answer: dns.message.Message) -> list[int]:
    return [e.code for e in answer.extended_errors()]


def addresses(answer: dns.message.Message) -> list[str]:
    return [str(rdata.address) for rrset in answer.answer for rdata in rrset if rrset.rdtype == 1]


@pytest.fixture
def second():
    with FakeUpstream() as fake:
        yield fake
        assert fake.errors == []


def test_a_dead_upstream_is_out_once_our_own_probe_fails(start_server, upstream, second):
    upstream.set_silent()
    for index in range(6):
        second.set_records(f"n{index}.example.test", "A", [SECOND_A])
    server = start_server(upstreams=[upstream.server_spec, second.server_spec])
    label = upstream.server_spec
    # The first client question pays the timeout, and makes the upstream suspect.
    assert addresses(ask(server, "n0.example.test")) == [SECOND_A]
    # The server's own probe (the root NS set) decides, once.
    wait_until(lambda: server.metric("aiwall_upstream_up", upstream=label) == 0)
    assert server.metric("aiwall_upstream_probes_total", upstream=label, result="dead") == 1
    assert upstream.answer_count("") >= 1
    # From now on the first is not asked at all, and costs no timeout.
    for index in range(1, 6):
        started = time.monotonic()
        assert addresses(ask(server, f"n{index}.example.test")) == [SECOND_A]
        assert time.monotonic() - started < 0.3
        assert upstream.answer_count(f"n{index}.example.test") == 0
    assert server.metric("aiwall_upstream_skipped_total", upstream=label) == 5
    assert server.metric("aiwall_upstream_errors_total", upstream=label, reason="timeout") == 1
    # Back as soon as a probe finds it answering again.
    upstream.reset()
    wait_until(lambda: server.metric("aiwall_upstream_up", upstream=label) == 1, timeout=8)
    assert addresses(ask(server, "back.example.test")) == [DEFAULT_A]


def test_a_flood_of_unanswerable_names_does_not_take_a_healthy_upstream_out(
    start_server, upstream, second
):
    # Names whose own servers are dead time out at a healthy upstream: that upstream
    # still answers everything else, and must stay in use for every other client.
    for index in range(30):
        upstream.set_silent(f"dead{index}.example.test")
    server = start_server(upstreams=[upstream.server_spec, second.server_spec])
    label = upstream.server_spec
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda i: ask(server, f"dead{i}.example.test"), range(30)))
    assert server.metric("aiwall_upstream_up", upstream=label) == 1
    assert server.metric("aiwall_upstream_probes_total", upstream=label, result="dead") == 0
    # Probes, not client questions, decided: a handful for 30 failures.
    assert 1 <= server.metric("aiwall_upstream_probes_total", upstream=label, result="alive") <= 3
    assert addresses(ask(server, "healthy.example.test")) == [DEFAULT_A]
    assert upstream.answer_count("healthy.example.test") == 1
    assert server.metric("aiwall_upstream_skipped_total", upstream=label) == 0


def test_a_refused_upstream_fails_over_in_milliseconds(start_server, second):
    # Nothing listens on the first: the kernel answers with ICMP port unreachable, which
    # the connected upstream socket reports at once (no 2-second timeout).
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    dead = f"127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    second.set_records("fast.example.test", "A", [SECOND_A])
    server = start_server(upstreams=[dead, second.server_spec], upstream={"timeout": 2.0})
    started = time.monotonic()
    assert addresses(ask(server, "fast.example.test")) == [SECOND_A]
    assert time.monotonic() - started < 0.5
    assert server.metric("aiwall_upstream_errors_total", upstream=dead, reason="network") == 1


def test_all_down_serves_stale_answers_with_ttl_30_and_ede_3(start_server, upstream):
    upstream.set_records("known.example.test", "A", ["192.0.2.55"], ttl=1)
    server = start_server()
    assert addresses(ask(server, "known.example.test")) == ["192.0.2.55"]
    upstream.set_silent()
    time.sleep(1.1)  # the TTL runs out
    stale = ask(server, "known.example.test")
    assert stale.rcode() == dns.rcode.NOERROR
    assert addresses(stale) == ["192.0.2.55"]
    assert stale.answer[0].ttl == 30
    assert ede_codes(stale) == [STALE_EDE]
    # Without EDNS the same answer, without the EDE (no OPT to carry it).
    plain = ask(server, "known.example.test", edns=False)
    assert addresses(plain) == ["192.0.2.55"]
    assert plain.edns < 0
    # A name never seen: SERVFAIL, never a made-up answer.
    unknown = ask(server, "never-seen.example.test")
    assert unknown.rcode() == dns.rcode.SERVFAIL
    assert ede_codes(unknown) == [dns.edns.EDECode.NO_REACHABLE_AUTHORITY]
    assert server.metric("aiwall_responses_total", outcome="stale", rcode="NOERROR") == 2
    # The dead upstream was asked once for the stale name, not once per query (RFC 8767 5).
    assert upstream.answer_count("known.example.test") == 2


def test_a_slow_upstream_gets_the_client_a_stale_answer_then_refreshes_the_cache(
    start_server, upstream
):
    upstream.set_records("slow.example.test", "A", ["192.0.2.56"], ttl=1)
    server = start_server(cache={"stale_client_timeout": 0.2}, upstream={"timeout": 3})
    ask(server, "slow.example.test")
    time.sleep(1.1)
    upstream.set_records("slow.example.test", "A", ["192.0.2.57"], ttl=300)
    upstream.set_delay("slow.example.test", 1.0)  # answers, but after the client timer
    first = ask(server, "slow.example.test", timeout=5)
    assert addresses(first) == ["192.0.2.56"]
    assert ede_codes(first) == [STALE_EDE]
    assert upstream.wait_for_queries(2, name="slow.example.test")
    time.sleep(1.2)  # the upstream answer arrives and goes into the cache
    fresh = ask(server, "slow.example.test")
    assert addresses(fresh) == ["192.0.2.57"]
    assert ede_codes(fresh) == []
    assert upstream.answer_count("slow.example.test") == 2


def test_stale_stops_after_max_stale(start_server, upstream):
    upstream.set_records("brief.example.test", "A", ["192.0.2.58"], ttl=1)
    server = start_server(cache={"max_stale": 1})
    ask(server, "brief.example.test")
    upstream.set_silent()
    time.sleep(2.2)  # TTL 1 s plus 1 s of stale window
    assert ask(server, "brief.example.test").rcode() == dns.rcode.SERVFAIL


def test_a_blocked_name_is_never_answered_from_the_stale_cache(start_server, upstream, tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("placeholder.test\n")
    upstream.set_records("soon-banned.example.test", "A", ["192.0.2.60"], ttl=1)
    upstream.set_records("alias.example.test", "CNAME", ["target.banned.test."], ttl=1)
    upstream.set_records("target.banned.test", "A", ["192.0.2.61"], ttl=1)
    server = start_server(blocking={"lists": [str(extra)]})
    assert addresses(ask(server, "soon-banned.example.test")) == ["192.0.2.60"]
    assert addresses(ask(server, "alias.example.test")) == ["192.0.2.61"]
    upstream.set_silent()
    extra.write_text("soon-banned.example.test\nbanned.test\n")
    assert server.call(server.server.reload(), timeout=30)[0] is True
    time.sleep(1.1)
    for name in ("soon-banned.example.test", "alias.example.test"):
        answer = ask(server, name)
        assert answer.rcode() == dns.rcode.NXDOMAIN, name
        assert ede_codes(answer) == [dns.edns.EDECode.BLOCKED], name
    assert server.metric("aiwall_responses_total", outcome="stale") == 0


class _BrokenTcp(FakeUpstream):
    """Answers UDP with TC set, and TCP with an answer broken in a chosen way."""

    def __init__(self, breakage: str) -> None:
        super().__init__()
        self.breakage = breakage

    @staticmethod
    def _build_response(query: dns.message.Message, behaviour: Any) -> dns.message.Message:
        return FakeUpstream._build_response(query, behaviour)

    def _on_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.TC
        assert self._udp_transport is not None
        self._udp_transport.sendto(response.to_wire(), addr)

    async def _answer_tcp(self, query, behaviour, writer, write_lock) -> None:
        response = self._build_response(query, behaviour)
        if self.breakage == "wrong_id":
            response.id = (query.id + 1) & 0xFFFF
        elif self.breakage == "truncated":
            response.flags |= dns.flags.TC
        elif self.breakage == "wrong_question":
            response = dns.message.make_response(dns.message.make_query("other.test", "A"))
            response.id = query.id
        wire = response.to_wire()
        if self.breakage == "malformed":
            wire = wire[:-3]
        async with write_lock:
            writer.write(struct.pack("!H", len(wire)) + wire)
            await writer.drain()


@pytest.mark.parametrize("breakage", ["wrong_id", "wrong_question", "truncated", "malformed"])
def test_broken_tcp_answers_are_rejected_counted_and_never_served(start_server, upstream, breakage):
    with _BrokenTcp(breakage) as broken:
        server = start_server(upstreams=[broken.server_spec, upstream.server_spec])
        answer = ask(server, "big.example.test")
        assert addresses(answer) == [DEFAULT_A]  # from the second, sound upstream
        rejected = server.metric(
            "aiwall_upstream_rejected_responses_total",
            upstream=broken.server_spec,
            reason=breakage,
        )
        assert rejected == 1
        # Cached is the sound answer, not the broken one.
        assert addresses(ask(server, "big.example.test")) == [DEFAULT_A]
        assert upstream.answer_count("big.example.test") == 1
