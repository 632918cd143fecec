"""DNS over TCP (RFC 7766): pipelining, out-of-order answers, idle and connection limits."""

from __future__ import annotations

import socket
import struct
import threading
import time

import dns.message
import dns.rcode

from tests.fakes.upstream import DEFAULT_A
from tests.support import RunningServer

# Long enough for any answer on a loaded box, short enough to keep a failure quick.
READ_TIMEOUT = 3.0
# How long the server's loop is held busy while newcomers connect.
STALL_SECONDS = 0.2


def frame(message: dns.message.Message | bytes) -> bytes:
    data = message if isinstance(message, bytes) else message.to_wire()
    return struct.pack("!H", len(data)) + data


def recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def read_answer(sock: socket.socket) -> dns.message.Message:
    length = struct.unpack("!H", recv_exact(sock, 2))[0]
    return dns.message.from_wire(recv_exact(sock, length))


def connect(server: RunningServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=READ_TIMEOUT)
    sock.settimeout(READ_TIMEOUT)
    return sock


def is_closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed its end (EOF or reset), False if it stays open."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def query(name: str, rdtype: str = "A") -> dns.message.Message:
    return dns.message.make_query(name, rdtype, use_edns=0)


def exchange(sock: socket.socket, name: str) -> dns.message.Message:
    sent = query(name)
    sock.sendall(frame(sent))
    answer = read_answer(sock)
    assert answer.id == sent.id
    return answer


def address_of(answer: dns.message.Message) -> str:
    return str(answer.answer[0][0].address)


def test_pipelined_queries_on_one_connection_are_all_answered(start_server, upstream):
    server = start_server()
    sent = [query(f"pipe{i}.example.test") for i in range(3)]
    with connect(server) as sock:
        # One write: the server must split the stream into three messages itself.
        sock.sendall(b"".join(frame(q) for q in sent))
        answers = [read_answer(sock) for _ in sent]
    by_id = {a.id: a for a in answers}
    assert set(by_id) == {q.id for q in sent}
    for q in sent:
        answer = by_id[q.id]
        assert answer.question[0].name == q.question[0].name
        assert address_of(answer) == DEFAULT_A


def test_answers_are_sent_as_they_complete_not_in_query_order(start_server, upstream):
    upstream.set_delay("slow.example.test", 0.3)
    server = start_server()
    slow, fast = query("slow.example.test"), query("fast.example.test")
    with connect(server) as sock:
        sock.sendall(frame(slow) + frame(fast))
        first, second = read_answer(sock), read_answer(sock)
    assert (first.id, second.id) == (fast.id, slow.id)
    assert address_of(first) == address_of(second) == DEFAULT_A


def test_blocked_name_is_answered_over_tcp(start_server, upstream):
    server = start_server()
    with connect(server) as sock:
        answer = exchange(sock, "chat.deepseek.com")
        # The connection stays usable after an answer the server wrote itself.
        assert address_of(exchange(sock, "after-block.example.test")) == DEFAULT_A
    assert answer.rcode() == dns.rcode.NXDOMAIN
    assert upstream.answer_count("chat.deepseek.com") == 0


def test_idle_connection_is_closed_after_the_idle_timeout(start_server, upstream):
    server = start_server(listen={"tcp_idle_timeout": 0.3})
    with connect(server) as sock:
        assert address_of(exchange(sock, "idle.example.test")) == DEFAULT_A
        # The read is bounded by READ_TIMEOUT (10x the idle timeout): EOF, not a timeout.
        assert sock.recv(1) == b""
    assert server.metric("aiwall_tcp_connections_closed_total", reason="idle") >= 1


def test_connection_cap_closes_the_oldest_idle_connection(start_server, upstream):
    server = start_server(listen={"tcp_max_connections": 3})
    first, second, third = connect(server), connect(server), connect(server)
    try:
        # An answered query on each proves each was admitted, in this order.
        for index, sock in enumerate((first, second, third)):
            exchange(sock, f"held{index}.example.test")
        with connect(server) as newcomer:
            assert address_of(exchange(newcomer, "newcomer.example.test")) == DEFAULT_A
        assert is_closed_by_server(first)
        assert address_of(exchange(second, "second.example.test")) == DEFAULT_A
        assert address_of(exchange(third, "third.example.test")) == DEFAULT_A
    finally:
        for sock in (first, second, third):
            sock.close()
    assert server.metric("aiwall_tcp_connections_closed_total", reason="evicted") >= 1


def test_connection_cap_holds_when_newcomers_arrive_together(start_server, upstream):
    server = start_server(listen={"tcp_max_connections": 3})
    held = [connect(server) for _ in range(3)]
    try:
        for index, sock in enumerate(held):
            exchange(sock, f"burst-held{index}.example.test")
        # Hold the server's loop so that both handshakes complete in the kernel first and
        # the server then admits the two newcomers back to back, before it has seen either
        # eviction finish: the case where one idle victim could be picked twice.
        stalled = threading.Event()

        def stall() -> None:
            stalled.set()
            time.sleep(STALL_SECONDS)

        server.loop.call_soon_threadsafe(stall)
        assert stalled.wait(READ_TIMEOUT)
        newcomers = [connect(server), connect(server)]
        try:
            for index, sock in enumerate(newcomers):
                assert address_of(exchange(sock, f"burst-new{index}.example.test")) == DEFAULT_A
            # Two newcomers need two victims: only the most recent held one may survive.
            assert [is_closed_by_server(sock) for sock in held[:2]] == [True, True]
            assert server.metric("aiwall_tcp_connections") <= 3
        finally:
            for sock in newcomers:
                sock.close()
    finally:
        for sock in held:
            sock.close()


def test_half_closed_client_still_gets_its_answer(start_server, upstream):
    # The delay makes the answer still outstanding when the client's FIN arrives.
    upstream.set_delay("halfclose.example.test", 0.2)
    server = start_server()
    sent = query("halfclose.example.test")
    with connect(server) as sock:
        sock.sendall(frame(sent))
        sock.shutdown(socket.SHUT_WR)
        answer = read_answer(sock)
        # All answered: the server then closes its side too.
        assert sock.recv(1) == b""
    assert answer.id == sent.id
    assert address_of(answer) == DEFAULT_A


def test_half_closed_client_gets_a_cached_answer(start_server, upstream):
    server = start_server()
    with connect(server) as sock:
        exchange(sock, "halfcached.example.test")
    sent = query("halfcached.example.test")
    with connect(server) as sock:
        sock.sendall(frame(sent))
        sock.shutdown(socket.SHUT_WR)
        answer = read_answer(sock)
    assert answer.id == sent.id
    assert address_of(answer) == DEFAULT_A
    assert upstream.answer_count("halfcached.example.test") == 1


def _response_bytes() -> bytes:
    request = query("qr.example.test")
    return dns.message.make_response(request).to_wire()


def test_unreadable_frames_close_only_their_own_connection(start_server, upstream):
    server = start_server()
    garbage_frames = [
        frame(b"hello"),  # shorter than a header
        b"\x00\x00",  # an empty message
        frame(_response_bytes()),  # not a query at all
    ]
    with connect(server) as good:
        assert address_of(exchange(good, "before.example.test")) == DEFAULT_A
        for index, garbage in enumerate(garbage_frames):
            with connect(server) as bad:
                bad.sendall(garbage)
                assert is_closed_by_server(bad)
            # The neighbour on its own connection is unaffected.
            assert address_of(exchange(good, f"after{index}.example.test")) == DEFAULT_A
    dropped = server.metric("aiwall_dropped_packets_total", protocol="tcp", reason="unparsable")
    assert dropped == len(garbage_frames)
    assert server.metric("aiwall_tcp_connections_closed_total", reason="malformed") == len(
        garbage_frames
    )
    assert upstream.bad_packets == []
