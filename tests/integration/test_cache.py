"""The answer cache (RFC 1035 7.4, RFC 2308): hits, TTLs counting down, negative
caching, LRU eviction, caps, and keys that keep DNSSEC-aware clients apart."""

from __future__ import annotations

import socket
import time

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from resolver.handlers.cache import AnswerCache
from tests.fakes.upstream import DEFAULT_A, DEFAULT_TTL
from tests.support import RunningServer, ask

READ_TIMEOUT = 3.0
# Just over one second: the cache counts TTLs in whole seconds.
TICK = 1.1


def ttl_of(answer: dns.message.Message) -> int:
    return int(answer.answer[0].ttl)


def soa_ttl(answer: dns.message.Message) -> int:
    (soa,) = [r for r in answer.authority if r.rdtype == dns.rdatatype.SOA]
    return int(soa.ttl)


def udp_raw(server: RunningServer, query: dns.message.Message) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(READ_TIMEOUT)
        sock.sendto(query.to_wire(), (server.host, server.port))
        return sock.recv(65535)


def test_second_identical_query_is_served_from_cache(start_server, upstream):
    server = start_server()
    first = ask(server, "hit.example.test")
    second = ask(server, "hit.example.test")
    assert ttl_of(first) == DEFAULT_TTL
    assert str(second.answer[0][0].address) == DEFAULT_A
    assert upstream.answer_count("hit.example.test") == 1
    assert server.metric("aiwall_cache_hits_total") == 1
    assert server.metric("aiwall_responses_total", outcome="cached", rcode="NOERROR") == 1


def test_cached_ttl_counts_down(start_server, upstream):
    server = start_server()
    first = ask(server, "ttl.example.test")
    time.sleep(TICK)
    later = ask(server, "ttl.example.test")
    assert ttl_of(later) < ttl_of(first)
    assert ttl_of(later) >= DEFAULT_TTL - 3
    assert upstream.answer_count("ttl.example.test") == 1


def test_cache_key_ignores_case_but_each_client_gets_its_own(start_server, upstream):
    server = start_server()
    asked = ["Case.Example.TEST", "cAsE.eXaMpLe.test", "case.example.test"]
    for name in asked:
        query = dns.message.make_query(name, "A", use_edns=0)
        sent = query.to_wire()
        data = udp_raw(server, query)
        question_end = len(sent) - 11  # everything before our OPT record
        assert data[12:question_end] == sent[12:question_end]
        answer = dns.message.from_wire(data)
        assert answer.question[0].name.to_text() == name + "."
        # The owner name is a pointer to the question, so it reads as asked too.
        assert answer.answer[0].name.to_text() == name + "."
        assert str(answer.answer[0][0].address) == DEFAULT_A
    assert upstream.answer_count("case.example.test") == 1


@pytest.mark.parametrize(("soa_ttl_value", "minimum"), [(300, 1), (1, 300)])
def test_nxdomain_is_cached_for_the_smaller_of_soa_ttl_and_minimum(
    start_server, upstream, soa_ttl_value, minimum
):
    name = f"nx-{soa_ttl_value}-{minimum}.example.test"
    upstream.set_rcode(name, "NXDOMAIN")
    upstream.set_soa(name, ttl=soa_ttl_value, minimum=minimum)
    server = start_server()
    assert ask(server, name).rcode() == dns.rcode.NXDOMAIN
    assert ask(server, name).rcode() == dns.rcode.NXDOMAIN
    assert upstream.answer_count(name) == 1
    time.sleep(TICK)
    assert ask(server, name).rcode() == dns.rcode.NXDOMAIN
    assert upstream.answer_count(name) == 2


def test_nxdomain_is_cached_for_the_soa_negative_ttl(start_server, upstream):
    upstream.set_rcode("nxlong.example.test", "NXDOMAIN")
    upstream.set_soa("nxlong.example.test", ttl=300, minimum=60)
    server = start_server()
    ask(server, "nxlong.example.test")
    cached = ask(server, "nxlong.example.test")
    assert cached.rcode() == dns.rcode.NXDOMAIN
    assert upstream.answer_count("nxlong.example.test") == 1
    # RFC 2308 5: what a cache hands on counts down from the negative TTL, not the SOA's.
    assert soa_ttl(cached) <= 60


@pytest.mark.parametrize("kind", ["nxdomain", "nodata"])
def test_negative_answers_are_capped_by_max_negative_ttl(start_server, upstream, kind):
    name = f"cap-{kind}.example.test"
    if kind == "nxdomain":
        upstream.set_rcode(name, "NXDOMAIN")
    else:
        upstream.set_records(name, "A", [])  # NOERROR, no answer, SOA in authority
    upstream.set_soa(name, ttl=300, minimum=300)
    server = start_server(cache={"max_negative_ttl": 1})
    first = ask(server, name)
    assert first.answer == []
    cached = ask(server, name)
    assert cached.rcode() == first.rcode()
    assert upstream.answer_count(name) == 1
    # Clients downstream must not keep it longer than we do.
    assert soa_ttl(cached) <= 1
    time.sleep(TICK)
    assert ask(server, name).rcode() == first.rcode()
    assert upstream.answer_count(name) == 2


def test_servfail_is_not_cached(start_server, upstream):
    upstream.set_rcode("broken.example.test", "SERVFAIL")
    server = start_server()
    for _ in range(2):
        assert ask(server, "broken.example.test").rcode() == dns.rcode.SERVFAIL
    assert upstream.answer_count("broken.example.test") == 2
    assert server.metric("aiwall_cache_hits_total") == 0


def test_lru_eviction_keeps_the_recently_used(start_server, upstream):
    # Room for two answers of this size (an A record for an x.example.test name), not three.
    one = AnswerCache.cost(b"\0" * 48)
    server = start_server(cache={"max_bytes": 2 * one + one // 2})
    ask(server, "a.example.test")
    ask(server, "b.example.test")
    ask(server, "a.example.test")  # a is now more recent than b
    assert server.metric("aiwall_cache_evictions_total") == 0
    ask(server, "c.example.test")  # evicts b
    assert server.metric("aiwall_cache_evictions_total") == 1
    assert server.metric("aiwall_cache_entries") == 2
    ask(server, "a.example.test")
    ask(server, "c.example.test")
    assert upstream.answer_count("a.example.test") == 1
    assert upstream.answer_count("c.example.test") == 1
    ask(server, "b.example.test")
    assert upstream.answer_count("b.example.test") == 2


def test_max_ttl_caps_served_ttls_and_lifetime(start_server, upstream):
    server = start_server(cache={"max_ttl": 1})
    ask(server, "capped.example.test")
    cached = ask(server, "capped.example.test")
    assert ttl_of(cached) <= 1
    assert upstream.answer_count("capped.example.test") == 1
    time.sleep(TICK)
    ask(server, "capped.example.test")
    assert upstream.answer_count("capped.example.test") == 2


def test_answer_for_do0_client_is_not_served_to_do1_client(start_server, upstream):
    server = start_server()

    def query(want_dnssec: bool) -> dns.message.Message:
        message = dns.message.make_query(
            "dnssec.example.test", "A", use_edns=0, want_dnssec=want_dnssec
        )
        return dns.message.from_wire(udp_raw(server, message))

    query(False)
    query(True)
    assert [q.do for q in upstream.queries_for("dnssec.example.test")] == [False, True]
    # Each kind of client then has its own entry.
    query(False)
    query(True)
    assert upstream.answer_count("dnssec.example.test") == 2
