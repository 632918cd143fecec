"""Hostile TLS clients: handshakes never finished, headers never finished, oversized
HTTP/2 frames. Each is cut off by its limit, and UDP answers keep flowing meanwhile."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import dns.message
import dns.query

from tests.integration.test_serve_tls import NAME, client_context, tls_server  # noqa: F401

LIMITS = {
    "tls_max_connections_per_client": 4,
    "tls_handshake_timeout": 1.0,
    "tls_idle_timeout": 2.0,
    "http_max_header_bytes": 2048,
}


def _udp_latency(server, count: int = 20) -> float:
    worst = 0.0
    for index in range(count):
        started = time.monotonic()
        query = dns.message.make_query(f"n{index}.example", "A")
        dns.query.udp(query, server.host, port=server.port, timeout=2)
        worst = max(worst, time.monotonic() - started)
    return worst


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """The server closed ``sock`` (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, ssl.SSLError):
        return True
    except TimeoutError:
        return False
    return True


def test_stalled_handshakes_are_capped_per_client_and_timed_out(tls_server):  # noqa: F811
    server, ca, dot, doh = tls_server(listen=LIMITS)
    held = [socket.create_connection(("127.0.0.1", dot), timeout=5) for _ in range(4)]
    try:
        time.sleep(0.2)  # accepted and counted
        excess = socket.create_connection(("127.0.0.1", doh), timeout=5)
        assert _closed_within(excess, 1.0), "a fifth connection from one client was kept"
        excess.close()
        assert (
            server.metric("aiwall_tcp_connections_closed_total", reason="tls_per_client_limit") >= 1
        )
        assert _udp_latency(server) < 0.5
        started = time.monotonic()
        for sock in held:
            assert _closed_within(sock, 3.0), "a stalled handshake outlived its timeout"
        assert time.monotonic() - started < 3.0
    finally:
        for sock in held:
            sock.close()
    # The slots are given back: a full handshake works again.
    with (
        socket.create_connection(("127.0.0.1", dot), timeout=5) as raw,
        client_context(ca, ["dot"]).wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        assert tls.selected_alpn_protocol() == "dot"


def test_udp_flows_while_garbage_handshakes_hammer_the_tls_ports(tls_server):  # noqa: F811
    """Connections that send junk instead of a ClientHello, as fast as one thread can
    open them, cost failed handshakes on the event loop; UDP answers stay prompt."""
    server, _, dot, doh = tls_server(listen=LIMITS)
    stop = threading.Event()
    attempts = []

    def hammer() -> None:
        while not stop.is_set():
            for port in (dot, doh):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                        sock.sendall(b"\x16\x03\x01\xff\xff" + b"\x00" * 2000)
                        sock.recv(100)
                except OSError:
                    pass
                attempts.append(port)

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        assert _udp_latency(server, 50) < 0.5
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    assert len(attempts) > 20


def test_never_finished_headers_and_oversized_frames_are_cut_off(tls_server):  # noqa: F811
    server, ca, _, doh = tls_server(listen=LIMITS)
    # HTTP/1.1: a header trickled a byte at a time never completes.
    raw = socket.create_connection(("127.0.0.1", doh), timeout=5)
    slow = client_context(ca, ["http/1.1"]).wrap_socket(raw, server_hostname=NAME)
    started = time.monotonic()
    slow.sendall(b"GET /dns-query HTTP/1.1\r\nX-Slow: ")
    closed = False
    while time.monotonic() - started < 5:
        try:
            slow.sendall(b"a")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            closed = True
            break
        slow.settimeout(0.2)
        try:
            if slow.recv(100) == b"":
                closed = True
                break
        except TimeoutError:
            pass
    slow.close()
    assert closed
    assert time.monotonic() - started < 4.0
    # HTTP/1.1: a header bigger than http_max_header_bytes gets 431.
    with (
        socket.create_connection(("127.0.0.1", doh), timeout=5) as raw,
        client_context(ca, ["http/1.1"]).wrap_socket(raw, server_hostname=NAME) as big,
    ):
        big.sendall(b"GET /dns-query HTTP/1.1\r\nX: " + b"a" * 4096)
        assert big.recv(100).startswith(b"HTTP/1.1 431")
    # HTTP/2: a frame that announces 1 MiB (SETTINGS_MAX_FRAME_SIZE is 16 KiB).
    with (
        socket.create_connection(("127.0.0.1", doh), timeout=5) as raw,
        client_context(ca, ["h2"]).wrap_socket(raw, server_hostname=NAME) as h2,
    ):
        assert h2.selected_alpn_protocol() == "h2"
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        huge = (1 << 20).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01"
        h2.sendall(preface + huge + b"x" * 1000)
        assert _closed_within(h2, 2.0)
    assert _udp_latency(server) < 0.5
