"""A programmable fake upstream DNS resolver for integration tests.

The fake plays "the real resolvers" behind aiwall. It runs in its own thread with
its own asyncio event loop so that it keeps answering no matter what the test's
loop (or the server under test) is doing, and it listens on UDP and TCP on the
same ephemeral loopback port, like a real resolver on port 53.

Behaviour is programmed per name (lowercase, no trailing dot) with the ``set_*``
methods; they are safe to call from the test thread while the fake is running and
apply to queries received after the call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = [
    "DEFAULT_A",
    "DEFAULT_AAAA",
    "DEFAULT_TTL",
    "FORGED_A",
    "FORGED_QNAME",
    "FORGERY_KINDS",
    "FakeUpstream",
    "Received",
    "ipv6_loopback_available",
]

DEFAULT_A = "198.51.100.7"
DEFAULT_AAAA = "2001:db8::7"
DEFAULT_TTL = 300
DEFAULT_SOA_MINIMUM = 300
OUR_PAYLOAD = 1232
FORGED_A = "6.6.6.6"
FORGED_QNAME = "forged.example."
FORGERY_KINDS = frozenset(
    {"wrong-id", "wrong-question", "wrong-source", "malformed", "truncated-garbage"}
)
# RFC 5452 tests need the forged packet to land first and stay distinguishable in time.
FORGERY_GAP = 0.05
MAX_CNAME_HOPS = 8
# Tests wait on the thread with these; generous so a loaded CI box does not flake.
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
BIND_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class Received:
    """One query as the fake saw it on the wire."""

    name: str
    rrtype: str
    transport: str
    source: tuple[str, int]
    id: int
    edns: bool
    do: bool
    payload: int | None
    raw: bytes


@dataclass(frozen=True, slots=True)
class _Soa:
    ttl: int
    minimum: int


@dataclass(slots=True)
class _Behaviour:
    """Everything programmed for the fake, copied under the lock when a query arrives."""

    records: dict[tuple[str, int], tuple[int, list[dns.rdata.Rdata]]] = field(default_factory=dict)
    rcodes: dict[str, dns.rcode.Rcode] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    late: dict[str, float] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)
    silent_all: bool = False
    big_txt: dict[str, int] = field(default_factory=dict)
    forgeries: dict[str, str] = field(default_factory=dict)
    soas: dict[str, _Soa] = field(default_factory=dict)


def _key(name: str | dns.name.Name) -> str:
    """Normalise a name to the lookup key: lowercase, no trailing dot, root is ""."""
    if isinstance(name, str):
        name = dns.name.from_text(name)
    if name == dns.name.root:
        return ""
    return name.to_text(omit_final_dot=True).lower()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def ipv6_loopback_available() -> bool:
    """True if ::1 can be bound; tests for IPv6 upstreams skip otherwise."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _bind_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """Bind a UDP and a TCP socket on the same ephemeral port.

    The kernel picks a free UDP port, but that port may be taken for TCP by
    someone else, hence the retries.
    """
    family = _family(host)
    last_error: OSError | None = None
    for _ in range(BIND_ATTEMPTS):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                # Lets a quickly restarted fake reuse a port whose old connections sit in TIME_WAIT.
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((host, port))
                tcp.listen(64)
            except OSError as exc:
                tcp.close()
                if exc.errno != errno.EADDRINUSE:
                    raise
                last_error = exc
                udp.close()
                continue
        except BaseException:
            udp.close()
            raise
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {host}") from last_error


def _zone_of(name: dns.name.Name) -> dns.name.Name:
    """A plausible zone apex for negative answers: the last two labels (always in bailiwick)."""
    labels = name.labels
    if len(labels) <= 3:
        return name
    return dns.name.Name(labels[-3:])


def _soa_rrset(name: dns.name.Name, soa: _Soa) -> dns.rrset.RRset:
    zone = _zone_of(name)
    # Built from labels, not text, so the root zone gives "ns1." rather than "ns1..".
    mname = dns.name.Name((b"ns1", *zone.labels))
    rname = dns.name.Name((b"hostmaster", *zone.labels))
    rdata = dns.rdata.from_text(
        dns.rdataclass.IN,
        dns.rdatatype.SOA,
        f"{mname} {rname} 1 3600 600 86400 {soa.minimum}",
        origin=dns.name.root,
        relativize=False,
    )
    return dns.rrset.from_rdata(zone, soa.ttl, rdata)


def _big_txt_rdata(size: int) -> dns.rdata.Rdata:
    """A single TXT rdata whose wire length alone exceeds ``size``."""
    strings: list[str] = []
    total = 0
    while total <= size:
        strings.append('"' + "a" * 255 + '"')
        total += 256
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, " ".join(strings))


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: FakeUpstream) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._owner._on_udp(data, addr)


class FakeUpstream:
    """Fake recursive resolver on loopback; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.queries: list[Received] = []
        # Datagrams/frames that dnspython could not parse as a query, for "never sends garbage".
        self.bad_packets: list[bytes] = []
        # Exceptions raised while answering: a fixture can assert this stays empty.
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._behaviour = _Behaviour()
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._udp_sock: socket.socket | None = None
        self._tcp_sock: socket.socket | None = None
        self._forger_sock: socket.socket | None = None
        self._udp_transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FakeUpstream:
        if self._thread is not None:
            raise RuntimeError("FakeUpstream already started")
        # Bind in the caller's thread so bind errors surface as plain exceptions here.
        self._udp_sock, self._tcp_sock = _bind_pair(self.host)
        self._port = self._udp_sock.getsockname()[1]
        self._forger_sock = socket.socket(_family(self.host), socket.SOCK_DGRAM)
        self._forger_sock.bind((self.host, 0))
        self._forger_sock.setblocking(False)
        self._thread = threading.Thread(
            target=self._thread_main, name=f"FakeUpstream-{self._port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("FakeUpstream did not start in time")
        if self._start_error is not None:
            error = self._start_error
            self.stop()
            raise RuntimeError("FakeUpstream failed to start") from error
        return self

    def stop(self) -> None:
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(STOP_TIMEOUT)
        for sock in (self._udp_sock, self._tcp_sock, self._forger_sock):
            if sock is not None:
                sock.close()
        # A stopped fake may be started again (on a new port).
        self._thread = None
        self._ready.clear()
        self._start_error = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        if self._port is None:
            raise RuntimeError("FakeUpstream not started")
        return (self.host, self._port)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def server_spec(self) -> str:
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def forger_address(self) -> tuple[str, int]:
        """Where "wrong-source" forgeries come from."""
        if self._forger_sock is None:
            raise RuntimeError("FakeUpstream not started")
        addr = self._forger_sock.getsockname()
        return (addr[0], addr[1])

    # ------------------------------------------------------------ query records

    def clear(self) -> None:
        """Forget recorded queries (programmed behaviour stays; see reset())."""
        with self._lock:
            self.queries.clear()
            self.bad_packets.clear()

    def reset(self) -> None:
        """Forget recorded queries and all programmed behaviour."""
        with self._lock:
            self.queries.clear()
            self.bad_packets.clear()
            self._behaviour = _Behaviour()

    def answer_count(self, name: str) -> int:
        """How many queries for ``name`` (any type, any transport) were received."""
        key = _key(name)
        with self._lock:
            return sum(1 for q in self.queries if q.name == key)

    def queries_for(self, name: str) -> list[Received]:
        key = _key(name)
        with self._lock:
            return [q for q in self.queries if q.name == key]

    def wait_for_queries(self, count: int, timeout: float = 2.0, name: str | None = None) -> bool:
        """Block until at least ``count`` queries (for ``name``, if given) were received."""
        key = None if name is None else _key(name)

        def enough() -> bool:
            return sum(1 for q in self.queries if key is None or q.name == key) >= count

        with self._cond:
            return self._cond.wait_for(enough, timeout)

    # -------------------------------------------------------------- programming

    def set_records(
        self, name: str, rrtype: str, values: list[str], ttl: int = DEFAULT_TTL
    ) -> None:
        """Answer ``name``/``rrtype`` with ``values``; an empty list means NODATA.

        Values are rdata text, relative names are taken as absolute. A CNAME is
        followed within the fake's own data, so queries of other types get the
        chain plus the target's records (or the default address).
        """
        rdtype = dns.rdatatype.from_text(rrtype.upper())
        rdatas = [
            dns.rdata.from_text(
                dns.rdataclass.IN, rdtype, v, origin=dns.name.root, relativize=False
            )
            for v in values
        ]
        with self._lock:
            self._behaviour.records[(_key(name), rdtype)] = (ttl, rdatas)

    def set_rcode(self, name: str, rcode: str) -> None:
        """Answer ``name`` with this rcode; NXDOMAIN (and NOERROR) carry an SOA in authority."""
        code = dns.rcode.from_text(rcode.upper())
        with self._lock:
            self._behaviour.rcodes[_key(name)] = code

    def set_soa(
        self, name: str, ttl: int = DEFAULT_TTL, minimum: int = DEFAULT_SOA_MINIMUM
    ) -> None:
        """Set the SOA TTL/minimum used in negative answers (NXDOMAIN, NODATA) for ``name``."""
        with self._lock:
            self._behaviour.soas[_key(name)] = _Soa(ttl, minimum)

    def set_delay(self, name: str, seconds: float) -> None:
        with self._lock:
            self._behaviour.delays[_key(name)] = seconds

    def set_late(self, name: str, seconds: float) -> None:
        """Like set_delay (the two add up); named for RFC 5452 late-arrival tests."""
        with self._lock:
            self._behaviour.late[_key(name)] = seconds

    def set_silent(self, name: str | None = None) -> None:
        """Never answer ``name`` (None: never answer anything). Queries are still recorded."""
        with self._lock:
            if name is None:
                self._behaviour.silent_all = True
            else:
                self._behaviour.silent.add(_key(name))

    def set_big_txt(self, name: str, size: int = 1500) -> None:
        """TXT queries for ``name`` get an answer whose TXT rdata alone exceeds ``size`` bytes."""
        if not 0 < size <= 60000:
            raise ValueError("size must be in 1..60000 to fit a DNS message")
        with self._lock:
            self._behaviour.big_txt[_key(name)] = size

    def set_forgery(self, name: str, kind: str) -> None:
        """Over UDP, send a forged packet of ``kind`` 50 ms before the genuine answer."""
        if kind not in FORGERY_KINDS:
            raise ValueError(
                f"unknown forgery kind {kind!r}; expected one of {sorted(FORGERY_KINDS)}"
            )
        with self._lock:
            self._behaviour.forgeries[_key(name)] = kind

    # -------------------------------------------------------------- event loop

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start() if it happens before ready
            self._start_error = self._start_error or exc
            self._ready.set()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop_event = asyncio.Event()
        assert self._udp_sock is not None
        assert self._tcp_sock is not None
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), sock=self._udp_sock
            )
            self._udp_transport = transport
            server = await asyncio.start_server(self._on_tcp, sock=self._tcp_sock)
        except BaseException as exc:
            self._start_error = exc
            self._ready.set()
            raise
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            server.close()
            for writer in list(self._writers):
                writer.close()
            transport.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        # The loop keeps only weak references to tasks; hold them until done.
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # A bug in the fake would otherwise look like a silent upstream to the test.
            with self._lock:
                self.errors.append(exc)
            traceback.print_exception(exc, file=sys.stderr)

    def _parse_and_record(
        self, data: bytes, source: tuple[str, int], transport: str
    ) -> tuple[dns.message.Message, _Behaviour] | None:
        """Parse a query and record it; done synchronously on arrival to keep arrival order."""
        try:
            query = dns.message.from_wire(data)
        except Exception:
            with self._lock:
                self.bad_packets.append(data)
            return None
        if query.flags & dns.flags.QR or len(query.question) != 1:
            with self._lock:
                self.bad_packets.append(data)
            return None
        question = query.question[0]
        received = Received(
            name=_key(question.name),
            rrtype=dns.rdatatype.to_text(question.rdtype),
            transport=transport,
            source=(source[0], source[1]),
            id=query.id,
            edns=query.edns >= 0,
            do=bool(query.ednsflags & dns.flags.DO),
            payload=query.payload if query.edns >= 0 else None,
            raw=data,
        )
        with self._cond:
            self.queries.append(received)
            self._cond.notify_all()
            behaviour = self._snapshot()
        return query, behaviour

    def _snapshot(self) -> _Behaviour:
        b = self._behaviour
        return _Behaviour(
            records=dict(b.records),
            rcodes=dict(b.rcodes),
            delays=dict(b.delays),
            late=dict(b.late),
            silent=set(b.silent),
            silent_all=b.silent_all,
            big_txt=dict(b.big_txt),
            forgeries=dict(b.forgeries),
            soas=dict(b.soas),
        )

    # --------------------------------------------------------------------- UDP

    def _on_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        parsed = self._parse_and_record(data, addr, "udp")
        if parsed is not None:
            self._spawn(self._answer_udp(parsed[0], parsed[1], addr))

    async def _answer_udp(
        self, query: dns.message.Message, behaviour: _Behaviour, addr: tuple[str, int]
    ) -> None:
        key = _key(query.question[0].name)
        if not await self._wait_before_answer(key, behaviour):
            return
        response = self._build_response(query, behaviour)
        kind = behaviour.forgeries.get(key)
        if kind is not None:
            await self._send_forgery(kind, query, addr)
            await asyncio.sleep(FORGERY_GAP)
        limit = max(512, query.payload) if query.edns >= 0 else 512
        wire = response.to_wire(max_size=65535)
        if len(wire) > limit:
            response.answer.clear()
            response.authority.clear()
            response.additional.clear()
            response.flags |= dns.flags.TC
            wire = response.to_wire(max_size=65535)
        assert self._udp_transport is not None
        if not self._udp_transport.is_closing():
            self._udp_transport.sendto(wire, addr)

    async def _send_forgery(
        self, kind: str, query: dns.message.Message, addr: tuple[str, int]
    ) -> None:
        assert self._udp_transport is not None
        if kind == "malformed":
            self._udp_transport.sendto(os.urandom(7), addr)
            return
        if kind == "wrong-question":
            decoy = dns.message.make_query(FORGED_QNAME, "A")
            decoy.id = query.id
            decoy.flags = query.flags
            forged = _forged_answer(decoy)
        else:
            forged = _forged_answer(query)
        if kind == "wrong-id":
            forged.id = (query.id + 1) & 0xFFFF
        if kind == "truncated-garbage":
            # No OPT, so the answer record is the last thing on the wire and cutting
            # 8 bytes off leaves ANCOUNT=1 with half a record.
            forged.use_edns(False)
            wire = forged.to_wire(max_size=65535)[:-8]
        else:
            wire = forged.to_wire(max_size=65535)
        if kind == "wrong-source":
            assert self._forger_sock is not None
            await asyncio.get_running_loop().sock_sendto(self._forger_sock, wire, addr)
        else:
            self._udp_transport.sendto(wire, addr)

    # --------------------------------------------------------------------- TCP

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        source = (str(peer[0]), int(peer[1]))
        write_lock = asyncio.Lock()
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    prefix = await reader.readexactly(2)
                    data = await reader.readexactly(struct.unpack("!H", prefix)[0])
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                parsed = self._parse_and_record(data, source, "tcp")
                if parsed is None:
                    continue
                # One task per query so a delayed answer does not hold back later ones.
                task = self._spawn(self._answer_tcp(parsed[0], parsed[1], writer, write_lock))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            # The client may have only half-closed; let pending answers go out first.
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer_tcp(
        self,
        query: dns.message.Message,
        behaviour: _Behaviour,
        writer: asyncio.StreamWriter,
        write_lock: asyncio.Lock,
    ) -> None:
        key = _key(query.question[0].name)
        if not await self._wait_before_answer(key, behaviour):
            return
        wire = self._build_response(query, behaviour).to_wire(max_size=65535)
        async with write_lock:
            if writer.is_closing():
                return
            writer.write(struct.pack("!H", len(wire)) + wire)
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    # ---------------------------------------------------------------- answers

    @staticmethod
    async def _wait_before_answer(key: str, behaviour: _Behaviour) -> bool:
        """Apply silence and delay; False means do not answer at all."""
        if behaviour.silent_all or key in behaviour.silent:
            return False
        wait = behaviour.delays.get(key, 0.0) + behaviour.late.get(key, 0.0)
        if wait > 0:
            await asyncio.sleep(wait)
        return True

    @staticmethod
    def _build_response(query: dns.message.Message, behaviour: _Behaviour) -> dns.message.Message:
        response = dns.message.make_response(
            query, recursion_available=True, our_payload=OUR_PAYLOAD
        )
        if query.edns >= 0:
            # RFC 3225: a DO-aware server echoes DO.
            response.use_edns(0, query.ednsflags & dns.flags.DO, OUR_PAYLOAD)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        question = query.question[0]
        qtype = question.rdtype
        name = question.name  # keeps the query's case (0x20) for the owner name
        seen: set[str] = set()
        for _ in range(MAX_CNAME_HOPS):
            key = _key(name)
            seen.add(key)
            rcode = behaviour.rcodes.get(key)
            if rcode is not None:
                response.set_rcode(rcode)
                if rcode in (dns.rcode.NXDOMAIN, dns.rcode.NOERROR):
                    response.authority.append(_soa_rrset(name, _soa_for(key, behaviour)))
                return response
            if qtype == dns.rdatatype.TXT and key in behaviour.big_txt:
                rdata = _big_txt_rdata(behaviour.big_txt[key])
                response.answer.append(dns.rrset.from_rdata(name, DEFAULT_TTL, rdata))
                return response
            programmed = behaviour.records.get((key, qtype))
            if programmed is not None:
                ttl, rdatas = programmed
                if rdatas:
                    response.answer.append(dns.rrset.from_rdata_list(name, ttl, rdatas))
                else:
                    response.authority.append(_soa_rrset(name, _soa_for(key, behaviour)))
                return response
            cname = behaviour.records.get((key, dns.rdatatype.CNAME))
            if cname is not None and cname[1]:
                ttl, rdatas = cname
                response.answer.append(dns.rrset.from_rdata_list(name, ttl, rdatas[:1]))
                target: dns.name.Name = rdatas[0].target  # type: ignore[attr-defined]
                if _key(target) in seen:
                    # A real resolver gives up on a CNAME loop.
                    response.set_rcode(dns.rcode.SERVFAIL)
                    response.answer.clear()
                    return response
                name = target
                continue
            default = {dns.rdatatype.A: DEFAULT_A, dns.rdatatype.AAAA: DEFAULT_AAAA}.get(qtype)
            if default is not None:
                rdata = dns.rdata.from_text(dns.rdataclass.IN, qtype, default)
                response.answer.append(dns.rrset.from_rdata(name, DEFAULT_TTL, rdata))
            else:
                response.authority.append(_soa_rrset(name, _soa_for(key, behaviour)))
            return response
        response.set_rcode(dns.rcode.SERVFAIL)
        response.answer.clear()
        return response


def _soa_for(key: str, behaviour: _Behaviour) -> _Soa:
    return behaviour.soas.get(key, _Soa(DEFAULT_TTL, DEFAULT_SOA_MINIMUM))


def _forged_answer(query: dns.message.Message) -> dns.message.Message:
    forged = dns.message.make_response(query, recursion_available=True, our_payload=OUR_PAYLOAD)
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, FORGED_A)
    forged.answer.append(dns.rrset.from_rdata(query.question[0].name, DEFAULT_TTL, rdata))
    return forged


def main(argv: list[str]) -> int:
    """``python -m tests.fakes.upstream HOST``: serve the defaults (every name resolves)
    on an ephemeral port, print the port, and run until stdin closes. For tests that need
    an upstream inside a network namespace of their own."""
    with FakeUpstream(argv[0] if argv else "127.0.0.1") as fake:
        print(fake.port, flush=True)
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
