"""Forwarding to upstream resolvers: header rules (RFC 1035 4.1.1), RFC 5452 query
randomisation, strict failover, SERVFAIL with an Extended DNS Error (RFC 8914),
conditional forwarding, IPv6."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest

from resolver.config import config_from_mapping
from tests.fakes.upstream import (
    DEFAULT_A,
    FakeUpstream,
    Received,
    ipv6_loopback_available,
)
from tests.support import RunningServer, ask, has_flag

READ_TIMEOUT = 3.0
TIMEOUT = 0.5  # the harness's upstream timeout
SECOND_A = "192.0.2.2"

needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(), reason="::1 is not available")


def udp_exchange(server: RunningServer, data: bytes) -> bytes:
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(READ_TIMEOUT)
        sock.sendto(data, (server.host, server.port))
        return sock.recv(65535)


def address_of(answer: dns.message.Message) -> str:
    return str(answer.answer[0][0].address)


def upstream_flags(received: Received) -> int:
    return dns.message.from_wire(received.raw).flags


class _AuthoritativeFake(FakeUpstream):
    """A fake whose answers claim authority (AA), as an authoritative server's would."""

    @staticmethod
    def _build_response(query: dns.message.Message, behaviour: Any) -> dns.message.Message:
        response = FakeUpstream._build_response(query, behaviour)
        response.flags |= dns.flags.AA
        return response


class _OrderWitness(FakeUpstream):
    """A fake that notes, as each query arrives, how many queries for the same name
    ``earlier`` has seen (the server's own probes of ``earlier`` ask another name)."""

    def __init__(self, earlier: FakeUpstream) -> None:
        super().__init__()
        self.earlier_seen: list[int] = []
        self._earlier = earlier

    def _on_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        name = dns.message.from_wire(data).question[0].name.to_text(omit_final_dot=True)
        self.earlier_seen.append(len(self._earlier.queries_for(name.lower())))
        super()._on_udp(data, addr)


@pytest.fixture
def second() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        fake.set_records("only-second.example.test", "A", [SECOND_A])
        yield fake
        assert fake.errors == []


def test_answer_keeps_client_id_and_question_case(start_server, upstream):
    server = start_server()
    query = dns.message.make_query("WwW.ExAmple.TEST", "A", use_edns=0, id=0xBEEF)
    sent = query.to_wire()
    data = udp_exchange(server, sent)
    question_end = 12 + len(b"\x03WwW\x07ExAmple\x04TEST\x00") + 4
    assert data[:2] == b"\xbe\xef"
    # Byte for byte, so a client checking 0x20 case randomisation accepts it.
    assert data[12:question_end] == sent[12:question_end]
    answer = dns.message.from_wire(data)
    assert answer.question[0].name.to_text() == "WwW.ExAmple.TEST."
    assert address_of(answer) == DEFAULT_A


@pytest.mark.parametrize("rd", [True, False])
def test_rd_is_copied_and_ra_set(start_server, upstream, rd):
    server = start_server()
    flags = dns.flags.RD if rd else 0
    query = dns.message.make_query(f"rd-{rd}.example.test", "A", use_edns=0, flags=flags)
    answer = dns.message.from_wire(udp_exchange(server, query.to_wire()))
    assert bool(answer.flags & dns.flags.RD) is rd
    assert answer.flags & dns.flags.RA
    assert answer.flags & dns.flags.QR
    assert address_of(answer) == DEFAULT_A
    # Upstream is a recursive resolver: we always ask it to recurse.
    (received,) = upstream.queries_for(f"rd-{rd}.example.test")
    assert upstream_flags(received) & dns.flags.RD


def test_forwarded_answer_never_claims_authority(start_server, upstream):
    with _AuthoritativeFake() as authoritative:
        server = start_server(upstreams=[authoritative.server_spec])
        for attempt in range(2):  # forwarded, then from the cache
            answer = ask(server, "aa.example.test")
            assert not has_flag(answer, "AA"), f"attempt {attempt}"
            assert has_flag(answer, "RA")
            assert address_of(answer) == DEFAULT_A
        assert authoritative.answer_count("aa.example.test") == 1


def test_upstream_queries_use_random_ids_not_the_clients(start_server, upstream):
    # The source ports: tests/integration/test_upstream_sockets.py.
    server = start_server()
    client_id = 0x1234
    count = 20
    for index in range(count):
        query = dns.message.make_query(f"rand{index}.example.test", "A", use_edns=0, id=client_id)
        answer = dns.message.from_wire(udp_exchange(server, query.to_wire()))
        assert answer.id == client_id
    received = [q for q in upstream.queries if q.name.startswith("rand")]
    assert len(received) == count
    assert all(q.transport == "udp" for q in received)
    assert len({q.id for q in received}) > 1
    # A random 16-bit ID may match the client's once by chance; a relayed ID always would.
    assert sum(q.id == client_id for q in received) <= 1


def test_failover_to_second_when_first_is_silent(start_server, upstream):
    upstream.set_silent()
    with _OrderWitness(earlier=upstream) as second:
        second.set_records("silent-first.example.test", "A", [SECOND_A])
        server = start_server(upstreams=[upstream.server_spec, second.server_spec])
        answer = ask(server, "silent-first.example.test")
        assert answer.rcode() == dns.rcode.NOERROR
        assert address_of(answer) == SECOND_A
        assert upstream.answer_count("silent-first.example.test") == 1
        assert second.answer_count("silent-first.example.test") == 1
        # Strictly in order: the first had been asked when the second got the question.
        assert second.earlier_seen == [1]
        assert server.metric("aiwall_upstream_errors_total", reason="timeout") == 1


@pytest.mark.parametrize("rcode", ["SERVFAIL", "REFUSED"])
def test_failover_to_second_when_first_cannot_answer(start_server, upstream, second, rcode):
    upstream.set_rcode("only-second.example.test", rcode)
    server = start_server(upstreams=[upstream.server_spec, second.server_spec])
    answer = ask(server, "only-second.example.test")
    assert answer.rcode() == dns.rcode.NOERROR
    assert address_of(answer) == SECOND_A
    assert upstream.answer_count("only-second.example.test") == 1
    assert second.answer_count("only-second.example.test") == 1
    assert server.metric("aiwall_upstream_errors_total", reason=rcode.lower()) == 1


def test_first_upstream_answering_is_the_only_one_asked(start_server, upstream, second):
    server = start_server(upstreams=[upstream.server_spec, second.server_spec])
    assert address_of(ask(server, "first-ok.example.test")) == DEFAULT_A
    assert second.queries == []


def test_all_upstreams_silent_gives_servfail_with_ede(start_server, upstream, second):
    upstream.set_silent()
    second.set_silent()
    server = start_server(upstreams=[upstream.server_spec, second.server_spec])
    started = time.monotonic()
    answer = ask(server, "nobody.example.test", timeout=5)
    elapsed = time.monotonic() - started
    # A failure is never "this name does not exist".
    assert answer.rcode() == dns.rcode.SERVFAIL
    codes = [o.code for o in answer.options if isinstance(o, dns.edns.EDEOption)]
    assert codes == [dns.edns.EDECode.NO_REACHABLE_AUTHORITY]
    assert upstream.answer_count("nobody.example.test") == 1
    assert second.answer_count("nobody.example.test") == 1
    # One timeout per upstream, plus slack for a loaded machine; not "until the client gives up".
    assert elapsed < 2 * TIMEOUT + 1.5


@pytest.fixture
def start_with_upstream_section(
    upstream: FakeUpstream, catalog_dir: Path, tmp_path: Path
) -> Iterator[Callable[[dict[str, Any]], RunningServer]]:
    """Like start_server with an ``upstream`` section, which start_server cannot take:
    make_config's first parameter is also called ``upstream``."""
    running: list[RunningServer] = []

    def start(section: dict[str, Any]) -> RunningServer:
        raw = {
            "listen": {"dns": ["127.0.0.1:0"], "http": "127.0.0.1:0"},
            "upstream": {"servers": [upstream.server_spec], "timeout": TIMEOUT, **section},
        }
        config = config_from_mapping(raw, base_dir=tmp_path)
        server = RunningServer(config, catalog_dir=catalog_dir).start()
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


def test_conditional_forwarding_sends_the_zone_to_its_own_servers(
    start_with_upstream_section, upstream, second
):
    second.set_records("host.corp.test", "A", ["10.1.2.3"])
    second.set_records("corp.test", "A", ["10.1.2.4"])
    server = start_with_upstream_section({"conditional": {"corp.test": [second.server_spec]}})
    assert address_of(ask(server, "Host.Corp.Test")) == "10.1.2.3"
    assert address_of(ask(server, "corp.test")) == "10.1.2.4"
    assert address_of(ask(server, "notcorp.test")) == DEFAULT_A
    assert address_of(ask(server, "www.example.test")) == DEFAULT_A
    assert {q.name for q in second.queries} == {"host.corp.test", "corp.test"}
    assert {q.name for q in upstream.queries} == {"notcorp.test", "www.example.test"}


@needs_ipv6
def test_ipv6_listener(start_server, upstream):
    server = start_server(listen={"dns": ["[::1]:0"]})
    assert server.host == "::1"
    assert address_of(ask(server, "v6-listener.example.test")) == DEFAULT_A
    assert address_of(ask(server, "v6-listener-tcp.example.test", tcp=True)) == DEFAULT_A


@needs_ipv6
def test_ipv6_upstream(start_server, upstream):
    with FakeUpstream("::1") as v6:
        server = start_server(upstreams=[v6.server_spec])
        assert address_of(ask(server, "v6-upstream.example.test")) == DEFAULT_A
        (received,) = v6.queries_for("v6-upstream.example.test")
        assert received.source[0] == "::1"
        assert v6.errors == []
    assert upstream.queries == []
    assert server.metric("aiwall_upstream_rejected_responses_total") == 0
