"""The UDP sockets to an upstream (``resolver.upstream.udp``), seen from the upstream's
side: a random port per socket, one question in flight per port, and a socket reused for
sequential questions only while nothing suggests its port is known, for at most
MAX_USES questions and MAX_AGE seconds."""

from __future__ import annotations

import itertools
import socket
import time
from pathlib import Path

import dns.message
import dns.rcode

from resolver.upstream.udp import MAX_AGE, MAX_USES
from tests.fakes.upstream import DEFAULT_A
from tests.support import ask

READ_TIMEOUT = 3.0


def _ports(upstream, prefix: str) -> list[int]:
    return [q.source[1] for q in upstream.queries if q.name.startswith(prefix)]


def _open_ports_to(upstream) -> set[int]:
    """Local ports of the UDP sockets connected to ``upstream``, from the kernel's own
    table: the sockets the server holds open towards it."""
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, remote = line.split()[1:3]
            if int(remote.rsplit(":", 1)[1], 16) == upstream.port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def test_sequential_questions_share_a_socket_and_concurrent_ones_never_do(start_server, upstream):
    server = start_server()
    for index in range(5):
        assert ask(server, f"seq{index}.example.test").rcode() == dns.rcode.NOERROR
    # Reused: one socket carried the five questions, one after the other (two, should
    # the first reach MAX_AGE in between).
    assert len(set(_ports(upstream, "seq"))) <= 2
    # 100 questions at once, all held by the upstream: each needs a socket of its own,
    # so each went out from a port no other question in flight had.
    count = 100
    for index in range(count):
        upstream.set_delay(f"par{index}.example.test", 0.3)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(READ_TIMEOUT)
        for index in range(count):
            query = dns.message.make_query(f"par{index}.example.test", "A", id=index)
            sock.sendto(query.to_wire(), (server.host, server.port))
        answers = [dns.message.from_wire(sock.recv(65535)) for _ in range(count)]
    assert sorted(a.id for a in answers) == list(range(count))
    assert all(a.rcode() == dns.rcode.NOERROR for a in answers)
    ports = _ports(upstream, "par")
    assert len(ports) == count
    assert len(set(ports)) == count
    # Picked at random by the kernel, not handed out in order.
    ordered = sorted(ports)
    neighbours = sum(b - a == 1 for a, b in itertools.pairwise(ordered))
    assert neighbours <= 10
    assert max(ports) - min(ports) > 4096


def test_a_socket_that_read_a_forgery_is_never_used_again(start_server, upstream):
    server = start_server()
    assert addresses_of(ask(server, "before.example.test")) == [DEFAULT_A]
    upstream.set_forgery("forged-here.example.test", "wrong-id")
    assert addresses_of(ask(server, "forged-here.example.test")) == [DEFAULT_A]
    assert addresses_of(ask(server, "after.example.test")) == [DEFAULT_A]
    before, forged, after = (_ports(upstream, p)[0] for p in ("before", "forged-here", "after"))
    # The clean socket was reused for the forged name; the forger knows that port now,
    # so the next question goes out from another one.
    assert forged == before
    assert after != forged
    assert forged not in _open_ports_to(upstream)


def test_a_socket_whose_question_timed_out_is_never_used_again(start_server, upstream):
    server = start_server()
    assert addresses_of(ask(server, "first.example.test")) == [DEFAULT_A]
    upstream.set_silent("silent.example.test")
    assert ask(server, "silent.example.test").rcode() == dns.rcode.SERVFAIL
    assert addresses_of(ask(server, "next.example.test")) == [DEFAULT_A]
    first, silent, following = (_ports(upstream, p)[0] for p in ("first", "silent", "next"))
    assert silent == first
    # Its answer may still come: it must not meet a later question on the same port.
    assert following != silent


def test_a_socket_is_retired_after_max_uses_and_max_age(start_server, upstream):
    server = start_server()
    count = 2 * MAX_USES + 10
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(READ_TIMEOUT)
        for index in range(count):
            query = dns.message.make_query(f"use{index}.example.test", "A")
            sock.sendto(query.to_wire(), (server.host, server.port))
            assert dns.message.from_wire(sock.recv(65535)).rcode() == dns.rcode.NOERROR
    ports = _ports(upstream, "use")
    runs: list[int] = []
    for previous, port in zip([None, *ports], ports, strict=False):
        if port == previous:
            runs[-1] += 1
        else:
            runs.append(1)
    assert max(runs) <= MAX_USES
    assert len(runs) >= 3
    # An idle socket is closed MAX_AGE after it was opened, with no question to reuse it.
    last = ports[-1]
    time.sleep(MAX_AGE + 0.3)
    assert last not in _open_ports_to(upstream)
    assert addresses_of(ask(server, "later.example.test")) == [DEFAULT_A]
    assert _ports(upstream, "later")[0] != last


def addresses_of(answer: dns.message.Message) -> list[str]:
    return [str(rdata.address) for rrset in answer.answer for rdata in rrset]
