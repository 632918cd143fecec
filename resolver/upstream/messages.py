"""What goes to an upstream and what comes back: the upstreams' addresses, our own
query for a client's question, and a genuine answer made into the one we relay."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Final

from resolver.config import EncryptedEndpoint, Endpoint
from resolver.dns import wire
from resolver.dns.model import Answer, Outcome, Query


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int
    label: str  # "host:port" (or the tls:// or https:// URL), the metric label
    scheme: str = "dns"  # "dns" (UDP, TCP on truncation), "tls" (DoT) or "https" (DoH)
    name: str = ""  # DoT, DoH: the name (or IP address) the certificate must show
    path: str = ""  # DoH: the URL path

    @classmethod
    def at(cls, endpoint: Endpoint) -> Upstream:
        return cls(endpoint.host, endpoint.port, str(endpoint))

    @classmethod
    def encrypted(cls, end: EncryptedEndpoint) -> Upstream:
        return cls(end.host, end.port, str(end), end.scheme, end.name, end.path)

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


_OPTION_PADDING: Final = 12  # RFC 7830
_PAD_BLOCK: Final = 128  # RFC 8467 4.1: queries padded to a multiple of 128 octets
_OPT: Final = {do: wire.opt_record(do=do) for do in (False, True)}  # unpadded, by DO bit


def upstream_query(query: Query, ident: int, padded: bool = False) -> bytes:
    """Our own query for the client's question: new ID, RD set (we forward to recursive
    resolvers), CD echoed, and an OPT asking for 1232-byte answers with the client's DO bit.
    ``padded`` (DoT, DoH): the length hides the name (RFC 7858 3.4, RFC 8467)."""
    flags = wire.RD | (query.flags & wire.CD)
    do = query.edns.do if query.edns is not None else False
    head = wire.HEADER.pack(ident, flags, 1, 0, 0, 1) + query.raw[12 : query.question_end]
    if not padded:
        return head + _OPT[do]
    fill = -(len(head) + len(wire.opt_record(do=do)) + 4) % _PAD_BLOCK
    padding = wire.U16.pack(_OPTION_PADDING) + wire.U16.pack(fill) + bytes(fill)
    return head + wire.opt_record(do=do, options=padding)


def answer_from(data: bytes, scan: wire.ResponseScan) -> Answer:
    """A genuine upstream answer as relayed: without its OPT (hop-by-hop), without
    the AA bit, huge TTLs read as 0 (RFC 2181 8), with how long it may be cached."""
    message, ttl_offsets = wire.without_opt(data, scan)
    if scan.huge_ttls:
        message = wire.zero_huge_ttls(message, ttl_offsets)
    flags = wire.U16.unpack_from(message, 2)[0]
    if flags & wire.AA:
        # We did not author this data: never claim authority for it.
        message = message[:2] + wire.U16.pack(flags & ~wire.AA) + message[4:]
    cache_ttl: int | None = None
    if scan.rcode == wire.NOERROR and scan.min_ttl is not None:
        cache_ttl = scan.min_ttl
    elif scan.rcode in (wire.NOERROR, wire.NXDOMAIN) and scan.negative_ttl is not None:
        cache_ttl = scan.negative_ttl
    return Answer(
        message=message,
        outcome=Outcome.FORWARDED,
        rcode=scan.rcode,
        cnames=scan.cnames,
        ttl_offsets=ttl_offsets,
        cache_ttl=cache_ttl,
    )
