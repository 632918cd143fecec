"""Issue 15: the live RPZ feed seen by an independent client (dnspython) against a real
``aiwall serve``: who may transfer the zone (TSIG per RFC 8945, networks), what ordinary
clients see, UDP versus TCP, serials that rise across restarts and expiries, and one
zone whichever worker answers."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest

from tests.integration.test_one_server import config_for, start  # noqa: F401 (a fixture)
from tests.peers.aiwall import Aiwall
from tests.peers.wait import wait_until

ZONE = "rpz.aiwall.internal"
KEY = "aiwall-xfr"
SECRET = "c2VjcmV0LWtleS1mb3ItdGhlLXJwei1mZWVkLXRlc3Rz"
OTHER = "b3RoZXIta2V5LW9mLXRoZS1zYW1lLWxlbmd0aC0xMjM="
KEYRING = dns.tsigkeyring.from_text({KEY: ("hmac-sha256", SECRET)})


def config(tmp_path: Path, upstream: str, workers: int = 1, **rpz: Any) -> dict[str, Any]:
    listed = tmp_path / "ai.txt"
    if not listed.exists():
        listed.write_text("banned.example\n")
    zone: dict[str, Any] = {
        "zone": ZONE,
        "allow_transfer": ["127.0.0.1/32"],
        "tsig": {"name": KEY, "secret": SECRET},
    }
    zone.update(rpz)
    return config_for(
        [upstream],
        workers,
        blocking={"lists": [str(listed)]},
        state={"directory": str(tmp_path / "state")},
        rpz=[zone],
    )


def transfer(server: Aiwall, *, key: str | None = KEY, secret: str = SECRET) -> dns.zone.Zone:
    host, port = server.address
    zone = dns.zone.Zone(ZONE)
    keyring = dns.tsigkeyring.from_text({key: ("hmac-sha256", secret)}) if key else None
    query, _ = dns.xfr.make_query(zone, keyring=keyring, keyname=key)
    dns.query.inbound_xfr(host, zone, query, port=port, timeout=10, lifetime=30)
    return zone


def serial_of(zone: dns.zone.Zone) -> int:
    return int(zone.get_soa().serial)


def soa_query(
    server: Aiwall, *, source: str = "127.0.0.1", signed: bool = True
) -> dns.message.Message:
    query = dns.message.make_query(ZONE, "SOA")
    if signed:
        query.use_tsig(KEYRING, KEY)
    host, port = server.address
    return dns.query.udp(query, host, port=port, timeout=3, source=source)


def exchange(
    server: Aiwall,
    query: dns.message.Message,
    source: str = "127.0.0.1",
    data: bytes = b"",
    *,
    signed: bool = True,
) -> Any:
    """Send ``query`` over TCP (signed now, or as ``data`` when given); the answer, its
    TSIG checked against the request's (``signed=False``: a refusal sent before any key
    was looked at carries no TSIG)."""
    data = data or query.to_wire()
    with socket.create_connection(server.address, 3, (source, 0)) as sock:
        dns.query.send_tcp(sock, data, time.time() + 3)
        keyring = query.keyring if signed else False
        reply, _ = dns.query.receive_tcp(
            sock, time.time() + 3, keyring=keyring, request_mac=query.mac if signed else b""
        )
    return reply


def test_the_zone_carries_the_policy_as_rpz(
    tmp_path: Path,
    upstream: Any,
    start: Any,  # noqa: F811
) -> None:
    server = start(config(tmp_path, upstream.server_spec))
    zone = transfer(server)
    assert zone.get_rdataset("banned.example", "CNAME")[0].target.to_text() == "."
    assert zone.get_rdataset("*.banned.example", "CNAME")[0].target.to_text() == "."
    assert zone.get_rdataset("*.deepseek.com", "CNAME") is not None  # the catalog
    assert zone.get_rdataset("resolves.example", "CNAME") is None
    notes = " ".join(str(r) for r in zone.get_rdataset("@", "TXT"))
    assert "aiwall blocking policy, rpz format" in notes
    assert serial_of(zone) == int(soa_query(server).answer[0][0].serial)
    assert server.metric("aiwall_rpz_transfers_total", kind="axfr", result="ok") == 1


def test_a_transfer_without_the_key_or_from_elsewhere_is_refused(
    tmp_path: Path,
    upstream: Any,
    start: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start(config(tmp_path, upstream.server_spec))

    def axfr(keyring: Any = None, keyname: str | None = None) -> dns.message.Message:
        query = dns.message.make_query(ZONE, "AXFR")
        if keyring is not None:
            query.use_tsig(keyring, keyname)
        return query

    assert exchange(server, axfr()).rcode() == dns.rcode.REFUSED  # unsigned
    refused = exchange(server, axfr(KEYRING, KEY), source="127.0.0.2", signed=False)
    assert refused.rcode() == dns.rcode.REFUSED  # right key, address not allowed
    assert not refused.answer
    other = dns.tsigkeyring.from_text({KEY: ("hmac-sha256", OTHER)})
    with pytest.raises(dns.tsig.PeerBadSignature):  # NOTAUTH, TSIG error BADSIG
        exchange(server, axfr(other, KEY))
    intruder = dns.tsigkeyring.from_text({"intruder": ("hmac-sha256", SECRET)})
    with pytest.raises(dns.tsig.PeerBadKey):  # NOTAUTH, TSIG error BADKEY
        exchange(server, axfr(intruder, "intruder"))
    late = axfr(KEYRING, KEY)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 1000)
    signed_late = late.to_wire()  # 1000 s ago, beyond the 300 s fudge
    monkeypatch.setattr(time, "time", real)
    with pytest.raises(dns.tsig.PeerBadTime):  # NOTAUTH, BADTIME, signed by the server
        exchange(server, late, data=signed_late)
    counts = {
        result: server.metric("aiwall_rpz_transfers_total", kind="axfr", result=result)
        for result in ("unsigned", "refused", "badsig", "badkey", "badtime", "ok")
    }
    assert counts == {"unsigned": 1, "refused": 1, "badsig": 1, "badkey": 1, "badtime": 1, "ok": 0}


def test_ordinary_clients_learn_nothing_and_udp_gets_no_transfer(
    tmp_path: Path,
    upstream: Any,
    start: Any,  # noqa: F811
) -> None:
    server = start(config(tmp_path, upstream.server_spec))
    host, port = server.address
    inside = dns.message.make_query(f"banned.example.{ZONE}", "CNAME")
    reply = dns.query.udp(inside, host, port=port, timeout=3, source="127.0.0.2")
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer
    assert soa_query(server, source="127.0.0.2", signed=False).rcode() == dns.rcode.REFUSED
    # An allowed secondary asking for anything but the apex's SOA or NS: REFUSED too.
    inside.use_tsig(KEYRING, KEY)
    assert dns.query.udp(inside, host, port=port, timeout=3).rcode() == dns.rcode.REFUSED
    current = int(soa_query(server).answer[0][0].serial)
    # IXFR over UDP: the current SOA alone, "ask again over TCP" (RFC 1995 2).
    ixfr = dns.message.make_query(ZONE, "IXFR")
    ixfr.authority.append(soa_rrset(current - 1))
    ixfr.use_tsig(KEYRING, KEY)
    answer = dns.query.udp(ixfr, host, port=port, timeout=3)
    assert [int(r.serial) for rrset in answer.answer for r in rrset] == [current]
    # AXFR is a TCP-only question (RFC 5936 4.2): truncated, empty.
    axfr = dns.message.make_query(ZONE, "AXFR")
    axfr.use_tsig(KEYRING, KEY)
    answer = dns.query.udp(axfr, host, port=port, timeout=3)
    assert answer.flags & dns.flags.TC
    assert not answer.answer
    # Outside the zone, nothing changed: the policy and forwarding as ever.
    name = dns.message.make_query("banned.example", "A")
    assert dns.query.udp(name, host, port=port, timeout=3).rcode() == dns.rcode.NXDOMAIN
    name = dns.message.make_query("resolves.example", "A")
    assert dns.query.udp(name, host, port=port, timeout=3).rcode() == dns.rcode.NOERROR


def soa_rrset(serial: int) -> dns.rrset.RRset:
    return dns.rrset.from_text(
        f"{ZONE}.", 0, "IN", "SOA", f"localhost. hostmaster.localhost. {serial} 3600 600 86400 300"
    )


def test_the_serial_rises_across_restarts_and_stays_when_nothing_changed(
    tmp_path: Path,
    upstream: Any,
    start: Any,  # noqa: F811
) -> None:
    settings = config(tmp_path, upstream.server_spec)
    first = start(settings)
    serial = serial_of(transfer(first))
    first.stop()
    again = start(settings)  # same policy: same serial, no needless transfer
    assert serial_of(transfer(again)) == serial
    again.stop()
    (tmp_path / "ai.txt").write_text("banned.example\nlater.example\n")
    changed = start(settings)
    zone = transfer(changed)
    assert serial_of(zone) > serial  # RFC 1982 order, far from the wrap
    assert zone.get_rdataset("later.example", "CNAME") is not None
    changed.stop()
    # A serial ahead of the clock (set by hand, or a clock stepped back): one more.
    state = tmp_path / "state" / "rpz" / ZONE / "serial"
    ahead = int(time.time()) + 10_000_000
    state.write_text(f"{ahead} 0000\n")
    assert serial_of(transfer(start(settings))) == ahead + 1


def test_two_workers_serve_one_zone_and_ixfr_brings_a_copy_up_to_date(
    tmp_path: Path,
    upstream: Any,
    start: Any,  # noqa: F811
) -> None:
    server = start(config(tmp_path, upstream.server_spec, workers=2))
    copies = [transfer(server) for _ in range(12)]  # fresh connections: both workers
    old = serial_of(copies[0])
    assert {serial_of(c) for c in copies} == {old}
    assert all(c == copies[0] for c in copies)
    (tmp_path / "ai.txt").write_text("later.example\n")
    server.signal(signal.SIGHUP)
    wait_until(lambda: int(soa_query(server).answer[0][0].serial) != old, 10, "a new serial")
    fresh = [transfer(server) for _ in range(12)]
    new = serial_of(fresh[0])
    assert {serial_of(c) for c in fresh} == {new}
    assert serial_of(fresh[0]) > old
    assert all(c == fresh[0] for c in fresh)
    # The old copy, brought up to date by IXFR, equals a fresh AXFR.
    kept = copies[0]
    host, port = server.address
    query, _ = dns.xfr.make_query(kept, serial=old, keyring=KEYRING, keyname=KEY)
    dns.query.inbound_xfr(host, kept, query, port=port, timeout=10)
    assert serial_of(kept) == new
    assert kept == fresh[0]
    assert kept.get_rdataset("banned.example", "CNAME") is None
    assert server.metric("aiwall_rpz_transfers_total", kind="ixfr", result="ok") == 1


def test_an_expiring_exception_leaves_the_zone_on_time(
    tmp_path: Path,
    upstream: Any,
    start: Any,  # noqa: F811
) -> None:
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 4))
    settings = config(tmp_path, upstream.server_spec)
    settings["blocking"]["catalog"] = {
        "block": {"all": True},
        "allow": {"services": ["deepseek"], "until": until},
    }
    server = start(settings)
    zone = transfer(server)
    assert zone.get_rdataset("deepseek.com", "CNAME")[0].target.to_text() == "rpz-passthru."
    # No reload: the version built for after the expiry goes out by itself.
    wait_until(lambda: int(soa_query(server).answer[0][0].serial) != serial_of(zone), 10)
    later = transfer(server)
    assert later.get_rdataset("deepseek.com", "CNAME")[0].target.to_text() == "."
