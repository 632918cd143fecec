"""The live RPZ zone: records from the export, serials (RFC 1982), the files the
primary writes for every worker, and the IXFR differences (RFC 1995)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from resolver.dns import wire
from resolver.policy.export import ExportOptions, render
from resolver.policy.rpzzone import (
    AAAA,
    CHUNK_BYTES,
    CNAME,
    TXT,
    A,
    ZoneContent,
    ZoneWriter,
    chunked,
    next_serial,
    read_current,
    read_diff,
    read_zone,
    serial_newer,
    zone_from_text,
)
from resolver.policy.rules import PolicyEntry, Rule

ZONE = "rpz.aiwall.internal"
BLOCK = Rule(action="block", source="catalog", service="x", category="chat", description="x")
ALLOW = Rule(action="allow", source="config", service="allow", category="allow", description="a")
CANARY = Rule(action="canary", source="config", service="c", category="bypass", description="c")


def record(owner: str, kind: int, rdata: bytes, ttl: int = 300) -> bytes:
    name = wire.text_to_name(f"{owner}.{ZONE}" if owner else ZONE)
    return (
        name
        + wire.U16.pack(kind)
        + b"\0\1"
        + ttl.to_bytes(4, "big")
        + wire.U16.pack(len(rdata))
        + rdata
    )


def content(entries: list[PolicyEntry], **options: object) -> ZoneContent:
    text = render(entries, "rpz", ExportOptions(**options))  # type: ignore[arg-type]
    return zone_from_text(ZONE, text)


def test_serials_follow_rfc_1982() -> None:
    assert serial_newer(1, 0)
    assert not serial_newer(0, 1)
    assert serial_newer(0, 2**32 - 1)  # across the wrap
    assert not serial_newer(5, 5)
    assert not serial_newer(2**31, 0)  # half way round: undefined, never "newer"
    assert next_serial(None, 1_800_000_000.7) == 1_800_000_000
    assert next_serial(1_700_000_000, 1_800_000_000) == 1_800_000_000  # the clock
    assert next_serial(1_900_000_000, 1_800_000_000) == 1_900_000_001  # one more
    assert next_serial(2**32 - 1, 1_000) == 1_000  # wraps, still newer
    assert serial_newer(next_serial(2**32 - 1, 0), 2**32 - 1)


def test_the_zone_carries_every_rule_as_rpz_does() -> None:
    zone = content(
        [
            PolicyEntry("blocked.example", False, BLOCK),
            PolicyEntry("ok.blocked.example", False, ALLOW),
            PolicyEntry("below.example", True, BLOCK),
            PolicyEntry("canary.example", False, CANARY),
        ],
        response="sinkhole",
        sinkhole_ipv4="192.0.2.1",
        sinkhole_ipv6="2001:db8::1",
    )
    records = set(zone.records)
    sinkhole_a = ipaddress.IPv4Address("192.0.2.1").packed
    sinkhole_aaaa = ipaddress.IPv6Address("2001:db8::1").packed
    for owner in ("blocked.example", "*.blocked.example"):
        assert record(owner, A, sinkhole_a) in records
        assert record(owner, AAAA, sinkhole_aaaa) in records
    passthru = wire.text_to_name("rpz-passthru")
    assert record("ok.blocked.example", CNAME, passthru) in records  # most specific wins
    assert record("*.below.example", A, sinkhole_a) in records
    assert not any(r.startswith(wire.text_to_name(f"below.example.{ZONE}")) for r in records)
    assert record("canary.example", CNAME, b"\0") in records  # NXDOMAIN whatever the mode
    notes = [r for r in records if r[len(zone.origin) : len(zone.origin) + 2] == b"\0\x10"]
    assert notes  # the export's header as TXT at the apex
    assert all(r.startswith(zone.origin) for r in notes)
    assert list(zone.records) == sorted(zone.records)
    soa = zone.soa_record(42)
    assert soa.startswith(zone.origin + b"\0\x06\0\1")
    assert int.from_bytes(soa[-20:-16], "big") == 42


def test_what_rpz_cannot_express_is_written_in_the_zone() -> None:
    zone = content([PolicyEntry("blocked.example", False, BLOCK)], response="refused")
    texts = b" ".join(r for r in zone.records if TXT.to_bytes(2, "big") + b"\0\1" in r[:40])
    assert b"RPZ has no REFUSED action: NXDOMAIN instead" in texts
    assert record("blocked.example", CNAME, b"\0") in zone.records


def test_chunks_stay_below_the_bound_and_keep_every_record() -> None:
    records = [bytes([i % 250]) * 700 for i in range(100)]
    chunks = chunked(records)
    assert sum(count for count, _ in chunks) == 100
    assert b"".join(data for _, data in chunks) == b"".join(records)
    assert all(len(data) <= CHUNK_BYTES for _, data in chunks)
    assert len(chunks) > 1


def test_the_writer_keeps_a_serial_for_the_same_records_and_raises_it_on_change(
    tmp_path: Path,
) -> None:
    before = content(
        [PolicyEntry("a.example", False, BLOCK), PolicyEntry("b.example", False, BLOCK)]
    )
    after = content(
        [PolicyEntry("a.example", False, BLOCK), PolicyEntry("c.example", False, BLOCK)]
    )
    writer = ZoneWriter(tmp_path, ZONE)
    first, new = writer.publish(before, now=1_800_000_000)
    assert (first, new) == (1_800_000_000, True)
    assert writer.publish(before, now=1_800_000_500) == (first, False)
    second, new = writer.publish(after, now=1_800_000_000)  # the clock did not move
    assert new
    assert second == first + 1
    directory = tmp_path / "rpz" / ZONE
    current = read_current(directory)
    assert current is not None
    assert current[0] == second
    zone = read_zone(directory, second)
    assert b"".join(data for _, data in zone.chunks) == b"".join(after.records)
    assert zone.count == len(after.records) + 1
    diff = read_diff(directory, first, second)
    assert diff is not None
    assert diff.old_soa == before.soa_record(first)
    gone = [record("b.example", CNAME, b"\0"), record("*.b.example", CNAME, b"\0")]
    came = [record("c.example", CNAME, b"\0"), record("*.c.example", CNAME, b"\0")]
    assert b"".join(d for _, d in diff.deleted) == b"".join(sorted(gone))
    assert b"".join(d for _, d in diff.added) == b"".join(sorted(came))


def test_a_restart_keeps_the_serial_or_raises_it_but_has_no_history(tmp_path: Path) -> None:
    before = content([PolicyEntry("a.example", False, BLOCK)])
    after = content([PolicyEntry("b.example", False, BLOCK)])
    serial, _ = ZoneWriter(tmp_path, ZONE).publish(before, now=1_800_000_000)
    assert ZoneWriter(tmp_path, ZONE).publish(before, now=1_900_000_000) == (serial, False)
    restarted = ZoneWriter(tmp_path, ZONE)
    later, new = restarted.publish(after, now=1_700_000_000)  # a clock stepped back
    assert new
    assert later == serial + 1
    directory = tmp_path / "rpz" / ZONE
    assert read_diff(directory, serial, later) is None  # IXFR from there: the whole zone
    names = {path.name for path in directory.iterdir()}
    assert f"zone-{serial}" not in names  # no longer served by anyone


@pytest.mark.parametrize("changes", [3, 6])
def test_only_a_few_earlier_serials_keep_their_files(tmp_path: Path, changes: int) -> None:
    writer = ZoneWriter(tmp_path, ZONE)
    serials = [
        writer.publish(content([PolicyEntry(f"n{i}.example", False, BLOCK)]), now=1_800_000_000)[0]
        for i in range(changes)
    ]
    directory = tmp_path / "rpz" / ZONE
    zones = sorted(p.name for p in directory.iterdir() if p.name.startswith("zone-"))
    assert zones == sorted(f"zone-{s}" for s in serials[-4:])
    for old in serials[-4:-1]:
        assert read_diff(directory, old, serials[-1]) is not None
