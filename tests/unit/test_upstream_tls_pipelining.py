"""DoT pipelining against a small TLS server that answers out of order (which Unbound
rarely does on loopback): answers are matched by ID, the IDs of the queries in flight
on one connection are distinct, and an answer with an ID nobody waits for is dropped
and counted, never given to a query."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import dns.message
import dns.rrset

from resolver.dns import wire
from resolver.dns.codec import parse_query
from resolver.dns.model import Outcome
from resolver.metrics import Metrics
from resolver.upstream.forwarder import Forwarder, Upstream
from tests.peers.tlsca import TestCA

QUERIES = 8


def answer_for(query: bytes, address: str) -> bytes:
    request = dns.message.from_wire(query)
    response = dns.message.make_response(request)
    name = request.question[0].name
    response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", address))
    return response.to_wire()


async def out_of_order_server(
    certificate: Path, key: Path, seen: list[int], lengths: list[int]
) -> asyncio.Server:
    """Reads QUERIES queries, then answers a stranger's ID first and the rest backwards."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queries = []
        for _ in range(QUERIES):
            length = wire.U16.unpack(await reader.readexactly(2))[0]
            queries.append(await reader.readexactly(length))
        seen.extend(wire.U16.unpack_from(query)[0] for query in queries)
        lengths.extend(len(query) for query in queries)
        stranger = next(i for i in range(65536) if i not in seen)
        forged = wire.U16.pack(stranger) + answer_for(queries[0], "203.0.113.66")[2:]
        for data in [forged, *(answer_for(q, "192.0.2.1") for q in reversed(queries))]:
            writer.write(wire.U16.pack(len(data)) + data)
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)


def test_pipelined_answers_are_matched_by_id(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    issued = ca.issue(["127.0.0.1"])
    lengths: list[int] = []

    async def run() -> tuple[list[str], list[int], float, float]:
        seen: list[int] = []
        server = await out_of_order_server(issued.certificate, issued.key, seen, lengths)
        port = server.sockets[0].getsockname()[1]
        metrics = Metrics()
        label = f"tls://127.0.0.1:{port}"
        upstream = Upstream("127.0.0.1", port, label, "tls", "127.0.0.1")
        forwarder = Forwarder((upstream,), 5.0, metrics, ca_file=ca.path)
        names = [f"n{index}.example." for index in range(QUERIES)]
        queries = []
        for name in names:
            raw = dns.message.make_query(name, "A").to_wire()
            query = parse_query(raw, "udp", "127.0.0.1")
            assert query is not None
            queries.append(query)
        answers = await asyncio.gather(*(forwarder.resolve(query) for query in queries))
        await forwarder.close()
        server.close()
        got = []
        for name, answer in zip(names, answers, strict=True):
            assert answer.outcome is Outcome.FORWARDED
            message = dns.message.from_wire(answer.message)
            assert message.question[0].name.to_text() == name
            got.append(str(message.answer[0][0]))
        sample = metrics.registry.get_sample_value
        connections = {"upstream": label, "protocol": "dot", "event": "opened"}
        opened = sample("aiwall_upstream_connections_total", connections)
        stray = sample(
            "aiwall_upstream_rejected_responses_total", {"upstream": label, "reason": "wrong_id"}
        )
        return got, seen, opened or 0.0, stray or 0.0

    got, seen, opened, stray = asyncio.run(run())
    assert got == ["192.0.2.1"] * QUERIES  # the forged answer went to nobody
    assert len(set(seen)) == QUERIES  # unique IDs in flight on the connection
    assert opened == 1
    assert stray == 1
    # Padded to a multiple of 128 octets (RFC 8467): the length does not tell the name.
    assert len(lengths) == QUERIES
    assert all(length % 128 == 0 for length in lengths)


def test_doh_needs_http2(tmp_path: Path) -> None:
    """A TLS server that does not agree to HTTP/2 by ALPN is refused as a DoH upstream,
    at once, and counted as a TLS failure."""
    ca = TestCA(tmp_path)
    issued = ca.issue(["127.0.0.1"])

    async def run() -> tuple[Outcome, float, float | None]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(issued.certificate, issued.key)  # no ALPN offered

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        metrics = Metrics()
        label = f"https://127.0.0.1:{port}/dns-query"
        upstream = Upstream("127.0.0.1", port, label, "https", "127.0.0.1", "/dns-query")
        forwarder = Forwarder((upstream,), 5.0, metrics, ca_file=ca.path)
        query = parse_query(dns.message.make_query("h2.example.", "A").to_wire(), "udp", "::1")
        assert query is not None
        started = asyncio.get_running_loop().time()
        answer = await forwarder.resolve(query)
        elapsed = asyncio.get_running_loop().time() - started
        await forwarder.close()
        server.close()
        failures = metrics.registry.get_sample_value(
            "aiwall_upstream_errors_total", {"upstream": label, "reason": "tls"}
        )
        return answer.outcome, elapsed, failures

    outcome, elapsed, failures = asyncio.run(run())
    assert outcome is Outcome.SERVFAIL
    assert elapsed < 2.0
    assert failures == 1
