"""The UDP sockets to an upstream (``resolver.upstream.udp``) on real loopback sockets:
which socket is reused for the next question and which is closed."""

from __future__ import annotations

import asyncio
import os
import socket

import dns.message
import dns.rrset

from resolver.dns import wire
from resolver.upstream.udp import Expected, UdpSocket, UdpSockets


def _question(name: str, ident: int) -> tuple[bytes, bytes, Expected]:
    """A query, the upstream's answer to it and what our check expects."""
    query = dns.message.make_query(name, "A", id=ident, use_edns=False)
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1"))
    data = query.to_wire()
    end = wire.skip_name(data, 12)
    return data, response.to_wire(), Expected(ident, data[12:end].lower(), data[end : end + 4])


class _Upstream:
    """A bare loopback UDP socket that answers what the test tells it to."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()

    async def exchange(self, pool: UdpSockets, name: str, ident: int) -> UdpSocket:
        """One question on a socket from ``pool``, answered; the socket is released."""
        query, answer, expected = _question(name, ident)
        sock = pool.acquire()
        future = sock.ask(query, expected, 2.0)
        loop = asyncio.get_running_loop()
        received, client = await loop.sock_recvfrom(self.sock, 512)
        assert received == query
        self.client = client
        self.sock.sendto(answer, client)
        await future
        pool.release(sock, answered=True)
        return sock


def test_a_clean_socket_is_reused_and_one_that_read_a_stray_datagram_is_not() -> None:
    async def scenario() -> None:
        upstream = _Upstream()
        reasons: list[str] = []
        pool = UdpSockets(
            asyncio.get_running_loop(), upstream.address, socket.AF_INET, reasons.append
        )
        first = await upstream.exchange(pool, "a.example.", 0x1111)
        assert pool.idle == 1
        assert await upstream.exchange(pool, "b.example.", 0x2222) is first
        # A datagram while nothing is asked on it: a duplicate, or a forger who knows
        # the port. Counted, and the socket is never handed out again.
        _, answer, _ = _question("b.example.", 0x2222)
        upstream.sock.sendto(answer, upstream.client)
        await asyncio.sleep(0.05)
        assert reasons == ["wrong_id"]
        assert await upstream.exchange(pool, "c.example.", 0x3333) is not first
        pool.close()
        upstream.sock.close()

    asyncio.run(scenario())


def test_a_forked_child_lets_go_of_the_sockets_it_inherited() -> None:
    loop = asyncio.new_event_loop()
    upstream = _Upstream()
    pool = UdpSockets(loop, upstream.address, socket.AF_INET, print)
    try:
        sock = loop.run_until_complete(upstream.exchange(pool, "a.example.", 0x1111))
        fd = sock._sock.fileno()
        pid = os.fork()
        if pid == 0:
            try:
                os.fstat(fd)
            except OSError:
                os._exit(0)  # closed in the child
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's socket is untouched, and reused.
        assert loop.run_until_complete(upstream.exchange(pool, "b.example.", 0x2222)) is sock
    finally:
        pool.close()
        upstream.sock.close()
        loop.close()
