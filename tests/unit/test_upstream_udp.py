"""The UDP sockets to an upstream (``resolver.upstream.udp``) on real loopback sockets:
which socket is reused for the next question and which is closed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import dns.message
import dns.rrset

from resolver.dns import wire
from resolver.upstream import udp
from resolver.upstream.udp import MAX_AGE, Expected, UdpSocket, UdpSockets


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
        future = sock.ask(query, expected)
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
            asyncio.get_running_loop(), upstream.address, socket.AF_INET, reasons.append, 2.0
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
    pool = UdpSockets(loop, upstream.address, socket.AF_INET, print, 2.0)
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


def test_a_question_times_out_at_its_own_deadline_not_at_an_earlier_one_on_its_socket() -> None:
    """The pool's deadlines: a socket answered, then reused, must not let the first
    question's deadline cut the second one short; an unanswered one fails on time."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        upstream = _Upstream()
        pool = UdpSockets(loop, upstream.address, socket.AF_INET, print, 0.3)
        first = await upstream.exchange(pool, "a.example.", 0x1111)  # line at ~0.3 s
        await asyncio.sleep(0.15)
        query, _, expected = _question("b.example.", 0x2222)
        sock = pool.acquire()
        assert sock is first  # reused: its first line is still queued
        sent = loop.time()
        future = sock.ask(query, expected)  # never answered: times out at ~0.45 s
        await asyncio.sleep(0.22)  # past the first question's deadline
        assert not future.done()
        try:
            # wait_for's own limit only keeps a broken timer from hanging the test.
            await asyncio.wait_for(asyncio.shield(future), 2.0)
        except TimeoutError:
            waited = loop.time() - sent
        else:
            raise AssertionError("an unanswered question did not time out")
        assert 0.3 <= waited < 0.3 + 0.1
        pool.release(sock, answered=False)
        assert len(pool.deadlines) == 0
        pool.close()
        upstream.sock.close()

    asyncio.run(scenario())


def test_questions_in_flight_each_time_out_in_the_order_they_were_sent() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        upstream = _Upstream()
        pool = UdpSockets(loop, upstream.address, socket.AF_INET, print, 0.2)
        ended: list[tuple[str, float]] = []
        futures = []
        start = loop.time()
        for index, name in enumerate(("a.example.", "b.example.", "c.example.")):
            query, _, expected = _question(name, 0x100 + index)
            sock = pool.acquire()
            future = sock.ask(query, expected)
            future.add_done_callback(lambda _f, n=name: ended.append((n, loop.time() - start)))
            futures.append((sock, future))
            await asyncio.sleep(0.05)
        for sock, future in futures:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(future), 2.0)
            pool.release(sock, answered=False)
        assert [name for name, _ in ended] == ["a.example.", "b.example.", "c.example."]
        for (_, at), sent in zip(ended, (0.0, 0.05, 0.1), strict=True):
            assert 0.2 + sent - 0.01 <= at < 0.2 + sent + 0.08
        pool.close()
        upstream.sock.close()

    asyncio.run(scenario())


def test_sockets_opened_together_do_not_all_expire_together() -> None:
    """A burst of misses opens many sockets at once; closing and replacing them all in
    one callback a second later held the event loop for milliseconds. Their lifetimes
    are spread over the second half of MAX_AGE, and none outlives MAX_AGE."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        upstream = _Upstream()
        pool = UdpSockets(loop, upstream.address, socket.AF_INET, print, 2.0)
        burst = [pool.acquire() for _ in range(40)]
        for sock in burst:
            pool.release(sock, answered=True)
        assert pool.idle == 40
        await asyncio.sleep(0.75 * MAX_AGE)
        assert 0 < pool.idle < 40  # some closed by the sweep, not all
        await asyncio.sleep(0.25 * MAX_AGE + 0.05)
        assert pool.idle == 0
        pool.close()
        upstream.sock.close()

    asyncio.run(scenario())


def test_a_pool_is_closed_in_a_forked_child_only_while_it_has_sockets_open() -> None:
    """The forked child's list of pools to let go of (``udp._OPEN``): a pool enters it with
    its first socket and leaves with its last, so a pool dropped by a reload is not held
    for ever once its sockets are gone."""

    async def scenario() -> None:
        upstream = _Upstream()
        pool = UdpSockets(asyncio.get_running_loop(), upstream.address, socket.AF_INET, print, 2)
        assert pool not in udp._OPEN
        sock = await upstream.exchange(pool, "a.example.", 0x1111)
        assert pool in udp._OPEN  # its socket idles, open, for the next question
        pool.release(pool.acquire(), answered=False)  # the same socket, now closed
        assert sock._fd == -1
        assert pool not in udp._OPEN
        pool.close()
        upstream.sock.close()

    asyncio.run(scenario())
