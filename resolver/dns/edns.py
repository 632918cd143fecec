"""A query's EDNS (RFC 6891): its OPT record, found and checked without decoding the
rest of the message. The OPT records this server writes are built in ``wire``
(``opt_record``, ``ede_option``).
"""

from __future__ import annotations

from dataclasses import dataclass

from resolver.dns.wire import EDNS_DO, PLAIN_UDP_LIMIT, RR_FIXED, TYPE_OPT, WireError, skip_name


# Not frozen, and its own __init__: a frozen one costs a microsecond per query, and the
# decorator's runs as bytecode even compiled (resolver.dns.model, Query).
@dataclass(slots=True, init=False)
class Edns:
    payload: int
    version: int
    do: bool

    def __init__(self, payload: int, version: int, do: bool) -> None:
        self.payload = payload
        self.version = version
        self.do = do


def lone_opt(data: bytes, offset: int) -> tuple[int, int] | None:
    """The shape of nearly every EDNS query: one root-owned OPT right after the question,
    ending the message. Its (payload size field, TTL field) when so, else None."""
    if data[offset : offset + 3] == b"\x00\x00\x29" and offset + 11 <= len(data):
        _, payload, ttl, rdlength = RR_FIXED.unpack_from(data, offset + 1)
        if offset + 11 + rdlength == len(data):
            return payload, ttl
    return None


def read_opt(data: bytes, offset: int, counts: tuple[int, int, int]) -> tuple[Edns | None, str]:
    """Find the OPT record among the records that start at ``offset``.

    Returns the EDNS parameters (None when absent) and a problem description ("" when
    none): more than one OPT, or an OPT with a non-root owner, is a FORMERR (RFC 6891 6.1.1).
    """
    answers, authorities, additionals = counts
    if additionals == 1 and not answers and not authorities:
        shape = lone_opt(data, offset)
        if shape is not None:
            payload, ttl = shape
            return Edns(max(payload, PLAIN_UDP_LIMIT), (ttl >> 16) & 0xFF, bool(ttl & EDNS_DO)), ""
    edns: Edns | None = None
    total = answers + authorities + additionals
    for index in range(total):
        name_start = offset
        offset = skip_name(data, offset)
        if offset + 10 > len(data):
            raise WireError("record header cut short")
        rtype, rclass, ttl, rdlength = RR_FIXED.unpack_from(data, offset)
        offset += 10 + rdlength
        if offset > len(data):
            raise WireError("record data cut short")
        if rtype != TYPE_OPT:
            continue
        if index < answers + authorities:
            return None, "OPT outside the additional section"
        if edns is not None:
            return None, "more than one OPT record"
        if data[name_start] != 0:
            return None, "OPT owner is not the root"
        edns = Edns(
            payload=max(rclass, PLAIN_UDP_LIMIT), version=(ttl >> 16) & 0xFF, do=bool(ttl & EDNS_DO)
        )
    return edns, ""
