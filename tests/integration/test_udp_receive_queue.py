"""A burst of queries that meets a busy worker waits in its socket's receive queue
instead of being dropped by the kernel (resolver/serve/sockets.py, UDP_RECEIVE_BUFFER).

The real server in its default deployment (a supervisor and two workers); its workers
are stopped (SIGSTOP) while one client sends a burst, as a worker busy with a long turn
of the event loop would leave them unread. Linux's default receive buffer holds about
256 such queries; the burst is sized between that and what the enlarged buffer holds,
both measured here on sockets of the test's own.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

import dns.message
import dns.rcode

from resolver.serve.sockets import UDP_RECEIVE_BUFFER
from tests.fakes.upstream import FakeUpstream
from tests.integration.test_one_server import config_for, start, workers_of  # noqa: F401 (a fixture)

QUESTION = dns.message.make_query("chat.deepseek.com", "A")


def queue_capacity(receive_buffer: int | None) -> int:
    """How many of our questions a loopback socket with ``receive_buffer`` (None: the
    system's default) holds before the kernel drops them."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        if receive_buffer is not None:
            sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as source:
            for _ in range(20_000):
                source.sendto(QUESTION.to_wire(), sink.getsockname())
        sink.setblocking(False)
        held = 0
        while True:
            try:
                sink.recv(512)
            except BlockingIOError:
                return held
            held += 1


def test_a_burst_to_a_stopped_worker_is_answered_in_full(
    start: Any,  # noqa: F811
    upstream: FakeUpstream,
) -> None:
    default, enlarged = queue_capacity(None), queue_capacity(UDP_RECEIVE_BUFFER)
    # net.core.rmem_max caps the enlarged buffer; at Linux's own default cap (208 KiB)
    # it still holds twice the default queue.
    assert enlarged >= 2 * default, (default, enlarged)
    burst = min((default + enlarged) // 2, 2_000)
    server = start(config_for([upstream.server_spec], 2))
    host, port = server.address
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
    client.settimeout(10)
    stopped = workers_of(server)
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        for ident in range(burst):
            QUESTION.id = ident
            client.sendto(QUESTION.to_wire(), (host, port))
        time.sleep(0.2)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    answered: set[int] = set()
    while len(answered) < burst:
        try:
            reply = dns.message.from_wire(client.recv(4096))
        except TimeoutError:
            break
        assert reply.rcode() == dns.rcode.NXDOMAIN
        answered.add(reply.id)
    client.close()
    assert len(answered) == burst, f"{burst - len(answered)} of {burst} lost ({default=})"
