"""Questions over a connection (TCP, DoT, DoH) answered by the worker that owns their
name.

The kernel steers each UDP question to the worker that owns its name
(``serve.steering``), but connections are accepted by whichever worker is free. A
question that arrives on a connection at a worker that does not own its name is handed,
raw, to the owner over a UNIX datagram socket; the owner runs it through its pipeline
(its cache, its stale copies, its counters and audit trail) as a question from the same
client over the same protocol, and hands the answer back to be written on the
connection (framed, padded or wrapped in HTTP there). Whether a question is a hit then
depends only on its name, never on which worker took the connection.

The supervisor binds one such socket per worker (abstract addresses, gone with it)
before any worker starts, so a restarted worker gets its predecessor's address.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import socket
from typing import Any, Final

from resolver.dns import responses, wire
from resolver.dns.codec import parse_query
from resolver.dns.model import Answer, Handler, Outcome, Query
from resolver.metrics import Metrics
from resolver.serve.steering import owner
from resolver.serve.transport import Later, QueryRunner

log = logging.getLogger(__name__)

# An owner that does not answer within this is taken for dead (it is being restarted).
RELAY_TIMEOUT: Final = 5.0


def relay_sockets(workers: int) -> list[socket.socket]:
    """One datagram socket per worker, bound to an abstract address of this process."""
    sockets = []
    for index in range(workers):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(f"\0aiwall-{os.getpid()}-relay-{index}")
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


class RelayingRunner(QueryRunner):
    """A worker's query runner: questions on connections, for names another worker owns,
    go there."""

    def __init__(
        self,
        head: Handler,
        metrics: Metrics,
        index: int,
        sockets: list[socket.socket],
    ) -> None:
        super().__init__(head, metrics)
        self._index = index
        self._workers = len(sockets)
        self._sock = sockets[index]
        self._addresses = [sock.getsockname() for sock in sockets]
        self._ids = itertools.count(1)
        # Each relayed question waits as a future in ``pending``, so that a worker
        # stopping waits for the answers other workers owe it, as for its own.
        self._waiting: dict[int, tuple[Query, Later, Any, asyncio.Future[Answer]]] = {}
        self.relayed = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self._sock.fileno(), self._on_readable)

    def answer_now(self, query: Query, later: Later, context: Any) -> Answer | None:
        if query.protocol == "udp" or self._workers < 2 or not query.qname:
            return super().answer_now(query, later, context)
        target = owner(query.qname, self._workers)
        if target == self._index:
            return super().answer_now(query, later, context)
        ident = next(self._ids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self.pending.add(future)
        future.add_done_callback(self.pending.discard)
        timer = loop.call_later(RELAY_TIMEOUT, self._gave_up, ident)
        future.add_done_callback(lambda _done: timer.cancel())
        self._waiting[ident] = (query, later, context, future)
        message = pickle.dumps(
            ("question", ident, self._index, query.client, query.raw, query.protocol)
        )
        try:
            self._sock.sendto(message, self._addresses[target])
        except OSError as error:
            log.warning("cannot relay a question to worker %d: %s", target, error)
            self._gave_up(ident)
            return None
        self.relayed += 1
        return None

    def _gave_up(self, ident: int) -> None:
        waiting = self._waiting.pop(ident, None)
        if waiting is not None:
            query, later, context, future = waiting
            answer = responses.error(query, wire.SERVFAIL, Outcome.SERVFAIL)
            self.metrics.count_response(Outcome.SERVFAIL, wire.SERVFAIL)
            future.set_result(answer)
            later(query, answer, context)

    def _on_readable(self) -> None:
        while True:
            try:
                data = self._sock.recv(1 << 17)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.debug("relay receive error: %s", error)
                return
            message = pickle.loads(data)
            if message[0] == "question":
                self._answer(*message[1:])
            else:
                self._answered(*message[1:])

    def _answer(self, ident: int, sender: int, client: str, raw: bytes, protocol: str) -> None:
        """A question relayed to us: answer it as if it had come over ``protocol`` here."""
        query = parse_query(raw, protocol, client)
        if query is None:
            return
        address = self._addresses[sender]

        def reply(query: Query, answer: Answer, _context: Any) -> None:
            try:
                self._sock.sendto(pickle.dumps(("answer", ident, answer)), address)
            except OSError as error:
                log.debug("cannot return a relayed answer to worker %d: %s", sender, error)

        answer = super().answer_now(query, reply, None)
        if answer is not None:
            reply(query, answer, None)

    def _answered(self, ident: int, answer: Answer) -> None:
        waiting = self._waiting.pop(ident, None)
        if waiting is None:
            return  # given up on already
        query, later, context, future = waiting
        future.set_result(answer)
        later(query, answer, context)
