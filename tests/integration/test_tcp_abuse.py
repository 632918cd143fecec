"""Hostile TCP clients: stalled, half-open and slow-loris connections, oversized length
prefixes, clients that never read their answers, and deep pipelines. None of them may
lock out a real client or grow the server's memory without bound."""

from __future__ import annotations

import contextlib
import socket
import struct
import time

import dns.message
import dns.rcode

from tests.fakes.upstream import DEFAULT_A
from tests.support import RunningServer, ask

READ_TIMEOUT = 3.0
STALLED = 300
CAP = 100


def connect(server: RunningServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=READ_TIMEOUT)
    sock.settimeout(READ_TIMEOUT)
    return sock


def frame(message: dns.message.Message) -> bytes:
    data = message.to_wire()
    return struct.pack("!H", len(data)) + data


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_hundreds_of_stalled_connections_do_not_lock_out_a_real_client(start_server, upstream):
    server = start_server(listen={"tcp_max_connections": CAP, "tcp_idle_timeout": 1.0})
    stalled: list[socket.socket] = []
    try:
        for index in range(STALLED):
            sock = connect(server)
            kind = index % 3
            if kind == 0:
                sock.sendall(b"\x00")  # slow loris: half a length prefix, then nothing
            elif kind == 1:
                sock.sendall(b"\xff\xff" + b"\x00" * 100)  # 64 KiB announced, 100 bytes sent
            # kind 2: connected and silent (half-open from the server's point of view)
            stalled.append(sock)
        # A real client, over TCP and UDP, while all of them hang on.
        for attempt in range(3):
            answer = ask(server, f"real{attempt}.example.test", tcp=True)
            assert [str(r.address) for r in answer.answer[0]] == [DEFAULT_A]
        assert ask(server, "real-udp.example.test").rcode() == dns.rcode.NOERROR
        assert server.metric("aiwall_tcp_connections") <= CAP
        assert server.metric("aiwall_tcp_connections_closed_total", reason="evicted") >= (
            STALLED - CAP
        )
        # The survivors are closed once idle for the timeout.
        time.sleep(1.5)
        survivors = stalled[-CAP // 2 :]
        assert all(closed_by_server(sock) for sock in survivors)
        assert server.metric("aiwall_tcp_connections_closed_total", reason="idle") >= CAP // 2
    finally:
        for sock in stalled:
            sock.close()


def test_a_client_that_does_not_read_is_paused_then_cut_off(start_server, upstream):
    # The stall timer is the idle timeout. The hog was closed as idle in CI three times:
    # once its send buffer was full, this test used to wait for the cut by reading the
    # socket, which took the answers; the server then flushed them, heard nothing more
    # and closed it, rightly, as idle. Now the test never reads the hog.
    server = start_server(listen={"tcp_idle_timeout": 2.0})
    # Cached answers of about 1 KB, answered at once, so they pile up as fast as queries
    # arrive. The server's kernel takes up to 4 MB of answers (its send buffer grows to
    # net.ipv4.tcp_wmem's maximum) before the server sees any back-pressure. With 50-byte
    # blocked answers the hog had sent 5.4 MB of queries by then on an idle machine; in
    # CI, on a busy one, it sent 2.9 MB in the test's 10 s and was never cut (2026-12-01).
    # With these answers its send blocks after 3.1-3.6 MB, nearly all of them queries the
    # paused server has not read.
    upstream.set_records("big.example.test", "TXT", [" ".join([f'"{"x" * 250}"'] * 4)])
    assert len(ask(server, "big.example.test", "TXT", tcp=True).to_wire()) > 1000  # cached
    burst = frame(dns.message.make_query("big.example.test", "TXT")) * 1000
    sent = 0
    cut_off = False
    with connect(server) as hog:
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        hog.settimeout(2.0)
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                hog.sendall(burst)
                sent += len(burst)
                # Meanwhile a well-behaved client is served.
                if sent % (len(burst) * 2) == 0:
                    assert ask(server, "chat.deepseek.com", tcp=True).rcode() == 3
        except (ConnectionResetError, BrokenPipeError):
            cut_off = True
        except TimeoutError:
            # Our send buffer is full because the server stopped reading: wait for the cut
            # without reading a byte (reading would take the answers, and a client that
            # takes its answers and then falls silent is rightly closed as idle).
            cut_off = reset_without_reading(hog, 6.0)
    assert cut_off, f"still connected after sending {sent} bytes"
    # Closed once, as stalled: never also (or instead) as idle, which would wait for
    # the answers it does not read.
    reasons = ("write_stalled", "idle", "evicted", "limit", "malformed")
    closed = {r: server.metric("aiwall_tcp_connections_closed_total", reason=r) for r in reasons}
    assert closed == {"write_stalled": 1, "idle": 0, "evicted": 0, "limit": 0, "malformed": 0}
    assert ask(server, "after-hog.example.test", tcp=True).rcode() == dns.rcode.NOERROR


def reset_without_reading(sock: socket.socket, seconds: float) -> bool:
    """Whether the server aborts the connection within ``seconds``, found by writing to
    it (a reset connection refuses writes at once), never by reading."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock.send(b"\0")
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            continue
    return False


def test_a_deep_pipeline_is_read_only_as_far_as_the_outstanding_cap(start_server, upstream):
    upstream.set_silent()
    server = start_server(upstream={"timeout": 1.0})
    queries = [dns.message.make_query(f"p{i}.example.test", "A") for i in range(300)]
    with connect(server) as sock:
        sock.sendall(b"".join(frame(q) for q in queries))
        upstream.wait_for_queries(100, timeout=2.0)
        time.sleep(0.3)
        # The rest wait in the socket until answers free room: bounded work per client.
        assert len(upstream.queries) == 100
        with contextlib.suppress(TimeoutError):
            sock.settimeout(5)
            length = struct.unpack("!H", sock.recv(2))[0]
            assert length > 0
    assert ask(server, "chat.deepseek.com", tcp=True).rcode() == dns.rcode.NXDOMAIN
