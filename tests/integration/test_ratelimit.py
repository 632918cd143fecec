"""Floods and amplification: per-prefix rate limiting with TC slip, minimal ANY
(RFC 8482), and answers to strangers no bigger than their queries."""

from __future__ import annotations

import socket

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from tests.support import RunningServer, ask

READ_TIMEOUT = 3.0
# Small, so a test floods past it with a few dozen packets.
LIMITS = {"rate": 5, "burst": 10, "slip": 2}


def flood(server: RunningServer, queries: list[bytes], source: str = "127.0.0.1") -> list[bytes]:
    """Send every query from one socket, then collect whatever comes back."""
    answers: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        for data in queries:
            sock.sendto(data, (server.host, server.port))
        sock.settimeout(0.5)
        try:
            while True:
                answers.append(sock.recv(65535))
        except TimeoutError:
            pass
    return answers


def queries(name: str, count: int, rdtype: str = "A", edns: bool = True) -> list[bytes]:
    return [
        dns.message.make_query(f"{name}", rdtype, use_edns=0 if edns else False).to_wire()
        for _ in range(count)
    ]


def test_a_flood_from_one_prefix_is_cut_to_its_budget_with_tc_slips(start_server, upstream):
    server = start_server(ratelimit=LIMITS)
    sent = queries("chat.deepseek.com", 40)
    answers = [dns.message.from_wire(data) for data in flood(server, sent)]
    truncated = [a for a in answers if a.flags & dns.flags.TC]
    full = [a for a in answers if not a.flags & dns.flags.TC]
    # The burst (plus what refills during the send) is answered; beyond it every second
    # answer goes out truncated and the rest are dropped.
    assert 10 <= len(full) <= 14
    assert len(truncated) >= 10
    assert len(answers) < len(sent)
    dropped = server.metric("aiwall_ratelimited_total", action="dropped")
    slipped = server.metric("aiwall_ratelimited_total", action="truncated")
    assert slipped == len(truncated)
    assert dropped + slipped + len(full) == len(sent)
    assert server.metric("aiwall_responses_total", outcome="dropped") == dropped


def test_other_prefixes_and_tcp_are_unaffected(start_server, upstream):
    server = start_server(ratelimit=LIMITS)
    flood(server, queries("flooded.example.test", 60))
    # 127.0.1.1 is another /24 on the same loopback.
    assert ask(server, "other.example.test", source="127.0.1.1").rcode() == dns.rcode.NOERROR
    # The flooding prefix itself still gets through over TCP.
    assert ask(server, "flooded.example.test", tcp=True).rcode() == dns.rcode.NOERROR


def test_a_real_client_behind_a_limited_prefix_gets_through_by_retrying_over_tcp(
    start_server, upstream
):
    # Hardly any refill, so the victim's query is over the limit whenever it comes.
    server = start_server(ratelimit={"rate": 0.01, "burst": 10, "slip": 1})
    flood(server, queries("busy.example.test", 30))
    query = dns.message.make_query("victim.example.test", "A")
    answer, used_tcp = dns.query.udp_with_fallback(
        query, server.host, port=server.port, timeout=READ_TIMEOUT
    )
    assert used_tcp
    assert answer.rcode() == dns.rcode.NOERROR
    assert answer.answer


def test_any_gets_a_minimal_hinfo_answer_and_never_goes_upstream(start_server, upstream):
    server = start_server()
    for tcp in (False, True):
        answer = ask(server, "big.example.test", "ANY", tcp=tcp)
        assert answer.rcode() == dns.rcode.NOERROR
        (rrset,) = answer.answer
        assert rrset.rdtype == dns.rdatatype.HINFO
        assert rrset[0].cpu == b"RFC8482"
    assert upstream.queries == []
    assert server.metric("aiwall_responses_total", outcome="synthesized") == 2


def test_a_blocked_name_stays_blocked_for_any(start_server, upstream):
    server = start_server()
    answer = ask(server, "chat.deepseek.com", "ANY")
    assert answer.rcode() == dns.rcode.NXDOMAIN
    assert [e.code for e in answer.extended_errors()] == [15]


def ratio(answers: list[bytes], sent: list[bytes]) -> float:
    return sum(map(len, answers)) / sum(map(len, sent))


def test_amplification_is_bounded_for_any(start_server, upstream):
    # The fake would answer ANY with whatever it holds; we never ask it.
    upstream.set_big_txt("amplify.example.test", 3000)
    server = start_server()
    for edns in (True, False):
        sent = queries("amplify.example.test", 50, "ANY", edns=edns)
        answers = flood(server, sent)
        assert len(answers) == len(sent)
        assert ratio(answers, sent) < 2.0


def test_amplification_is_bounded_for_strangers(start_server, upstream):
    # 127.0.0.2 stands for a spoofed victim outside the office: it is refused.
    server = start_server(access={"allow": ["127.0.0.1/32"]})
    for rdtype in ("ANY", "TXT", "A"):
        sent = queries("a.example.test", 50, rdtype)
        answers = flood(server, sent, source="127.0.0.2")
        assert {dns.message.from_wire(a).rcode() for a in answers} == {dns.rcode.REFUSED}
        assert ratio(answers, sent) < 2.0
    assert upstream.queries == []
    assert server.metric("aiwall_access_refused_total") == 150


def test_a_limited_flood_reflects_less_than_it_receives(start_server, upstream):
    upstream.set_big_txt("reflect.example.test", 1000)
    server = start_server(ratelimit=LIMITS)
    ask(server, "reflect.example.test", "TXT", tcp=True)  # cached, big answer
    sent = queries("reflect.example.test", 1000, "TXT")
    answers = flood(server, sent)
    # The burst's full-size answers, then truncated ones no bigger than the queries.
    assert ratio(answers, sent) < 1.0
