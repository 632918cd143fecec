"""DoT/DoH in ``aiwall serve`` as administrators run it: one process or a supervisor
with two workers; the certificate renewed and re-read on SIGHUP."""

from __future__ import annotations

import contextlib
import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdtypes.svcbbase as svcb
import pytest

from tests.integration.test_one_server import ask, config_for, start  # noqa: F401
from tests.peers.ports import free_port
from tests.peers.tlsca import TestCA
from tests.peers.wait import wait_until

NAME = "dns.test"


def _context(ca: TestCA, alpn: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.path))
    context.set_alpn_protocols([alpn])
    return context


@contextlib.contextmanager
def _dot(port: int, ca: TestCA) -> Iterator[ssl.SSLSocket]:
    """A new DoT connection (taken by either worker)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        _context(ca, "dot").wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        yield tls


def _serial(port: int, ca: TestCA) -> int:
    """The serial number of the certificate a new DoT handshake is shown."""
    with _dot(port, ca) as tls:
        return int(tls.getpeercert()["serialNumber"], 16)


def _ask_on(tls: ssl.SSLSocket, name: str) -> dns.message.Message:
    wire = dns.message.make_query(name, "A").to_wire()
    tls.sendall(len(wire).to_bytes(2, "big") + wire)
    data = b""
    while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
        chunk = tls.recv(65536)
        assert chunk, "the connection was closed"
        data += chunk
    return dns.message.from_wire(data[2:])


def _ask_dot(port: int, ca: TestCA, name: str) -> dns.message.Message:
    """One question on a new DoT connection."""
    with _dot(port, ca) as tls:
        return _ask_on(tls, name)


def _ask_doh(port: int, ca: TestCA, name: str) -> dns.message.Message:
    return dns.query.https(
        dns.message.make_query(name, "A"),
        f"https://{NAME}:{port}/dns-query",
        bootstrap_address="127.0.0.1",
        timeout=5,
        verify=ssl.create_default_context(cafile=str(ca.path)),
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_certificate_reread_on_sighup_open_connections_kept(
    start,  # noqa: F811
    upstream,
    tmp_path: Path,
    workers: int,
):
    ca = TestCA(tmp_path / "ca")
    first = ca.issue([NAME, "127.0.0.1"], stem="server")
    dot, doh = free_port(), free_port()
    config = config_for(
        [upstream.server_spec],
        workers,
        listen={"dot": [f"127.0.0.1:{dot}"], "doh": [f"127.0.0.1:{doh}"]},
        tls={"certificate": str(first.certificate), "key": str(first.key), "name": NAME},
    )
    server = start(config)
    old_serial = _serial(dot, ca)
    # Workers: several new connections, so that both workers' accepts are exercised.
    for _ in range(4 * workers):
        assert _ask_doh(doh, ca, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN
    ddr = ask(server, "_dns.resolver.arpa", "SVCB")
    ports = {r.params[svcb.ParamKey.PORT].port for r in ddr.answer[0]}
    assert ports == {dot, doh}

    with _dot(dot, ca) as held:
        assert _ask_on(held, "a.example").rcode() == dns.rcode.NOERROR
        renewed = ca.issue([NAME, "127.0.0.1"], stem="server")  # the same files, rewritten
        assert renewed.certificate == first.certificate
        server.signal(signal.SIGHUP)
        wait_until(lambda: _serial(dot, ca) != old_serial, timeout=15)
        new_serial = _serial(dot, ca)
        # The connection opened before the reload goes on, with its handshake's certificate.
        assert _ask_on(held, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN
        assert int(held.getpeercert()["serialNumber"], 16) == old_serial

        # A broken renewal is refused: the certificate in force stays.
        first.certificate.write_text("-----BEGIN CERTIFICATE-----\nbroken\n")
        server.signal(signal.SIGHUP)
        server.wait_log("reload rejected")
        assert "tls.certificate" in server.log
        assert _serial(dot, ca) == new_serial
        assert _ask_on(held, "b.example").rcode() == dns.rcode.NOERROR
    _, metrics = server.http("/metrics")
    assert 'aiwall_reloads_total{result="rejected"} 1.0' in metrics


def test_two_workers_are_one_cache_over_dot_and_doh(
    start,  # noqa: F811
    upstream,
    tmp_path: Path,
):
    """Connections are accepted by either worker; each question goes to the worker that
    owns its name, as over UDP and TCP: the upstream is asked once per name however many
    connections ask it, and the owner counts each question under its own protocol."""
    ca = TestCA(tmp_path / "ca")
    issued = ca.issue([NAME, "127.0.0.1"], stem="server")
    dot, doh = free_port(), free_port()
    config = config_for(
        [upstream.server_spec],
        2,
        listen={"dot": [f"127.0.0.1:{dot}"], "doh": [f"127.0.0.1:{doh}"]},
        tls={"certificate": str(issued.certificate), "key": str(issued.key), "name": NAME},
    )
    server = start(config)
    names = [f"enc{index}.example" for index in range(6)]
    for name in names:
        upstream.set_records(name, "A", ["192.0.2.44"], ttl=300)
        for ask_over in (_ask_dot, _ask_doh) * 3:
            reply = ask_over(dot if ask_over is _ask_dot else doh, ca, name)
            assert reply.rcode() == dns.rcode.NOERROR
            assert reply.answer[0][0].address == "192.0.2.44"
        assert upstream.answer_count(name) == 1, name
    # Six questions per name, one of them the miss.
    assert server.metric("aiwall_cache_hits_total") == len(names) * 5
    assert server.metric("aiwall_queries_total", protocol="dot") == len(names) * 3
    assert server.metric("aiwall_queries_total", protocol="doh") == len(names) * 3
