"""DoT (RFC 7858) and DoH (RFC 8484) served by the real server, asked by real clients:
dnspython, kdig, curl and raw sockets, against a CA made by the test."""

from __future__ import annotations

import base64
import socket
import sqlite3
import ssl
import subprocess
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.peers.tlsca import TestCA
from tests.support import free_port

NAME = "dns.test"


@pytest.fixture
def tls_server(start_server, tmp_path: Path) -> Any:
    """Start a server with DoT and DoH on free loopback ports; returns (server, ca, ports)."""
    ca = TestCA(tmp_path / "ca")
    issued = ca.issue([NAME, "127.0.0.1"])

    def start(**sections: Any) -> tuple[Any, TestCA, int, int]:
        dot, doh = free_port(), free_port()
        listen = {"dot": [f"127.0.0.1:{dot}"], "doh": [f"127.0.0.1:{doh}"]}
        listen.update(sections.pop("listen", {}))
        tls = {"certificate": str(issued.certificate), "key": str(issued.key), "name": NAME}
        server = start_server(listen=listen, tls=tls, **sections)
        return server, ca, dot, doh

    return start


def client_context(ca: TestCA, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.path))
    context.set_alpn_protocols(alpn)
    return context


def dot_ask(port: int, ca: TestCA, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return dns.query.tls(
        query,
        "127.0.0.1",
        port=port,
        timeout=5,
        ssl_context=client_context(ca, ["dot"]),
        server_hostname=NAME,
    )


def doh_ask(port: int, ca: TestCA, name: str, *, post: bool = True) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    query.id = 0  # RFC 8484 4.1
    reply = dns.query.https(
        query,
        f"https://{NAME}:{port}/dns-query",
        bootstrap_address="127.0.0.1",
        timeout=5,
        post=post,
        verify=ssl.create_default_context(cafile=str(ca.path)),
    )
    assert reply.id == 0
    return reply


def test_dot_answers_forwards_and_blocks(tls_server, upstream):
    server, ca, dot, _ = tls_server()
    assert dot_ask(dot, ca, "allowed.example").answer[0][0].to_text() == "198.51.100.7"
    assert dot_ask(dot, ca, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN
    # The browser canary still switches DoH off in browsers (the DoH-bypass category).
    assert dot_ask(dot, ca, "use-application-dns.net").rcode() == dns.rcode.NXDOMAIN
    assert server.metric("aiwall_queries_total", protocol="dot", qtype="A") == 3


def test_dot_pipelined_queries_on_one_connection_with_alpn(tls_server):
    _, ca, dot, _ = tls_server()
    context = client_context(ca, ["dot"])
    names = ["a.example", "chat.deepseek.com", "b.example"]
    with (
        socket.create_connection(("127.0.0.1", dot), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        assert tls.selected_alpn_protocol() == "dot"
        wires = [dns.message.make_query(n, "A") for n in names]
        tls.sendall(b"".join(len(m.to_wire()).to_bytes(2, "big") + m.to_wire() for m in wires))
        replies = {}
        for _ in names:
            size = int.from_bytes(_read(tls, 2), "big")
            reply = dns.message.from_wire(_read(tls, size))
            replies[reply.question[0].name.to_text()] = reply.rcode()
    assert replies == {
        "a.example.": dns.rcode.NOERROR,
        "chat.deepseek.com.": dns.rcode.NXDOMAIN,
        "b.example.": dns.rcode.NOERROR,
    }


def _read(tls: ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = tls.recv(size - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


@pytest.mark.parametrize("post", [True, False])
def test_doh_http2_get_and_post(tls_server, upstream, post):
    server, ca, _, doh = tls_server()
    upstream.set_records("ttl.example", "A", ["192.0.2.9"], ttl=77)
    assert doh_ask(doh, ca, "ttl.example", post=post).answer[0][0].to_text() == "192.0.2.9"
    assert doh_ask(doh, ca, "chat.deepseek.com", post=post).rcode() == dns.rcode.NXDOMAIN
    assert server.metric("aiwall_queries_total", protocol="doh", qtype="A") == 2


def test_doh_max_age_is_the_smallest_answer_ttl_over_http1(tls_server, upstream, tmp_path):
    _, ca, _, doh = tls_server()
    upstream.set_records("ttl.example", "A", ["192.0.2.9"], ttl=77)
    query = dns.message.make_query("ttl.example", "A")
    query.id = 0
    text = base64.urlsafe_b64encode(query.to_wire()).decode().rstrip("=")
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--http1.1",
            "-D",
            "-",
            "-o",
            str(tmp_path / "body"),
            "--cacert",
            str(ca.path),
            "--resolve",
            f"{NAME}:{doh}:127.0.0.1",
            f"https://{NAME}:{doh}/dns-query?dns={text}",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout.lower()
    assert out.startswith("http/1.1 200")
    assert "content-type: application/dns-message" in out
    assert "cache-control: max-age=77" in out
    reply = dns.message.from_wire((tmp_path / "body").read_bytes())
    assert reply.id == 0
    assert reply.answer[0][0].to_text() == "192.0.2.9"


def _http1(port: int, ca: TestCA, request: bytes) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client_context(ca, ["http/1.1"]).wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        tls.sendall(request)
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        return data


def test_doh_http1_keep_alive_and_bad_requests(tls_server):
    _, ca, _, doh = tls_server()

    def post_of(name: str) -> bytes:
        query = dns.message.make_query(name, "A").to_wire()
        return (
            b"POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Type: application/dns-message\r\n"
            b"Content-Length: " + str(len(query)).encode() + b"\r\n\r\n" + query
        )

    post = post_of("a.example")
    # Two requests on one connection (keep-alive), then one asking to close.
    last = post.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    data = _http1(doh, ca, post + post + last)
    assert data.count(b"HTTP/1.1 200 OK") == 3
    # A pipelined burst of answers given at once (blocked names): all answered, in order.
    data = _http1(doh, ca, post_of("chat.deepseek.com") * 400 + last)
    assert data.count(b"HTTP/1.1 200 OK") == 401
    statuses = {
        b"PUT /dns-query HTTP/1.1\r\nContent-Length: 0\r\n\r\n": b"405",
        b"GET /dns-query HTTP/1.1\r\n\r\n": b"400",
        b"GET /dns-query?dns=!!! HTTP/1.1\r\n\r\n": b"400",
        b"GET /other?dns=AAAA HTTP/1.1\r\n\r\n": b"404",
        post.replace(b"application/dns-message", b"text/plain"): b"415",
        b"POST /dns-query HTTP/1.1\r\nContent-Length: 70000\r\n\r\n": b"413",
        b"GET /dns-query HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n": b"431",
    }
    for request, status in statuses.items():
        head = _http1(doh, ca, request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
        assert head.startswith(b"HTTP/1.1 " + status), (request[:40], head[:60])


def test_kdig_over_tls_and_https(tls_server):
    _, ca, dot, doh = tls_server()

    def kdig(port: int, mode: str, name: str) -> str:
        common = [f"+tls-ca={ca.path}", f"+tls-hostname={NAME}", "+time=5", "+retry=0"]
        command = ["kdig", "@127.0.0.1", "-p", str(port), mode, *common, name, "A"]
        return subprocess.run(command, capture_output=True, text=True, timeout=20).stdout

    for port, mode in ((dot, "+tls"), (doh, "+https")):
        out = kdig(port, mode, "chat.deepseek.com")
        assert "status: NXDOMAIN" in out, out
        out = kdig(port, mode, "ok.example")
        assert "status: NOERROR" in out, out
        assert "198.51.100.7" in out, out


def test_curl_resolves_through_doh(tls_server, upstream):
    """curl looks the host name up through our DoH: a banned name cannot be resolved, an
    allowed one resolves (to loopback, where the server's own HTTP endpoint answers)."""
    server, ca, _, doh = tls_server()
    upstream.set_records("ok.example", "A", ["127.0.0.1"])
    http_port = server.http_url.rsplit(":", 1)[1]

    def fetch(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "curl",
                "-sS",
                "--max-time",
                "5",
                "--doh-url",
                f"https://{NAME}:{doh}/dns-query",
                "--resolve",
                f"{NAME}:{doh}:127.0.0.1",
                "--cacert",
                str(ca.path),
                f"http://{name}:{http_port}/healthz",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )

    blocked = fetch("chat.deepseek.com")
    assert blocked.returncode == 6, blocked.stderr  # CURLE_COULDNT_RESOLVE_HOST
    allowed = fetch("ok.example")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout


def test_access_control_refuses_and_audit_records_the_peer(tls_server, tmp_path):
    server, ca, dot, doh = tls_server(access={"allow": ["10.0.0.0/8"]})
    assert dot_ask(dot, ca, "a.example").rcode() == dns.rcode.REFUSED
    assert doh_ask(doh, ca, "a.example").rcode() == dns.rcode.REFUSED
    server.stop()

    server, ca, dot, doh = tls_server(audit={"flush_interval": 0.1})
    assert dot_ask(dot, ca, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN
    assert doh_ask(doh, ca, "api.deepseek.com").rcode() == dns.rcode.NXDOMAIN
    server.stop()
    rows = sqlite3.connect(tmp_path / "state" / "audit.db").execute(
        "SELECT client, name FROM attempts ORDER BY name"
    )
    assert rows.fetchall() == [
        ("127.0.0.1", "api.deepseek.com"),
        ("127.0.0.1", "chat.deepseek.com"),
    ]
