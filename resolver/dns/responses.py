"""Answers this server writes itself: errors and block answers, built straight as bytes.

A block answer comes in two forms: an ``Answer`` for the pipeline (``build``, finished by
``codec.encode_answer``), and the finished bytes for a plain query (``plain``), which
the fast path gives a banned name it has not seen before without the pipeline. The two
are the same bytes: ``tests/unit/test_plain_block.py`` compares them."""

from __future__ import annotations

import ipaddress
import struct
from typing import Final

from resolver.dns import wire
from resolver.dns.model import Answer, Outcome, Query

# Owner of the SOA we put in negative block answers; .invalid can never resolve (RFC 6761).
_SOA_MNAME: Final = wire.text_to_name("aiwall.invalid")
_SOA_RNAME: Final = wire.text_to_name("hostmaster.aiwall.invalid")


# A plain block answer's parts (``BlockAnswers._plan``): the header after the ID for each
# of the client's RD and CD bits, whether a pointer to the zone follows the question,
# the bytes after it, and their size with the pointer.
_Plan = tuple[tuple[bytes, ...], bool, bytes, int]
# Plans kept per group: kinds of answers (mode, type, DO bit, rule text) a group gives.
_PLANS: Final = 1024
# Compression pointers to each offset a question's label can start at (RFC 1035 4.1.4).
_POINTERS: Final = tuple(wire.U16.pack(0xC000 | offset) for offset in range(12 + 256))


def _header(query: Query, rcode: int, ancount: int = 0, nscount: int = 0) -> bytes:
    # The codec fills in ID and client bits; only the counts and rcode matter here.
    qdcount = 1 if query.qname else 0
    return wire.HEADER.pack(0, wire.QR | (rcode & wire.RCODE_MASK), qdcount, ancount, nscount, 0)


def _question(query: Query) -> bytes:
    return query.raw[12 : query.question_end] if query.qname else b""


def error(query: Query, rcode: int, outcome: Outcome, ede: tuple[int, str] | None = None) -> Answer:
    """A header-and-question answer carrying only an rcode (FORMERR, REFUSED, SERVFAIL...)."""
    message = _header(query, rcode) + _question(query)
    return Answer(message=message, outcome=outcome, rcode=rcode, ede=ede)


def truncated(query: Query, outcome: Outcome) -> Answer:
    """Header and question with TC set: "ask again over TCP" (RFC 1035 4.2.1)."""
    message = _header(query, wire.NOERROR) + _question(query)
    flags = wire.U16.unpack_from(message, 2)[0] | wire.TC
    return Answer(
        message=message[:2] + wire.U16.pack(flags) + message[4:],
        outcome=outcome,
        rcode=wire.NOERROR,
    )


def _pointer_to(query: Query, label_index: int) -> bytes:
    # Names we write are suffixes of the question name, so a pointer is all they take.
    return wire.U16.pack(0xC000 | (12 + query.labels[label_index]))


def soa_record_tail(ttl: int) -> bytes:
    """Everything of the block SOA record after its owner name (the same for every answer)."""
    rdata = _SOA_MNAME + _SOA_RNAME + struct.pack("!IIIII", 1, 3600, 600, 86400, ttl)
    return wire.RR_FIXED.pack(wire.TYPE_SOA, wire.CLASS_IN, ttl, len(rdata)) + rdata


class BlockAnswers:
    """Builds the answer for a blocked name in the configured response mode."""

    def __init__(self, mode: str, ttl: int, sinkhole_ipv4: str, sinkhole_ipv6: str) -> None:
        self.mode = mode
        self.ttl = ttl
        self._addresses = (sinkhole_ipv4, sinkhole_ipv6)
        self._ipv4 = ipaddress.IPv4Address(sinkhole_ipv4).packed
        self._ipv6 = ipaddress.IPv6Address(sinkhole_ipv6).packed
        self._soa_tail = soa_record_tail(ttl)
        # (mode, qtype, DO bit or -1, EDE text) -> its plain answer's parts (``_plan``).
        self._plans: dict[tuple[str, int, int, str], _Plan] = {}

    def __reduce__(self) -> tuple[type[BlockAnswers], tuple[str, int, str, str]]:
        """Pickled as its arguments (a policy comes from the builder process pickled):
        compiled (resolver.compiled), a class has no other way to be."""
        return BlockAnswers, (self.mode, self.ttl, *self._addresses)

    def build(self, query: Query, zone_label: int, mode: str, ede_text: str) -> Answer:
        """``zone_label`` is the index of the label where the matched entry starts; the
        negative answer's SOA is owned by that entry, as if it were the zone apex."""
        ede = (wire.EDE_BLOCKED, ede_text)
        if mode == "refused":
            return error(query, wire.REFUSED, Outcome.BLOCKED, ede)
        if mode == "sinkhole" and query.qtype in (wire.TYPE_A, wire.TYPE_AAAA):
            address = self._ipv4 if query.qtype == wire.TYPE_A else self._ipv6
            record = (
                _pointer_to(query, 0)
                + wire.RR_FIXED.pack(query.qtype, wire.CLASS_IN, self.ttl, len(address))
                + address
            )
            message = _header(query, wire.NOERROR, ancount=1) + _question(query) + record
            return Answer(message=message, outcome=Outcome.BLOCKED, rcode=wire.NOERROR, ede=ede)
        # nxdomain, nodata, and sinkhole for types that have no sinkhole address: a negative
        # answer with a SOA, so downstream caches keep it for the block TTL (RFC 2308 5).
        rcode = wire.NXDOMAIN if mode == "nxdomain" else wire.NOERROR
        message = _header(query, rcode, nscount=1) + _question(query)
        message += _pointer_to(query, zone_label) + self._soa_tail
        return Answer(message=message, outcome=Outcome.BLOCKED, rcode=rcode, ede=ede)

    def plain(
        self,
        data: bytes,
        question_end: int,
        qtype: int,
        zone_at: int,
        mode: str,
        edns: int,
        ede_text: str,
    ) -> bytes | None:
        """The answer to the plain query ``data`` (``codec.plain_question``: ``qtype``,
        ``edns``) as sent, after its ID; ``zone_at``: the offset of the matched entry's
        label in it. None when it would not fit the client's buffer (the pipeline then
        sends it truncated)."""
        do = edns >> 16  # -1: no EDNS; else the DO bit (codec.EDNS_DO_BIT)
        plan = self._plans.get((mode, qtype, do, ede_text))
        if plan is None:
            plan = self._plan(mode, qtype, do, ede_text)
        headers, pointed, after, size = plan
        # Never more than the client's buffer, nor than we advertise (the codec's limit).
        total = question_end + size
        if total > (wire.PLAIN_UDP_LIMIT if do < 0 else edns & 0xFFFF) or total > wire.EDNS_PAYLOAD:
            return None
        # Echoed: RD (the flags' first byte, bit 0) and CD (the second, 0x10): the codec's
        # _CLIENT_BITS; the opcode of a plain query is 0.
        header = headers[data[2] & 1 | data[3] >> 3 & 2]
        if pointed:
            return header + data[12:question_end] + _POINTERS[zone_at] + after
        return header + data[12:question_end] + after

    def _plan(self, mode: str, qtype: int, do: int, ede_text: str) -> _Plan:
        """What a plain block answer is made of, after its ID, but for the question and
        the pointer to the zone (``plain``): the same for every query of this kind, so
        made once. Depends only on the arguments and on what ``__init__`` set."""
        records = b""
        answers = authorities = 0
        if mode == "refused":
            rcode = wire.REFUSED
        elif mode == "sinkhole" and qtype in (wire.TYPE_A, wire.TYPE_AAAA):
            rcode, answers = wire.NOERROR, 1
            address = self._ipv4 if qtype == wire.TYPE_A else self._ipv6
            fixed = wire.RR_FIXED.pack(qtype, wire.CLASS_IN, self.ttl, len(address))
            records = b"\xc0\x0c" + fixed + address
        else:
            rcode, authorities = (wire.NXDOMAIN if mode == "nxdomain" else wire.NOERROR), 1
        opt = b""
        if do >= 0:
            options = wire.ede_option(wire.EDE_BLOCKED, ede_text)
            opt = wire.opt_record(do=bool(do), options=options)
        counts = wire.COUNTS.pack(1, answers, authorities, 1 if opt else 0)
        headers = tuple(
            wire.U16.pack(wire.QR | wire.RA | rcode | echoed) + counts
            for echoed in (0, wire.RD, wire.CD, wire.RD | wire.CD)
        )
        after = (self._soa_tail if authorities else records) + opt
        plan = (headers, bool(authorities), after, len(after) + 2 * authorities)
        if len(self._plans) >= _PLANS:
            self._plans.clear()
        self._plans[(mode, qtype, do, ede_text)] = plan
        return plan
