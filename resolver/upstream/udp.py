"""Questions to one upstream over UDP, and the check every upstream answer passes
(RFC 5452).

Each question carries a fresh random ID and goes out on a socket *connected* to the
upstream: the kernel drops datagrams from any other address or port (RFC 5452 9.1) and
turns an ICMP "port unreachable" into an error at once, so a refused upstream fails over
in milliseconds instead of a timeout. An answer is accepted only if it carries the ID
sent, echoes the question asked and can be walked to its end; anything else is counted
and ignored while we keep waiting for the real answer until the timeout.

Sockets are reused for *sequential* questions, within tight bounds. Opening a socket,
connecting it and registering it with the event loop, then unregistering and closing
it, was most of what a cache miss cost (more than the whole rest of the path to the
upstream and back); reusing them raised the misses one core answers about 1.5x. RFC 5452
9.2 asks for an unpredictable source port and ID per query and for several ports used
at once; it does not ask for a new port per query (CoreDNS's forward plugin keeps its
upstream sockets for 10 s). What keeps a blind forger's odds where a fresh socket per
question left them:
- a socket's port is picked at random by the kernel when it is connected; a socket
  carries one question at a time, so questions in flight are on distinct ports;
- a socket serves at most ``MAX_USES`` questions and is closed at most ``MAX_AGE``
  seconds after it was opened, whether busy or idle: a port learnt through a side
  channel (the ICMP rate-limit probing of SAD DNS needs seconds per port range) is worth
  a second at most. Each socket's lifetime is drawn at random (0.45-0.9 s; an idle
  socket is closed by the sweep within ``SWEEP_EVERY`` of its end): sockets opened
  together (a burst of misses) would otherwise all expire together, and be closed and
  replaced in one callback, once a second;
- a socket on which anything but the genuine answer was read (a forgery, garbage, a
  late or duplicate answer, a datagram while idle) is closed at once, never reused: its
  port is known to someone;
- a socket whose question did not end with the genuine answer (timeout, ICMP error, the
  client gone) is closed too, so a late answer never meets a later question;
- probes of the upstream's health always use a socket of their own, opened for them.

The exchange is a future completed from the socket's reader callback: no task, and no
timer of its own either (its timeout is a line in its pool's ``Deadlines``). Its owner
may also ask to be called at once when it completes (``on_reply``), in the same
callback, rather than on the event loop's next turn as a future's callbacks are.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from resolver.dns import wire
from resolver.upstream.deadlines import Deadlines
from resolver.upstream.streams import Rejected

# A socket carries at most this many questions, and lives at most this long (seconds).
MAX_USES: Final = 100
MAX_AGE: Final = 1.0
# Idle sockets past their lifetime are closed by a sweep this often (while any is idle),
# so a lifetime is at most MAX_AGE - SWEEP_EVERY: none is open past MAX_AGE.
SWEEP_EVERY: Final = 0.1
# A socket's lifetime is that, less up to this share of it, drawn at random.
AGE_SPREAD: Final = 0.5
# Idle sockets kept per upstream; beyond this a socket is closed once its question ends.
MAX_IDLE: Final = 256

# Created non-blocking where the system can (Linux): one system call fewer than
# socket() then setblocking(False).
_NONBLOCK: Final[int] = getattr(socket, "SOCK_NONBLOCK", 0)

Reply = tuple[bytes, wire.ResponseScan]


# Not frozen, and its own __init__: a frozen one costs a microsecond per question, and
# the decorator's runs as bytecode even compiled (resolver.dns.model, Query).
@dataclass(slots=True, init=False)
class Expected:
    ident: int
    qname: bytes  # lowercase wire form
    type_class: bytes  # the 4 bytes after the name

    def __init__(self, ident: int, qname: bytes, type_class: bytes) -> None:
        self.ident = ident
        self.qname = qname
        self.type_class = type_class


def check(data: bytes, expected: Expected) -> wire.ResponseScan:
    """Raise Rejected unless ``data`` is the answer to our question."""
    if len(data) < 12:
        raise Rejected("malformed")
    ident, flags, qdcount = wire.HEADER.unpack_from(data)[:3]
    if ident != expected.ident:
        raise Rejected("wrong_id")
    if not flags & wire.QR or flags & wire.OPCODE_MASK or qdcount != 1:
        raise Rejected("malformed")
    name_end = 12 + len(expected.qname)
    if (
        data[12:name_end].lower() != expected.qname
        or data[name_end : name_end + 4] != expected.type_class
    ):
        raise Rejected("wrong_question")
    try:
        # The question is ours, just compared: the walk starts after it.
        return wire.scan_response(data, name_end + 4)
    except wire.WireError:
        raise Rejected("malformed") from None


class UdpSocket:
    """One socket connected to the upstream, carrying one question at a time."""

    __slots__ = (
        "_deadlines",
        "_expected",
        "_fd",
        "_loop",
        "_rejected",
        "_sock",
        "clean",
        "deadline",
        "expires",
        "future",
        "on_reply",
        "uses",
    )

    def __init__(self, pool: UdpSockets) -> None:
        """Opened to ``pool``'s upstream, on its loop."""
        loop = self._loop = pool.loop
        self._rejected = pool.rejected
        self._deadlines = pool.deadlines
        self.deadline = 0.0  # when the question in flight times out (0: none)
        self._expected: Expected | None = None
        self.future: asyncio.Future[Reply] | None = None
        # Called with the future as soon as it completes, whatever the end (answer,
        # error, timeout, cancel); once per question.
        self.on_reply: Callable[[asyncio.Future[Reply]], None] | None = None
        self.uses = 0
        self.clean = True  # nothing but genuine answers was ever read on it
        # Not secret, so not from the CSPRNG: the spread only keeps sockets opened
        # together from expiring together.
        lifetime = (MAX_AGE - SWEEP_EVERY) * (1.0 - AGE_SPREAD * random.random())
        self.expires = loop.time() + lifetime
        sock = self._sock = socket.socket(pool.family, socket.SOCK_DGRAM | _NONBLOCK)
        self._fd = -1
        try:
            if not _NONBLOCK:
                sock.setblocking(False)
            # The kernel binds it to a random ephemeral port here.
            sock.connect(pool.address)
            fd = sock.fileno()
            loop.add_reader(fd, self._readable)
            self._fd = fd
        except BaseException:
            sock.close()
            raise

    def ask(self, message: bytes, expected: Expected) -> asyncio.Future[Reply]:
        """Send ``message``; the future is completed with the answer, or fails with
        ``TimeoutError`` (after the pool's timeout) or ``OSError``. The owner calls
        ``UdpSockets.release`` after."""
        self.uses += 1
        self._expected = expected
        future = self.future = self._loop.create_future()
        self._sock.send(message)
        self.deadline = self._deadlines.add(self)
        return future

    def _readable(self) -> None:
        while True:
            try:
                data = self._sock.recv(65535)
            except BlockingIOError:
                return
            except OSError as error:
                # ICMP port or host unreachable for what we sent: no answer will come.
                self.clean = False
                if self.future is not None and not self.future.done():
                    self.future.set_exception(error)
                    self._tell(self.future)
                return
            future, expected = self.future, self._expected
            if future is None or expected is None or future.done():
                # Nothing asked on this socket now: a forgery or a duplicate.
                self.clean = False
                self._rejected("wrong_id")
                continue
            try:
                scan = check(data, expected)
            except Rejected as rejected:
                self.clean = False
                self._rejected(rejected.reason)
                continue
            future.set_result((data, scan))
            self._tell(future)
            # Anything after the answer is read on the next call, as a stray datagram;
            # draining on here would cost a failed recv per question.
            return

    def expire(self) -> None:
        """The question's deadline passed (``Deadlines``)."""
        self.deadline = 0.0
        if self.future is not None and not self.future.done():
            self.future.set_exception(TimeoutError())
            self._tell(self.future)

    def cancel(self) -> None:
        """Give up on the question (its client is gone, the server stops)."""
        if self.future is not None and not self.future.done():
            self.future.cancel()
            self._tell(self.future)

    def _tell(self, future: asyncio.Future[Reply]) -> None:
        on_reply, self.on_reply = self.on_reply, None
        if on_reply is not None:
            on_reply(future)

    def finish(self) -> None:
        """The question is over, whatever its end."""
        self.deadline = 0.0  # its line in the deadlines is passed over
        self.future = None
        self.on_reply = None
        self._expected = None

    def close(self) -> None:
        self.cancel()  # a question it carries is given up on: its owner is told
        self.finish()
        if self._fd >= 0:
            if not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
            self._fd = -1
        self._sock.close()

    def abandon(self) -> None:
        """In a forked child: let go of the file descriptor, which the parent's loop
        still watches (the child never runs that loop)."""
        self._fd = -1
        self._sock.close()


class UdpSockets:
    """The sockets to one upstream: idle ones wait (newest first) for the next question.
    Belongs to one event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        address: tuple[str, int],
        family: socket.AddressFamily,
        rejected: Callable[[str], None],
        timeout: float,
    ) -> None:
        """``rejected`` is told the reason of every datagram that is not the answer;
        a question not answered within ``timeout`` seconds fails."""
        self.loop = loop
        self.address = address
        self.family = family
        self.rejected = rejected
        self.deadlines = Deadlines(loop, timeout)
        self._idle: list[UdpSocket] = []
        self._open: set[UdpSocket] = set()  # idle or carrying a question
        self._sweep: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> int:
        return len(self._idle)

    def acquire(self, reuse: bool = True) -> UdpSocket:
        """A socket for one question: an idle one when ``reuse`` and one is young enough,
        else a new one (a new random port)."""
        idle = self._idle
        if reuse and idle:
            now = self.loop.time()
            while idle:
                sock = idle.pop()
                if sock.expires > now and sock.clean:
                    return sock
                self._close(sock)
        sock = UdpSocket(self)
        self._open.add(sock)
        _OPEN.add(self)
        return sock

    def release(self, sock: UdpSocket, answered: bool, reuse: bool = True) -> None:
        """The question on ``sock`` is over; ``answered``: it got its genuine answer."""
        sock.finish()
        if (
            reuse
            and answered
            and sock.clean
            and sock.uses < MAX_USES
            and sock.expires > self.loop.time()
            and len(self._idle) < MAX_IDLE
        ):
            self._idle.append(sock)
            if self._sweep is None:
                self._sweep = self.loop.call_later(SWEEP_EVERY, self._expire_idle)
        else:
            self._close(sock)

    def _close(self, sock: UdpSocket) -> None:
        self._open.discard(sock)
        sock.close()
        if not self._open:
            _OPEN.discard(self)

    def _expire_idle(self) -> None:
        """No socket outlives its lifetime, even when no question comes to reuse it."""
        self._sweep = None
        now = self.loop.time()
        kept: list[UdpSocket] = []
        for sock in self._idle:
            if sock.expires > now:
                kept.append(sock)
            else:
                self._close(sock)
        self._idle = kept
        if kept:
            self._sweep = self.loop.call_later(SWEEP_EVERY, self._expire_idle)

    def close(self) -> None:
        """Close every socket, idle or carrying a question (whose owner is told)."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for sock in list(self._open):
            self._close(sock)
        self._idle.clear()
        self.deadlines.close()
        _OPEN.discard(self)

    def _forget_in_child(self) -> None:
        self._sweep = None
        for sock in self._open:
            sock.abandon()
        self._open.clear()
        self._idle.clear()
        self.deadlines.forget()


# The pools of this process with a socket open, so that a forked child (a worker) closes
# the sockets it inherited: only the parent reads them. A pool is in it from its first
# socket opened to its last closed, so a pool dropped with its pipeline (a reload) leaves
# it once its idle sockets expire. (A set, not weak references: compiled, see
# resolver.compiled, a pool cannot be weakly referenced.)
_OPEN: Final[set[UdpSockets]] = set()


def _after_fork_in_child() -> None:
    for pool in list(_OPEN):
        pool._forget_in_child()
    _OPEN.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
