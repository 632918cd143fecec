"""Answering for an rpz zone, message by message: who is refused and how (RFC 8945 for
TSIG errors), SOA over UDP, AXFR and IXFR streams (RFC 5936, RFC 1995)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import pytest

from resolver.config import config_from_mapping
from resolver.dns.codec import parse_query
from resolver.metrics import Metrics
from resolver.policy.export import ExportOptions, render
from resolver.policy.rpzzone import ZoneContent, ZoneWriter, read_zone, zone_from_text
from resolver.policy.rules import PolicyEntry, Rule
from resolver.serve.xfr import ZoneService

ZONE = "rpz.aiwall.internal"
KEY = "aiwall-xfr"
SECRET = "c2VjcmV0LWtleS1mb3ItdGhlLXJwei1mZWVkLXRlc3Rz"
KEYRING = dns.tsigkeyring.from_text({KEY: ("hmac-sha256", SECRET)})
BLOCK = Rule(action="block", source="list:x", service="x", category="list", description="x")


def publish(state: Path, names: list[str], now: float) -> int:
    return ZoneWriter(state, ZONE).publish(content_of(names), now=now)[0]


@pytest.fixture
def service(tmp_path: Path) -> ZoneService:
    config = config_from_mapping(
        {
            "state": {"directory": str(tmp_path)},
            "rpz": [
                {
                    "zone": ZONE,
                    "allow_transfer": ["127.0.0.1/32"],
                    "tsig": {"name": KEY, "secret": SECRET},
                }
            ],
        }
    )
    return ZoneService(config, Metrics())


def ask(
    service: ZoneService, message: dns.message.Message, client: str = "127.0.0.1"
) -> dns.message.Message:
    data = message.to_wire()
    query = parse_query(data, "udp", client)
    assert query is not None
    zone = service.claims(query)
    assert zone is not None
    reply = service.answer(zone, query)
    if message.had_tsig and client == "127.0.0.1":
        return dns.message.from_wire(reply, keyring=message.keyring, request_mac=message.mac)
    return dns.message.from_wire(reply, keyring=False)


def signed(name: str, rdtype: str, keyring: Any = KEYRING, keyname: str = KEY) -> Any:
    message = dns.message.make_query(name, rdtype)
    message.use_tsig(keyring, keyname)
    return message


def test_names_outside_the_zone_are_not_claimed(service: ZoneService) -> None:
    for name in ("example.com", "xrpz.aiwall.internal", "aiwall.internal"):
        query = parse_query(dns.message.make_query(name, "A").to_wire(), "udp", "127.0.0.1")
        assert query is not None
        assert service.claims(query) is None
    inside = parse_query(dns.message.make_query(f"a.b.{ZONE}", "A").to_wire(), "udp", "1.2.3.4")
    assert inside is not None
    assert service.claims(inside) is not None


def test_the_soa_is_signed_and_carries_the_serial(service: ZoneService, tmp_path: Path) -> None:
    serial = publish(tmp_path, ["a.example"], 1_800_000_000)
    reply = ask(service, signed(ZONE, "SOA"))
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.had_tsig
    assert reply.answer[0][0].serial == serial
    assert reply.flags & 0x0400  # authoritative


def test_refusals(service: ZoneService, tmp_path: Path) -> None:
    publish(tmp_path, ["a.example"], 1_800_000_000)
    assert ask(service, dns.message.make_query(ZONE, "SOA")).rcode() == dns.rcode.REFUSED
    stranger = ask(service, signed(ZONE, "SOA"), client="192.0.2.1")
    assert stranger.rcode() == dns.rcode.REFUSED
    assert not stranger.answer
    inside = ask(service, signed(f"a.example.{ZONE}", "CNAME"))
    assert inside.rcode() == dns.rcode.REFUSED  # no record-by-record reading of the policy
    other = dns.tsigkeyring.from_text(
        {KEY: ("hmac-sha256", "b3RoZXIta2V5LW9mLXRoZS1zYW1lLWxlbmd0aA==")}
    )
    with pytest.raises(dns.tsig.PeerBadSignature):
        ask(service, signed(ZONE, "SOA", other))
    stranger_key = dns.tsigkeyring.from_text({"who": ("hmac-sha256", SECRET)})
    with pytest.raises(dns.tsig.PeerBadKey):
        ask(service, signed(ZONE, "SOA", stranger_key, "who"))


def test_nothing_published_yet_is_servfail_not_an_empty_zone(service: ZoneService) -> None:
    assert ask(service, signed(ZONE, "SOA")).rcode() == dns.rcode.SERVFAIL


def transfer(service: ZoneService, message: dns.message.Message) -> list[dns.message.Message]:
    """Every message of a TCP answer, each TSIG checked in sequence (RFC 8945 5.3.1)."""
    data = message.to_wire()
    query = parse_query(data, "tcp", "127.0.0.1")
    assert query is not None
    zone = service.claims(query)
    assert zone is not None
    written: list[bytes] = []
    waits = 0

    async def writable() -> None:
        nonlocal waits
        waits += 1

    asyncio.run(service.serve_tcp(zone, query, written.append, writable))
    assert waits == len(written) or len(written) == 1
    replies, ctx = [], None
    for index, raw in enumerate(written):
        reply = dns.message.from_wire(
            raw,
            keyring=message.keyring,
            request_mac=message.mac if index == 0 else b"",
            tsig_ctx=ctx,
            multi=True,
            xfr=True,
            origin=dns.name.from_text(ZONE),
        )
        ctx = reply.tsig_ctx
        replies.append(reply)
    return replies


def soa_serials(replies: list[dns.message.Message]) -> list[int]:
    return [
        int(r.serial)
        for reply in replies
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.SOA
        for r in rrset
    ]


def ixfr(serial: int) -> dns.message.Message:
    message = dns.message.make_query(ZONE, "IXFR")
    message.authority.append(
        dns.rrset.from_text(f"{ZONE}.", 0, "IN", "SOA", f"a. b. {serial} 1 1 1 1")
    )
    message.use_tsig(KEYRING, KEY)
    return message


def content_of(names: list[str]) -> ZoneContent:
    entries = [PolicyEntry(name, False, BLOCK) for name in names]
    return zone_from_text(ZONE, render(entries, "rpz", ExportOptions()))


def test_axfr_and_ixfr_streams(service: ZoneService, tmp_path: Path) -> None:
    names = [f"n{i}.example" for i in range(3000)]
    writer = ZoneWriter(tmp_path, ZONE)
    old, _ = writer.publish(content_of(names), now=1_800_000_000)
    axfr = transfer(service, signed(ZONE, "AXFR"))
    assert len(axfr) > 3  # many messages, many records each
    assert soa_serials(axfr) == [old, old]
    records = sum(len(rrset) for reply in axfr for rrset in reply.answer)
    assert records == read_zone(tmp_path / "rpz" / ZONE, old).count + 1  # SOA at both ends
    # A new version from the same writer: IXFR from the old serial is the difference.
    new, _ = writer.publish(content_of([*names[1:], "new.example"]), now=1_800_000_000)
    replies = transfer(service, ixfr(old))
    # RFC 1995 4: new SOA, old SOA, deletions, new SOA, additions, new SOA.
    assert soa_serials(replies) == [new, old, new, new]
    owners = {rrset.name.to_text() for reply in replies for rrset in reply.answer}
    assert {"n0.example", "*.n0.example", "new.example", "*.new.example"} <= owners
    assert len(owners) < 10
    assert soa_serials(transfer(service, ixfr(new))) == [new]  # up to date: the SOA alone
    unknown = transfer(service, ixfr(old - 5))  # no history from there: the whole zone
    assert soa_serials(unknown) == [new, new]
    assert len(unknown) == len(axfr)
