"""Only genuine upstream answers are believed (RFC 5452): forgeries are ignored and
counted, and the server keeps waiting for the real answer."""

from __future__ import annotations

import socket

import dns.message
import dns.rcode
import pytest

from resolver.upstream.udp import MAX_USES
from tests.fakes.upstream import DEFAULT_A, FORGED_A, FakeUpstream
from tests.support import RunningServer, ask

READ_TIMEOUT = 3.0
TIMEOUT = 0.5  # the harness's upstream timeout
LATE = 0.8  # past the upstream timeout
REJECTED = "aiwall_upstream_rejected_responses_total"

# Forgery kind (the fake's) -> reason label (the server's).
KINDS = {
    "wrong-id": "wrong_id",
    "wrong-question": "wrong_question",
    "malformed": "malformed",
    "truncated-garbage": "malformed",
}


def addresses(answer: dns.message.Message) -> list[str]:
    return [str(rdata.address) for rrset in answer.answer for rdata in rrset]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_forgery_is_ignored_and_the_genuine_answer_served(start_server, upstream, kind):
    name = f"{kind}.example.test"
    upstream.set_forgery(name, kind)
    server = start_server()
    reason = KINDS[kind]
    assert server.metric(REJECTED, reason=reason) == 0
    answer = ask(server, name)
    assert answer.rcode() == dns.rcode.NOERROR
    assert addresses(answer) == [DEFAULT_A]
    assert server.metric(REJECTED, reason=reason) == 1
    assert server.metric(REJECTED, upstream=upstream.server_spec, reason=reason) == 1
    # Served again from the cache: what was cached is the genuine answer.
    again = ask(server, name)
    assert addresses(again) == [DEFAULT_A]
    assert FORGED_A not in addresses(again)
    assert upstream.answer_count(name) == 1
    assert server.metric("aiwall_cache_hits_total") == 1


def test_a_forgery_from_another_port_never_reaches_the_server(start_server, upstream):
    # The upstream socket is connected: the kernel drops datagrams from any other
    # address or port before we see them (RFC 5452 9.1), so there is nothing to count.
    name = "wrong-source.example.test"
    upstream.set_forgery(name, "wrong-source")
    server = start_server()
    answer = ask(server, name)
    assert addresses(answer) == [DEFAULT_A]
    assert FORGED_A not in addresses(ask(server, name))
    assert server.metric(REJECTED) == 0
    assert upstream.answer_count(name) == 1


def test_each_forgery_kind_counts_under_its_own_reason(start_server, upstream):
    server = start_server()
    for kind in KINDS:
        upstream.set_forgery(f"all-{kind}.example.test", kind)
    for kind in KINDS:
        assert addresses(ask(server, f"all-{kind}.example.test")) == [DEFAULT_A]
    for reason in set(KINDS.values()):
        expected = sum(1 for r in KINDS.values() if r == reason)
        assert server.metric(REJECTED, reason=reason) == expected
    assert all(q.transport == "udp" for q in upstream.queries)


def _query_and_listen(server: RunningServer, name: str, linger: float) -> list[bytes]:
    """Send one query and collect every datagram that comes back within ``linger`` of
    the first one."""
    query = dns.message.make_query(name, "A", use_edns=0)
    received: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(READ_TIMEOUT)
        sock.sendto(query.to_wire(), (server.host, server.port))
        received.append(sock.recv(65535))
        sock.settimeout(linger)
        try:
            while True:
                received.append(sock.recv(65535))
        except TimeoutError:
            pass
    return received


def test_late_answer_reaches_neither_client_nor_cache(start_server, upstream):
    name = "late.example.test"
    upstream.set_late(name, LATE)
    server = start_server()
    # The SERVFAIL comes after TIMEOUT; listening LATE more outlasts the late answer.
    datagrams = _query_and_listen(server, name, linger=LATE)
    assert len(datagrams) == 1
    first = dns.message.from_wire(datagrams[0])
    assert first.rcode() == dns.rcode.SERVFAIL
    assert upstream.answer_count(name) == 1
    # Had the late answer been cached, this would not reach the upstream.
    upstream.set_late(name, 0)
    answer = ask(server, name)
    assert addresses(answer) == [DEFAULT_A]
    assert upstream.answer_count(name) == 2


def test_late_answer_from_first_does_not_replace_the_second_answer(start_server, upstream):
    name = "late-failover.example.test"
    upstream.set_late(name, LATE)
    with FakeUpstream() as second:
        second.set_records(name, "A", ["192.0.2.2"])
        server = start_server(upstreams=[upstream.server_spec, second.server_spec])
        datagrams = _query_and_listen(server, name, linger=LATE)
        assert [addresses(dns.message.from_wire(d)) for d in datagrams] == [["192.0.2.2"]]
        # After the first upstream's late answer went out, the cache still holds the second's.
        assert addresses(ask(server, name)) == ["192.0.2.2"]
        assert second.answer_count(name) == 1
    assert upstream.answer_count(name) == 1


def test_upstream_ids_and_source_ports_are_unpredictable_over_many_queries(start_server, upstream):
    # RFC 5452 9.2: the full ID range per query, and random ports that change at least
    # every MAX_USES questions (tests/integration/test_upstream_sockets.py), so a blind
    # forger has one chance in 2^16 times the port range per guess.
    server = start_server()
    count = 300
    client_id = 0x4242
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(READ_TIMEOUT)
        for index in range(count):
            query = dns.message.make_query(f"id{index}.example.test", "A", id=client_id)
            sock.sendto(query.to_wire(), (server.host, server.port))
            assert dns.message.from_wire(sock.recv(65535)).id == client_id
    received = [q for q in upstream.queries if q.name.startswith("id")]
    assert len(received) == count
    ids = [q.id for q in received]
    ports = [q.source[1] for q in received]
    # 300 draws from 65,536 values collide a handful of times at most; a counter or a
    # relayed client ID would not look like this.
    assert len(set(ids)) >= count - 5
    assert len(set(ports)) >= count // MAX_USES
    assert sum(i == client_id for i in ids) <= 1
    high = sum(i >= 0x8000 for i in ids)
    assert 90 <= high <= 210  # each bit fair: 150 +- 7 standard deviations
    odd = sum(i & 1 for i in ids)
    assert 90 <= odd <= 210
