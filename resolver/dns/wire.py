"""DNS wire format, read straight from bytes.

The hot path never builds a full message object: a query is read as far as its
header, question and OPT record, and an upstream answer is only walked (record
headers, not record data) to find its TTL fields, its OPT record and any CNAME
targets. Everything here works on ``bytes`` and offsets.
"""

from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass
from typing import Final

HEADER: Final = struct.Struct("!HHHHHH")
COUNTS: Final = struct.Struct("!HHHH")
U16: Final = struct.Struct("!H")
U32: Final = struct.Struct("!I")
RR_FIXED: Final = struct.Struct("!HHIH")  # type, class, ttl, rdlength

# Header flag bits (RFC 1035 4.1.1, RFC 4035 for AD/CD).
QR: Final = 0x8000
OPCODE_MASK: Final = 0x7800
AA: Final = 0x0400
TC: Final = 0x0200
RD: Final = 0x0100
RA: Final = 0x0080
AD: Final = 0x0020
CD: Final = 0x0010
RCODE_MASK: Final = 0x000F

CLASS_IN: Final = 1

TYPE_A: Final = 1
TYPE_NS: Final = 2
TYPE_CNAME: Final = 5
TYPE_SOA: Final = 6
TYPE_AAAA: Final = 28
TYPE_OPT: Final = 41
TYPE_IXFR: Final = 251
TYPE_AXFR: Final = 252
TYPE_ANY: Final = 255

NOERROR: Final = 0
FORMERR: Final = 1
SERVFAIL: Final = 2
NXDOMAIN: Final = 3
NOTIMP: Final = 4
REFUSED: Final = 5
BADVERS: Final = 16

EDNS_DO: Final = 0x8000
OPTION_EDE: Final = 15
# RFC 8914 codes this server sends.
EDE_STALE_ANSWER: Final = 3
EDE_STALE_NXDOMAIN_ANSWER: Final = 19
EDE_BLOCKED: Final = 15
EDE_PROHIBITED: Final = 18
EDE_NO_REACHABLE_AUTHORITY: Final = 22

# What we advertise and ask for: the DNS Flag Day 2020 size, small enough to avoid IP fragmentation.
EDNS_PAYLOAD: Final = 1232
PLAIN_UDP_LIMIT: Final = 512
# RFC 2181 8: TTLs are 31-bit; a value with the top bit set means zero.
MAX_TTL: Final = 0x7FFFFFFF

RCODE_NAMES: Final = {
    NOERROR: "NOERROR",
    FORMERR: "FORMERR",
    SERVFAIL: "SERVFAIL",
    NXDOMAIN: "NXDOMAIN",
    NOTIMP: "NOTIMP",
    REFUSED: "REFUSED",
    BADVERS: "BADVERS",
}


class WireError(ValueError):
    """The bytes are not a DNS message we can read."""


def read_question_name(data: bytes, offset: int) -> tuple[int, tuple[int, ...]]:
    """Read an uncompressed name; return where it ends and where each label starts.

    A query's question is the first name in the message, so a compression pointer there
    can only point backwards into the header: such a query is malformed.
    """
    starts: list[int] = []
    position = offset
    try:
        # Past the end, the index raises: one test per label fewer (every query has one).
        length = data[position]
        while length:
            if length > 63:
                raise WireError("compression or reserved label type in the question")
            starts.append(position - offset)
            position += length + 1
            length = data[position]
    except IndexError:
        raise WireError("question name runs past the end of the message") from None
    if position - offset + 1 > 255:
        raise WireError("question name longer than 255 bytes")
    return position + 1, tuple(starts)


def skip_name(data: bytes, offset: int) -> int:
    """Return the offset just after a (possibly compressed) name."""
    end = len(data)
    while True:
        if offset >= end:
            raise WireError("name runs past the end of the message")
        length = data[offset]
        if length == 0:
            return offset + 1
        if length >= 0xC0:
            if offset + 2 > end:
                raise WireError("compression pointer cut short")
            return offset + 2
        if length > 63:
            raise WireError("reserved label type")
        offset += length + 1


def read_name(data: bytes, offset: int) -> bytes:
    """Decompress a name into lowercase wire form (used only for CNAME targets)."""
    labels = bytearray()
    jumps = 0
    end = len(data)
    while True:
        if offset >= end:
            raise WireError("name runs past the end of the message")
        length = data[offset]
        if length == 0:
            labels.append(0)
            if len(labels) > 255:
                raise WireError("name longer than 255 bytes")
            return bytes(labels).lower()
        if length >= 0xC0:
            if offset + 2 > end:
                raise WireError("compression pointer cut short")
            jumps += 1
            if jumps > 64:
                raise WireError("compression loop")
            offset = U16.unpack_from(data, offset)[0] & 0x3FFF
            continue
        if length > 63:
            raise WireError("reserved label type")
        labels += data[offset : offset + length + 1]
        offset += length + 1


# A name of plain labels (letters, digits, "-", "_"), none of them longer than
# 44 bytes, up to its root label: one alternative per label length, so the match checks
# every length byte, and needs no loop of ours. Below 45 a length byte is never a byte
# such a label holds ("-" is 45, digits 48 to 57), so the length bytes can become dots
# by a byte translation. Longer labels and other bytes take the label walk.
_PLAIN_LABEL: Final = rb"[-0-9A-Z_a-z]"
_PLAIN_NAME: Final = re.compile(
    b"(?:"
    + b"|".join(re.escape(bytes((n,))) + _PLAIN_LABEL + b"{%d}" % n for n in range(1, 45))
    + b")*\x00"
)
_LENGTHS_TO_DOTS: Final = bytes.maketrans(bytes(range(1, 45)), b"." * 44)


def name_to_text(name: bytes) -> str:
    """Wire-form name to presentation text without the trailing dot ("" for the root).

    It stops at the root label (or at the end of ``name``); bytes after it are ignored.
    A byte outside printable ASCII, and a "." or "\\" inside a label, is written ``\\DDD``
    (RFC 1035 5.1); case is kept (RFC 4343 2.1).
    """
    plain = _PLAIN_NAME.match(name)
    if plain is not None:
        # Nearly every name: no escaping to do. (The root alone has no text; tested
        # before slicing: compiled, a slice that starts past its end is an error.)
        end = plain.end() - 1
        return name[1:end].translate(_LENGTHS_TO_DOTS).decode("ascii") if end > 1 else ""
    labels: list[bytes] = []
    position = 0
    while position < len(name) and name[position]:
        length = name[position]
        labels.append(name[position + 1 : position + 1 + length])
        position += length + 1
    return ".".join(
        "".join(
            chr(b) if 0x21 <= b <= 0x7E and b not in (0x2E, 0x5C) else f"\\{b:03d}" for b in label
        )
        for label in labels
    )


def text_to_name(text: str) -> bytes:
    """Presentation text (ASCII or IDNA already applied) to lowercase wire form."""
    stripped = text.strip().rstrip(".").lower()
    if not stripped:
        return b"\x00"
    out = bytearray()
    for label in stripped.split("."):
        encoded = label.encode("ascii")
        if not 0 < len(encoded) <= 63:
            raise WireError(f"label {label!r} must be 1 to 63 characters")
        out.append(len(encoded))
        out += encoded
    out.append(0)
    if len(out) > 255:
        raise WireError("name longer than 255 bytes")
    return bytes(out)


def label_starts(name: bytes) -> tuple[int, ...]:
    """Offsets of each label of a wire-form name (the root label excluded)."""
    starts: list[int] = []
    position = 0
    while name[position]:
        starts.append(position)
        position += name[position] + 1
    return tuple(starts)


def question(qname: bytes, qtype: int, qclass: int = CLASS_IN) -> bytes:
    """A question section: a wire-form name, its type and class."""
    return qname + U16.pack(qtype) + U16.pack(qclass)


def query_message(ident: int, question_bytes: bytes, flags: int = RD, opt: bytes = b"") -> bytes:
    """A query: header, one question, and an OPT record when ``opt`` is given."""
    return HEADER.pack(ident, flags, 1, 0, 0, 1 if opt else 0) + question_bytes + opt


# The server's own question to an upstream (probes, readiness): the root NS set, which
# every recursive resolver can answer from its cache.
ROOT_NS: Final = b"\x00" + U16.pack(TYPE_NS) + U16.pack(CLASS_IN)


def opt_record(*, do: bool, extended_rcode: int = 0, options: bytes = b"") -> bytes:
    """An OPT pseudo-record advertising our payload size (RFC 6891 6.1.2)."""
    ttl = (extended_rcode << 24) | (EDNS_DO if do else 0)
    return b"\x00" + RR_FIXED.pack(TYPE_OPT, EDNS_PAYLOAD, ttl, len(options)) + options


@functools.lru_cache(maxsize=4096)
def ede_option(code: int, text: str) -> bytes:
    """An Extended DNS Error option (RFC 8914): info-code then UTF-8 text."""
    # Cut on a character boundary: RFC 8914 2 wants UTF-8, and a split character makes
    # strict clients reject the whole message.
    encoded = text.encode("utf-8")[:200].decode("utf-8", "ignore").encode("utf-8")
    body = U16.pack(code) + encoded
    return U16.pack(OPTION_EDE) + U16.pack(len(body)) + body


# Not frozen, and its own __init__: a frozen one costs a microsecond per answer, and the
# decorator's runs as bytecode even compiled (resolver.dns.model, Query).
@dataclass(slots=True, init=False)
class ResponseScan:
    """What a relayed answer needs to be cached and inspected, found without decoding it."""

    rcode: int
    ttl_offsets: tuple[int, ...]  # where each record's TTL sits (OPT excluded)
    min_ttl: int | None  # smallest TTL of the answer records (None: no answer records)
    negative_ttl: int | None  # RFC 2308: min(SOA TTL, SOA MINIMUM) of an authority SOA
    cnames: tuple[bytes, ...]  # CNAME targets in the answer section, lowercase wire form
    opt_start: int  # where the OPT record starts, -1 when absent
    opt_end: int
    huge_ttls: bool = False  # some TTL has its top bit set (to be relayed as 0)

    def __init__(
        self,
        rcode: int,
        ttl_offsets: tuple[int, ...],
        min_ttl: int | None,
        negative_ttl: int | None,
        cnames: tuple[bytes, ...],
        opt_start: int,
        opt_end: int,
        huge_ttls: bool = False,
    ) -> None:
        self.rcode = rcode
        self.ttl_offsets = ttl_offsets
        self.min_ttl = min_ttl
        self.negative_ttl = negative_ttl
        self.cnames = cnames
        self.opt_start = opt_start
        self.opt_end = opt_end
        self.huge_ttls = huge_ttls


def scan_response(data: bytes, question_end: int = 0) -> ResponseScan:
    """Walk every record of a response, decoding only CNAME targets and SOA timers.

    ``question_end``: where the question section ends, when the caller has checked it
    already (``upstream.udp.check``: our one question, echoed); 0: walk it here.
    """
    if len(data) < 12:
        raise WireError("shorter than a DNS header")
    _, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    offset = question_end or _questions_end(data, qdcount)
    ttl_offsets: list[int] = []
    cnames: list[bytes] = []
    min_ttl: int | None = None
    negative_ttl: int | None = None
    opt_start = opt_end = -1
    extended_rcode = 0
    huge_ttls = False
    answers_end, authorities_end = ancount, ancount + nscount
    unpack = RR_FIXED.unpack_from
    try:
        for index in range(authorities_end + arcount):
            start = offset
            # Nearly every owner is a pointer (RFC 1035 4.1.4): two bytes, no walk. A
            # pointer cut short fails the record header's unpack just below.
            offset = offset + 2 if data[offset] >= 0xC0 else skip_name(data, offset)
            rtype, _rclass, ttl, rdlength = unpack(data, offset)
            if ttl > MAX_TTL:
                # RFC 2181 8: a TTL with the top bit set is read as zero.
                ttl = 0
                huge_ttls = True
            rdata = offset + 10
            offset = rdata + rdlength
            if rtype == TYPE_OPT:
                opt_start, opt_end = start, offset
                extended_rcode = ttl >> 24
                continue
            ttl_offsets.append(rdata - 6)
            if index < answers_end:
                if min_ttl is None or ttl < min_ttl:
                    min_ttl = ttl
                if rtype == TYPE_CNAME:
                    cnames.append(read_name(data, rdata))
            elif index < authorities_end and rtype == TYPE_SOA:
                negative_ttl = _soa_negative_ttl(data, rdata, offset, ttl)
    except (IndexError, struct.error):
        raise WireError("record cut short") from None
    # Checked once, at the end: a record data running past the end leaves offset there.
    if offset != len(data):
        raise WireError("record data cut short or trailing bytes after the last record")
    return ResponseScan(
        (extended_rcode << 4) | (flags & RCODE_MASK),
        tuple(ttl_offsets),
        min_ttl,
        negative_ttl,
        tuple(cnames),
        opt_start,
        opt_end,
        huge_ttls,
    )


def _questions_end(data: bytes, count: int) -> int:
    """Where the question section of ``count`` questions ends."""
    offset = 12
    for _ in range(count):
        offset = skip_name(data, offset) + 4
    return offset


def _soa_negative_ttl(data: bytes, rdata: int, end: int, ttl: int) -> int:
    """RFC 2308 5: an authority SOA's min(TTL, MINIMUM), its record data ending at ``end``."""
    rdata_end = skip_name(data, skip_name(data, rdata))
    if rdata_end + 20 != end:
        raise WireError("SOA record data has the wrong length")
    minimum: int = U32.unpack_from(data, rdata_end + 16)[0]
    return min(ttl, minimum if minimum <= MAX_TTL else 0)


def without_opt(data: bytes, scan: ResponseScan) -> tuple[bytes, tuple[int, ...]]:
    """The message with its OPT record removed (EDNS is hop-by-hop: we add our own), and
    its TTL offsets moved to match."""
    if scan.opt_start < 0:
        return data, scan.ttl_offsets
    header = data[:10] + U16.pack(U16.unpack_from(data, 10)[0] - 1)
    if scan.opt_end == len(data):
        # Where it nearly always is, last: no TTL after it to move.
        return header + data[12 : scan.opt_start], scan.ttl_offsets
    removed = scan.opt_end - scan.opt_start
    offsets = tuple(o - removed if o > scan.opt_start else o for o in scan.ttl_offsets)
    return header + data[12 : scan.opt_start] + data[scan.opt_end :], offsets


def zero_huge_ttls(message: bytes, ttl_offsets: tuple[int, ...]) -> bytes:
    """The message with every TTL above MAX_TTL set to 0 (RFC 2181 8), so that neither
    the client nor our cache reads it as 68 years."""
    out = bytearray(message)
    for offset in ttl_offsets:
        if U32.unpack_from(out, offset)[0] > MAX_TTL:
            U32.pack_into(out, offset, 0)
    return bytes(out)
