"""How long one wake-up of the UDP listener holds the event loop
(``transport.UdpListener._on_readable``): cheap answers are read in batches of up to
``UDP_BATCH`` datagrams, but a batch stops at the first chunk boundary past
``UDP_BATCH_TIME``, so dear ones (cache misses) never keep the upstreams' answers and the
loop's timers waiting for a whole batch. Real loopback sockets, a fake pipeline."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import dns.message
import pytest

from resolver.dns import responses, wire
from resolver.dns.model import Outcome, Query, Resolution
from resolver.metrics import Metrics
from resolver.serve import transport
from resolver.serve.transport import QueryRunner, UdpListener


class _Pipeline:
    """Answers every query at once, after spending ``cost`` seconds on it."""

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.name = "slow"

    def handle(self, query: Query) -> Resolution:
        until = time.perf_counter() + self.cost
        while time.perf_counter() < until:
            pass
        return responses.error(query, wire.NOERROR, Outcome.FORWARDED)


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(2)
    try:
        yield server, client
    finally:
        server.close()
        client.close()


def _answered_in_one_wake_up(
    sockets: tuple[socket.socket, socket.socket], cost: float, queued: int
) -> int:
    server, client = sockets
    listener = UdpListener(server, QueryRunner(_Pipeline(cost), Metrics()))
    for ident in range(queued):
        query = dns.message.make_query(f"q{ident}.example.", "A", id=ident)
        client.sendto(query.to_wire(), server.getsockname())
    time.sleep(0.05)  # every datagram in the server's receive buffer
    listener._on_readable()
    client.settimeout(0.2)
    answered = 0
    try:
        while True:
            client.recv(4096)
            answered += 1
    except TimeoutError:
        return answered


def test_a_wake_up_reads_at_most_a_batch(sockets, monkeypatch: pytest.MonkeyPatch) -> None:
    # Within its time, a batch is several chunks, and no more than UDP_BATCH datagrams.
    monkeypatch.setattr(transport, "UDP_BATCH_TIME", 60.0)
    assert transport.UDP_BATCH > transport.UDP_CHUNK
    queued = transport.UDP_BATCH + 10
    assert _answered_in_one_wake_up(sockets, 0.0, queued) == transport.UDP_BATCH


def test_dear_answers_end_the_batch_at_the_first_chunk_past_its_time(sockets) -> None:
    # Each answer costs a whole batch's time: the first chunk is answered, then the
    # listener gives the loop back; the rest wait for its next wake-up.
    cost = transport.UDP_BATCH_TIME / transport.UDP_CHUNK * 2
    answered = _answered_in_one_wake_up(sockets, cost, transport.UDP_BATCH + 10)
    assert answered == transport.UDP_CHUNK
