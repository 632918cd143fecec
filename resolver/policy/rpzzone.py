"""A Response Policy Zone built from the policy, for zone transfers (``rpz:``).

The records are the ``rpz`` export's (``export.render``), read back into wire form, so
the live feed and the file export can never say different things. What RPZ cannot
express (the export's header comments) becomes TXT records at the apex.

A zone version is its records without the SOA; its serial rises whenever the records
change (``next_serial``), and is kept in ``state.directory/rpz/ZONE/serial`` with a
digest of the records, so a restart serves a higher serial when the policy changed
meanwhile and the same serial when it did not (secondaries keep the old serial;
RFC 1982 arithmetic decides which is newer).

The primary process writes each version to ``state.directory/rpz/ZONE/`` as the
messages' record chunks (``ZoneFile``), with the differences from a few earlier serials
for IXFR (``DiffFile``); every process that answers transfers reads those files, so all
workers serve the same records for a serial.
"""

from __future__ import annotations

import hashlib
import ipaddress
import pickle
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from resolver.config import Config
from resolver.config.rpz import RpzZoneConfig
from resolver.dns import wire
from resolver.policy.export import ExportOptions, render
from resolver.policy.groups import ClientGroups
from resolver.policy.loading import load_policy, remote_lists
from resolver.storage import write_atomically

A, NS, CNAME, SOA, TXT, AAAA = 1, 2, 5, 6, 16, 28
IN = 1
SERIAL_MODULUS = 2**32
# Record bytes per message chunk: many RRs per message, far below the 64 KiB limit
# (RFC 5936 2.2), and small enough that writing one never holds the event loop long.
CHUNK_BYTES = 16_000
# IXFR answers from this many earlier serials; an older one gets the whole zone.
HISTORY = 4
_RR = struct.Struct("!HHIH")


@dataclass(frozen=True, slots=True)
class ZoneContent:
    """One version of a zone, before it has a serial."""

    origin: bytes  # wire form
    soa: tuple[bytes, bytes, tuple[int, int, int, int], int]  # mname, rname, timers, ttl
    records: tuple[bytes, ...]  # every RR but the SOA, sorted, wire form, uncompressed

    @property
    def digest(self) -> str:
        hashed = hashlib.sha256()
        for record in self.records:
            hashed.update(wire.U16.pack(len(record)) + record)
        return hashed.hexdigest()

    def soa_record(self, serial: int) -> bytes:
        mname, rname, timers, ttl = self.soa
        rdata = mname + rname + struct.pack("!IIIII", serial, *timers)
        return self.origin + _RR.pack(SOA, IN, ttl, len(rdata)) + rdata


def serial_newer(a: int, b: int) -> bool:
    """RFC 1982 3.2: is serial ``a`` greater than serial ``b``?"""
    return a != b and ((a - b) % SERIAL_MODULUS) < 2**31


def next_serial(last: int | None, now: float) -> int:
    """The serial after ``last``: the Unix time when that is higher (a serial that also
    tells when the zone changed), else one more (RFC 1982 addition)."""
    if last is None:
        return int(now) % SERIAL_MODULUS
    after = (last + 1) % SERIAL_MODULUS
    clock = int(now) % SERIAL_MODULUS
    return clock if serial_newer(clock, after) else after


# --- building ---------------------------------------------------------------------------


def _rdata(kind: str, data: Sequence[str]) -> tuple[int, bytes]:
    if kind == "CNAME":
        return CNAME, wire.text_to_name(data[0])
    if kind == "NS":
        return NS, wire.text_to_name(data[0])
    if kind == "A":
        return A, ipaddress.IPv4Address(data[0]).packed
    if kind == "AAAA":
        return AAAA, ipaddress.IPv6Address(data[0]).packed
    raise ValueError(f"the rpz export wrote a {kind} record, which the zone cannot carry")


def _txt(origin: bytes, ttl: int, line: str) -> bytes:
    text = line.encode("ascii", "replace")[:255]
    rdata = bytes([len(text)]) + text
    return origin + _RR.pack(TXT, IN, ttl, len(rdata)) + rdata


def zone_from_text(zone: str, text: str) -> ZoneContent:
    """The records of an ``rpz`` export, under ``zone``; its comments become TXT."""
    origin = wire.text_to_name(zone)
    ttl = 300
    notes: list[str] = []
    records: set[bytes] = set()
    soa: tuple[bytes, bytes, tuple[int, int, int, int], int] | None = None
    for line in text.splitlines():
        if line.startswith(";"):
            notes.append(line[1:].strip())
            continue
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "$TTL":
            ttl = int(fields[1])
            continue
        owner_text, kind, *data = fields
        owner = origin if owner_text == "@" else wire.text_to_name(f"{owner_text}.{zone}")
        if kind == "SOA":
            mname, rname = wire.text_to_name(data[0]), wire.text_to_name(data[1])
            refresh, retry, expire, minimum = (int(value) for value in data[3:7])
            soa = (mname, rname, (refresh, retry, expire, minimum), ttl)
            continue
        code, rdata = _rdata(kind, data)
        records.add(owner + _RR.pack(code, IN, ttl, len(rdata)) + rdata)
    if soa is None:
        raise ValueError("the rpz export wrote no SOA record")
    records.update(_txt(origin, ttl, note) for note in notes if note)
    return ZoneContent(origin, soa, tuple(sorted(records)))


def _options(config: Config, groups: ClientGroups, item: RpzZoneConfig) -> ExportOptions:
    group = groups.by_name(item.group)
    if group is None:
        raise ValueError(f"rpz zone {item.name}: no group {item.group!r}")
    return ExportOptions(
        response=group.answers.mode,
        sinkhole_ipv4=config.blocking.sinkhole_ipv4,
        sinkhole_ipv6=config.blocking.sinkhole_ipv6,
        ttl=group.answers.ttl,
        rpz_zone=item.name,
    )


def build_zone(
    config: Config, item: RpzZoneConfig, catalog_dir: Path | None, now: float
) -> list[tuple[ZoneContent, float | None]]:
    """The zone as each version of the policy makes it, from the one in force at ``now``
    on, each with the moment it stops holding (None: the last). Every version is built
    now, from the same parsed lists, so a temporary rule ends in the zone on time even
    if no list can be read at that moment. Blocking: run it in a thread."""
    # Every name must be written, so the lists are read as names, not as hashes.
    built = load_policy(config, catalog_dir, remote_lists(config), compact=False, now=now)
    versions: list[tuple[ZoneContent, float | None]] = []
    groups: ClientGroups | None = built.groups.in_force(now)
    while groups is not None:
        options = _options(config, groups, item)
        group = groups.by_name(item.group)
        assert group is not None  # _options checked it
        text = render(group.blocklist.entries(), "rpz", options)
        versions.append((zone_from_text(item.name, text), groups.valid_until))
        groups = groups.successor
    return versions


# --- files ------------------------------------------------------------------------------


def join_pieces(pieces: Iterable[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Pieces of records, (how many, their bytes), joined into message-sized chunks."""
    chunks: list[tuple[int, bytes]] = []
    parts: list[bytes] = []
    count = size = 0
    for piece_count, data in pieces:
        if count and size + len(data) > CHUNK_BYTES:
            chunks.append((count, b"".join(parts)))
            parts, count, size = [], 0, 0
        parts.append(data)
        count += piece_count
        size += len(data)
    if count:
        chunks.append((count, b"".join(parts)))
    return chunks


def chunked(records: Iterable[bytes]) -> list[tuple[int, bytes]]:
    """Records grouped into message-sized chunks: (how many, their bytes)."""
    return join_pieces((1, record) for record in records)


@dataclass(frozen=True, slots=True)
class ZoneFile:
    serial: int
    soa: bytes  # the SOA record, wire form
    chunks: list[tuple[int, bytes]]
    count: int  # records, the SOA counted once


@dataclass(frozen=True, slots=True)
class DiffFile:
    """From ``old`` to ``new``: the old SOA, what goes, the new SOA, what comes
    (RFC 1995 4, one difference sequence)."""

    old_soa: bytes
    deleted: list[tuple[int, bytes]]
    added: list[tuple[int, bytes]]


def zone_dir(state_dir: Path, zone: str) -> Path:
    return state_dir / "rpz" / zone


def read_serial(directory: Path) -> tuple[int, str] | None:
    """The last serial served and its records' digest (None: never served)."""
    try:
        serial_text, digest = (directory / "serial").read_text(encoding="ascii").split()
        return int(serial_text) % SERIAL_MODULUS, digest
    except (OSError, ValueError):
        return None


def read_current(directory: Path) -> tuple[int, bytes] | None:
    """The serial served now and its SOA record (None: nothing published yet)."""
    try:
        serial_text, soa_hex = (directory / "current").read_text(encoding="ascii").split()
        return int(serial_text), bytes.fromhex(soa_hex)
    except (OSError, ValueError):
        return None


def read_zone(directory: Path, serial: int) -> ZoneFile:
    loaded: ZoneFile = pickle.loads((directory / f"zone-{serial}").read_bytes())
    return loaded


def read_diff(directory: Path, old: int, new: int) -> DiffFile | None:
    try:
        data = (directory / f"ixfr-{old}-{new}").read_bytes()
    except OSError:
        return None
    loaded: DiffFile = pickle.loads(data)
    return loaded


class ZoneWriter:
    """The primary's side: gives each new version its serial and writes its files."""

    def __init__(self, state_dir: Path, zone: str) -> None:
        self.directory = zone_dir(state_dir, zone)
        # Earlier versions this process wrote: (serial, SOA, records), newest last.
        self._history: list[tuple[int, bytes, frozenset[bytes]]] = []

    def publish(self, content: ZoneContent, now: float | None = None) -> tuple[int, bool]:
        """Write ``content`` as the zone served; returns its serial and whether it is new.
        Blocking: run it in a thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        digest = content.digest
        last = read_serial(self.directory)
        current = read_current(self.directory)
        if last is not None and last[1] == digest and current and current[0] == last[0]:
            return last[0], False
        if last is not None and last[1] == digest:
            serial = last[0]
        else:
            serial = next_serial(last[0] if last else None, time.time() if now is None else now)
        soa = content.soa_record(serial)
        records = frozenset(content.records)
        zone = ZoneFile(serial, soa, chunked(content.records), len(content.records) + 1)
        write_atomically(
            self.directory / f"zone-{serial}", pickle.dumps(zone, pickle.HIGHEST_PROTOCOL)
        )
        for old_serial, old_soa, old_records in self._history:
            diff = DiffFile(
                old_soa,
                chunked(sorted(old_records - records)),
                chunked(sorted(records - old_records)),
            )
            path = self.directory / f"ixfr-{old_serial}-{serial}"
            write_atomically(path, pickle.dumps(diff, pickle.HIGHEST_PROTOCOL))
        # The serial file first: a crash between the two never reuses a serial.
        write_atomically(self.directory / "serial", f"{serial} {digest}\n".encode("ascii"))
        write_atomically(self.directory / "current", f"{serial} {soa.hex()}\n".encode("ascii"))
        self._history = [*self._history, (serial, soa, records)][-HISTORY:]
        self._clean(serial)
        return serial, True

    def _clean(self, serial: int) -> None:
        """Files of serials no longer served; workers that still read one have it open.
        Kept: the zone of the last few serials, for a worker that has not switched yet."""
        keep = {f"zone-{s}" for s, _soa, _records in self._history}
        keep |= {f"ixfr-{s}-{serial}" for s, _soa, _records in self._history}
        for path in self.directory.iterdir():
            if path.name.startswith(("zone-", "ixfr-")) and path.name not in keep:
                path.unlink(missing_ok=True)
