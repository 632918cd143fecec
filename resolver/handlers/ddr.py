"""Discovery of Designated Resolvers (RFC 9462): tell clients where our DoT and DoH are.

A client that knows only our plain-DNS address asks ``_dns.resolver.arpa`` for type SVCB
(RFC 9460) and upgrades to the encrypted endpoints we announce, instead of leaving for a
public DoH service that the policy cannot see. The answer is built once per config.

Names under ``resolver.arpa`` are answered here and never forwarded (RFC 9462 4: a
forwarder must not pass the question on): forwarded, it would announce the upstream's
encrypted endpoints, and a client that upgrades to those bypasses the ban. With no
DoT/DoH listener the answer is NODATA. ``_dns.<tls.name>`` (RFC 9461 2) is answered
with the same records, for clients that know our name.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from resolver.config import Config, DnsEndpoint
from resolver.dns import wire
from resolver.dns.model import Answer, Handler, Outcome, Query, Resolution

TYPE_SVCB: Final = 64
DDR_TTL: Final = 300
RESOLVER_ARPA: Final = wire.text_to_name("resolver.arpa")
DDR_NAME: Final = wire.text_to_name("_dns.resolver.arpa")
# SvcParamKeys (RFC 9460 14.3.2, RFC 9461 5): sent in increasing order (RFC 9460 2.2).
KEY_ALPN, KEY_PORT, KEY_IPV4HINT, KEY_IPV6HINT, KEY_DOHPATH = 1, 3, 4, 6, 7


def _param(key: int, value: bytes) -> bytes:
    return wire.U16.pack(key) + wire.U16.pack(len(value)) + value


def _hints(endpoints: list[DnsEndpoint]) -> bytes:
    """ipv4hint and ipv6hint from the listener addresses (none for a wildcard)."""
    v4 = [ipaddress.ip_address(e.host) for e in endpoints if not e.wildcard and ":" not in e.host]
    v6 = [ipaddress.ip_address(e.host) for e in endpoints if not e.wildcard and ":" in e.host]
    out = b""
    if v4:
        out += _param(KEY_IPV4HINT, b"".join(a.packed for a in dict.fromkeys(v4)))
    if v6:
        out += _param(KEY_IPV6HINT, b"".join(a.packed for a in dict.fromkeys(v6)))
    return out


def svcb_rdatas(config: Config) -> list[bytes]:
    """One ServiceMode SVCB record per encrypted port: DoT first, then DoH (RFC 9461)."""
    target = wire.text_to_name(config.tls.name) if config.tls.name else b"\0"
    template = f"{config.listen.doh_path}{{?dns}}".encode()  # RFC 8484 4.1 URI template
    kinds = (
        ([b"dot"], config.listen.dot, b""),
        ([b"h2", b"http/1.1"], config.listen.doh, _param(KEY_DOHPATH, template)),
    )
    rdatas: list[bytes] = []
    for alpn, endpoints, extra in kinds:
        for port in dict.fromkeys(e.port for e in endpoints if e.port):
            alpn_value = b"".join(bytes([len(a)]) + a for a in alpn)
            params = _param(KEY_ALPN, alpn_value) + _param(KEY_PORT, wire.U16.pack(port))
            params += _hints([e for e in endpoints if e.port == port]) + extra
            priority = len(rdatas) + 1
            rdatas.append(wire.U16.pack(priority) + target + params)
    return rdatas


def _records(rdatas: list[bytes]) -> bytes:
    # Owner: a pointer to the question name at offset 12 (RFC 1035 4.1.4).
    return b"".join(
        wire.U16.pack(0xC00C)
        + wire.RR_FIXED.pack(TYPE_SVCB, wire.CLASS_IN, DDR_TTL, len(rdata))
        + rdata
        for rdata in rdatas
    )


class DdrHandler:
    name = "ddr"

    def __init__(self, config: Config, next_handler: Handler) -> None:
        self._next = next_handler
        rdatas = svcb_rdatas(config)
        self._count = len(rdatas)
        self._records = _records(rdatas)
        self._own = wire.text_to_name(f"_dns.{config.tls.name}") if config.tls.name else b""

    @property
    def names(self) -> tuple[bytes, ...]:
        """The names this stage answers itself: everything under resolver.arpa, and
        ``_dns.<tls.name>`` when set."""
        return (RESOLVER_ARPA, self._own) if self._own else (RESOLVER_ARPA,)

    def handle(self, query: Query) -> Resolution:
        qname = query.qname
        ours = qname == DDR_NAME or (self._own != b"" and qname == self._own)
        # endswith first: one C call for the questions that are not ours, nearly all.
        if not ours and not (
            qname.endswith(RESOLVER_ARPA) and _under(qname, query.labels, RESOLVER_ARPA)
        ):
            return self._next.handle(query)
        question = query.raw[12 : query.question_end]
        if not ours and qname != RESOLVER_ARPA:
            # Nothing else exists under resolver.arpa (RFC 9462 6.2); AA is ours to set.
            message = wire.HEADER.pack(0, wire.QR | wire.AA, 1, 0, 0, 0) + question
            return Answer(message=message, outcome=Outcome.SYNTHESIZED, rcode=wire.NXDOMAIN)
        count = self._count if ours and query.qtype == TYPE_SVCB else 0
        records = self._records if count else b""
        message = wire.HEADER.pack(0, wire.QR | wire.AA, 1, count, 0, 0) + question + records
        return Answer(message=message, outcome=Outcome.SYNTHESIZED, rcode=wire.NOERROR)


def _under(qname: bytes, labels: tuple[int, ...], zone: bytes) -> bool:
    """``qname``, which ends with ``zone``, is ``zone`` or a name below it, on a label
    boundary."""
    return len(qname) == len(zone) or len(qname) - len(zone) in labels
