"""Answering for the ``rpz:`` zones: SOA, NS, AXFR and IXFR, TSIG-signed when a key is set.

Every process that answers DNS has one ``ZoneService``; the listeners hand it the
queries whose name lies in a served zone (``claims``: one suffix test per zone, the only
cost on the query path). The zone itself is read from the files the primary process
writes (``resolver.policy.rpzzone``), so every worker serves the same records for a
serial and the query path never builds anything.

Who may ask: addresses in the zone's ``allow_transfer``; everyone else gets REFUSED for
any name in the zone, so the zone's content never leaks to ordinary clients. With a
TSIG key set, an unsigned request is REFUSED, and a request signed with another key, a
bad MAC or a clock too far off gets NOTAUTH with the TSIG error of RFC 8945 5.2
(BADKEY, BADSIG unsigned; BADTIME signed). Other questions inside the zone are REFUSED.

Transfers run over TCP only (RFC 5936 4.2): over UDP an IXFR gets the current SOA alone,
which tells the client to use TCP when it is out of date (RFC 1995 2), and an AXFR gets
an empty truncated answer. A transfer is written as messages of at most about 16 KB of
records (``rpzzone.CHUNK_BYTES``), yielding to the event loop between messages and
waiting while the client's TCP window is full.

dnspython reads and signs only these messages (TSIG, RFC 8945 4 and 5.3.1 for the
signatures of a multi-message transfer); the query path never imports it.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TSIG
import dns.tsig
from prometheus_client import Counter

from resolver.clients import NetworkMap
from resolver.config import Config
from resolver.config.rpz import RpzZoneConfig
from resolver.dns import wire
from resolver.dns.model import Query
from resolver.metrics import Metrics
from resolver.policy.rpzzone import (
    NS,
    SOA,
    ZoneFile,
    join_pieces,
    read_current,
    read_diff,
    read_zone,
    serial_newer,
    zone_dir,
)

log = logging.getLogger(__name__)

AXFR, IXFR = 252, 251
NOTAUTH = 9
BADSIG, BADKEY, BADTIME = 16, 17, 18
TSIG_TYPE, ANY_CLASS = 250, 255
FUDGE = 300
_HEADER = struct.Struct("!HHHHHH")

_COUNTERS: weakref.WeakKeyDictionary[Metrics, Counter] = weakref.WeakKeyDictionary()


def transfer_counter(metrics: Metrics) -> Counter:
    """``aiwall_rpz_transfers_total``, registered once per metrics registry."""
    counter = _COUNTERS.get(metrics)
    if counter is None:
        counter = Counter(
            "aiwall_rpz_transfers",
            "Requests for the rpz zones, by zone, kind (soa, axfr, ixfr, other) and result "
            "(ok, full: an IXFR answered with the whole zone, refused, unsigned, badkey, "
            "badsig, badtime, formerr, unavailable).",
            ["zone", "kind", "result"],
            registry=metrics.registry,
        )
        _COUNTERS[metrics] = counter
    return counter


@dataclass(slots=True)
class _Signer:
    """Signs one response (or one transfer's messages) as RFC 8945 asks."""

    key: dns.tsig.Key | None
    request: dns.rdtypes.ANY.TSIG.TSIG | None
    ctx: object = None

    def sign(self, message: bytes, *, multi: bool = False, error: int = 0) -> bytes:
        if self.key is None or self.request is None:
            return message
        template = dns.rdtypes.ANY.TSIG.TSIG(  # type: ignore[no-untyped-call]
            dns.rdataclass.ANY,
            dns.rdatatype.TSIG,
            self.key.algorithm,
            0,
            FUDGE,
            b"",
            self.request.original_id,
            error,
            struct.pack("!HI", 0, int(time.time())) if error == BADTIME else b"",
        )
        first = self.ctx is None
        tsig, self.ctx = dns.tsig.sign(  # type: ignore[no-untyped-call]
            message,
            self.key,
            template,
            int(time.time()),
            self.request.mac if first else None,
            self.ctx,
            multi,
        )
        return _with_tsig(message, self.key.name, tsig.to_wire())


def _with_tsig(message: bytes, keyname: dns.name.Name, rdata: bytes | None) -> bytes:
    record = keyname.to_wire() or b"\0"
    record += struct.pack("!HHIH", TSIG_TYPE, ANY_CLASS, 0, len(rdata or b"")) + (rdata or b"")
    arcount = wire.U16.unpack_from(message, 10)[0] + 1
    return message[:10] + wire.U16.pack(arcount) + message[12:] + record


def _unsigned_error(message: bytes, request: dns.message.Message, error: int) -> bytes:
    """RFC 8945 5.3.2: a TSIG with the error and an empty MAC, not signed."""
    assert request.tsig is not None
    sent = request.tsig[0]
    rdata = dns.rdtypes.ANY.TSIG.TSIG(  # type: ignore[no-untyped-call]
        dns.rdataclass.ANY,
        dns.rdatatype.TSIG,
        sent.algorithm,
        sent.time_signed,
        sent.fudge,
        b"",
        sent.original_id,
        error,
        b"",
    )
    return _with_tsig(message, request.tsig.name, rdata.to_wire())


@dataclass(frozen=True, slots=True)
class _Zone:
    config: RpzZoneConfig
    origin: bytes
    directory: Path
    allowed: NetworkMap[bool]
    key: dns.tsig.Key | None


class _Request:
    """One request for a zone, read and checked; ``refusal`` is set when it may not be
    answered (the message to send instead, and the metric's result)."""

    def __init__(self, zone: _Zone, query: Query) -> None:
        self.zone = zone
        self.query = query
        self.kind = {SOA: "soa", AXFR: "axfr", IXFR: "ixfr"}.get(query.qtype, "other")
        self.signer = _Signer(zone.key, None)
        self.message: dns.message.Message | None = None
        self.refusal: tuple[bytes, str] | None = self._check()

    def header(self, rcode: int, answers: int, *, question: bool = True, tc: bool = False) -> bytes:
        query = self.query
        flags = (
            wire.QR | wire.AA | (query.flags & (wire.RD | 0x7800)) | rcode | (wire.TC if tc else 0)
        )
        counts = (1 if question else 0, answers, 0, 0)
        head = _HEADER.pack(query.id, flags, *counts)
        return head + query.raw[12 : query.question_end] if question else head

    def _check(self) -> tuple[bytes, str] | None:
        zone, query = self.zone, self.query
        if query.problem or query.qclass != 1:
            return self.header(wire.FORMERR, 0, question=not query.problem), "formerr"
        if not zone.allowed.lookup(query.client):
            return self.header(wire.REFUSED, 0), "refused"
        try:
            self.message = dns.message.from_wire(query.raw, keyring=False)
        except Exception:  # any unreadable part: dnspython raises many kinds
            return self.header(wire.FORMERR, 0), "formerr"
        if zone.key is None:
            return None
        if self.message.tsig is None:
            return self.header(wire.REFUSED, 0), "unsigned"
        sent = self.message.tsig[0]
        if self.message.tsig.name != zone.key.name or sent.algorithm != zone.key.algorithm:
            return _unsigned_error(self.header(NOTAUTH, 0), self.message, BADKEY), "badkey"
        try:
            dns.message.from_wire(query.raw, keyring={zone.key.name: zone.key})
        except dns.tsig.BadTime:
            self.signer.request = sent
            return self.signer.sign(self.header(NOTAUTH, 0), error=BADTIME), "badtime"
        except Exception:
            return _unsigned_error(self.header(NOTAUTH, 0), self.message, BADSIG), "badsig"
        self.signer.request = sent
        return None

    def client_serial(self) -> int | None:
        """The serial an IXFR request says the client has (RFC 1995 3)."""
        assert self.message is not None
        for rrset in self.message.authority:
            for rdata in rrset:
                if isinstance(rdata, dns.rdtypes.ANY.SOA.SOA):
                    return int(rdata.serial)
        return None


class ZoneService:
    """The rpz zones one process answers for."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self._counter = transfer_counter(metrics)
        self._zones: tuple[_Zone, ...] = ()
        self._loaded: dict[str, ZoneFile] = {}
        self._tasks: set[asyncio.Future[None]] = set()  # transfers in progress
        self.active = False
        self.configure(config)

    def configure(self, config: Config) -> None:
        zones = []
        for index, item in enumerate(config.rpz):
            key = None
            if item.tsig is not None:
                secret = item.tsig.read_secret(config.base_dir, f"rpz[{index}].tsig")
                key = dns.tsig.Key(item.tsig.name, secret, dns.tsig.HMAC_SHA256)
            allowed = NetworkMap(((n.network, True) for n in item.allow_transfer), False)
            directory = zone_dir(config.state_dir, item.name)
            zones.append(_Zone(item, wire.text_to_name(item.name), directory, allowed, key))
        self._zones = tuple(zones)
        # Any zone served? A plain attribute: the listeners read it on every query.
        self.active = bool(zones)

    @property
    def origins(self) -> tuple[bytes, ...]:
        """The wire names of the zones served."""
        return tuple(zone.origin for zone in self._zones)

    def claims(self, query: Query) -> _Zone | None:
        """The zone ``query``'s name lies in, if any (at a label boundary)."""
        qname = query.qname
        for zone in self._zones:
            if qname.endswith(zone.origin) and (
                len(qname) == len(zone.origin) or len(qname) - len(zone.origin) in query.labels
            ):
                return zone
        return None

    def _count(self, request: _Request, result: str) -> None:
        self._counter.labels(request.zone.config.name, request.kind, result).inc()

    # --- single answers (UDP, and SOA or NS over TCP) ---------------------------------

    def answer(self, zone: _Zone, query: Query) -> bytes:
        """The one message answering ``query`` (a transfer over UDP gets what RFC 1995 2
        and RFC 5936 4.2 ask for instead of the zone)."""
        request = _Request(zone, query)
        if request.refusal is not None:
            self._count(request, request.refusal[1])
            return request.refusal[0]
        current = read_current(zone.directory)
        if current is None:
            self._count(request, "unavailable")
            return request.signer.sign(request.header(wire.SERVFAIL, 0))
        at_apex = query.qname == zone.origin
        if at_apex and query.qtype in (SOA, IXFR):
            self._count(request, "ok")
            return request.signer.sign(request.header(0, 1) + current[1])
        if at_apex and query.qtype == NS:
            self._count(request, "ok")
            rdata = b"\x09localhost\x00"
            record = zone.origin + struct.pack("!HHIH", NS, 1, 3600, len(rdata)) + rdata
            return request.signer.sign(request.header(0, 1) + record)
        if at_apex and query.qtype == AXFR:
            self._count(request, "refused")
            return request.signer.sign(request.header(0, 0, tc=True))
        self._count(request, "refused")
        return request.signer.sign(request.header(wire.REFUSED, 0))

    # --- transfers over TCP -------------------------------------------------------------

    def start_tcp(
        self,
        zone: _Zone,
        query: Query,
        write: Callable[[bytes], None],
        writable: Callable[[], Awaitable[None]],
        finished: Callable[[bool], None],
    ) -> None:
        """Answer ``query`` in a task of its own (``serve_tcp``); ``finished(failed)``
        when done."""
        task = asyncio.ensure_future(self.serve_tcp(zone, query, write, writable))
        self._tasks.add(task)

        def done(ended: asyncio.Future[None]) -> None:
            self._tasks.discard(ended)
            error = None if ended.cancelled() else ended.exception()
            if error is not None and not isinstance(error, ConnectionError):
                log.error("rpz zone %s: answer failed: %r", zone.config.name, error)
            finished(ended.cancelled() or error is not None)

        task.add_done_callback(done)

    async def serve_tcp(
        self,
        zone: _Zone,
        query: Query,
        write: Callable[[bytes], None],
        writable: Callable[[], Awaitable[None]],
    ) -> None:
        """Answer ``query`` on a TCP connection: a transfer as a stream of messages,
        anything else as one message. ``write`` sends one message (unframed);
        ``writable`` waits until the client has read enough to send more."""
        if query.qtype not in (AXFR, IXFR) or query.qname != zone.origin:
            write(self.answer(zone, query))
            return
        request = _Request(zone, query)
        if request.refusal is not None:
            self._count(request, request.refusal[1])
            write(request.refusal[0])
            return
        pieces, result = await self._pieces(request)
        if pieces is None:
            self._count(request, "unavailable")
            write(request.signer.sign(request.header(wire.SERVFAIL, 0)))
            return
        first = True
        for count, data in join_pieces(pieces):
            message = request.header(0, count, question=first) + data
            write(request.signer.sign(message, multi=True))
            first = False
            await writable()
            await asyncio.sleep(0)
        self._count(request, result)

    async def _pieces(self, request: _Request) -> tuple[list[tuple[int, bytes]] | None, str]:
        """The transfer's records in order, and the metric's result."""
        zone = request.zone
        current = read_current(zone.directory)
        if current is None:
            return None, "unavailable"
        serial, soa = current
        if request.kind == "ixfr":
            known = request.client_serial()
            if known is not None and (known == serial or serial_newer(known, serial)):
                return [(1, soa)], "ok"  # up to date (RFC 1995 2)
            if known is not None:
                diff = await asyncio.to_thread(read_diff, zone.directory, known, serial)
                if diff is not None:
                    pieces = [(2, soa + diff.old_soa), *diff.deleted, (1, soa), *diff.added]
                    return [*pieces, (1, soa)], "ok"
        loaded = self._loaded.get(zone.config.name)
        if loaded is None or loaded.serial != serial:
            try:
                loaded = await asyncio.to_thread(read_zone, zone.directory, serial)
            except OSError:
                return None, "unavailable"  # replaced meanwhile; the client retries
            self._loaded[zone.config.name] = loaded
        result = "full" if request.kind == "ixfr" else "ok"
        return [(1, loaded.soa), *loaded.chunks, (1, loaded.soa)], result
