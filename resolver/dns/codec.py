"""Bytes to Query, Answer to bytes: all the transports need to know about DNS."""

from __future__ import annotations

import struct
from typing import Final

from resolver.dns import wire
from resolver.dns.edns import Edns, lone_opt, read_opt
from resolver.dns.model import Answer, Query

_TYPE_CLASS: Final = struct.Struct("!HH")  # a question's type and class, after its name


def parse_query(data: bytes, protocol: str, client: str) -> Query | None:
    """Read a query; None means "drop it": too short to answer, or not a query at all.

    A readable header with a bad question still yields a Query (with ``problem`` set) so
    that the client gets a FORMERR rather than a timeout.
    """
    if len(data) < 12:
        return None
    ident, flags, qdcount, ancount, nscount, arcount = wire.HEADER.unpack_from(data)
    if flags & wire.QR:
        # Answering a response could start a loop between two servers.
        return None
    qname = b""
    labels: tuple[int, ...] = ()
    qtype = qclass = 0
    question_end = 12
    problem = ""
    edns = None
    if qdcount != 1:
        problem = f"QDCOUNT is {qdcount}"
    else:
        try:
            name_end, starts = wire.read_question_name(data, 12)
            if name_end + 4 > len(data):
                raise wire.WireError("question cut short")
            # Set together with qname, so a cut question leaves no offsets into nothing.
            qname, labels = data[12:name_end].lower(), starts
            qtype, qclass = _TYPE_CLASS.unpack_from(data, name_end)
            question_end = name_end + 4
            if ancount or nscount or arcount:
                edns, problem = read_opt(data, question_end, (ancount, nscount, arcount))
        except wire.WireError as error:
            problem = str(error)
    return Query(
        raw=data,
        id=ident,
        flags=flags,
        qdcount=qdcount,
        qname=qname,
        labels=labels,
        qtype=qtype,
        qclass=qclass,
        question_end=question_end,
        edns=edns,
        protocol=protocol,
        client=client,
        problem=problem,
    )


# The header of a plain query after its ID and flags: one question, no answer or
# authority records, then no additional record or one (the OPT).
_PLAIN_COUNTS: Final = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_PLAIN_COUNTS_OPT: Final = b"\x00\x01\x00\x00\x00\x00\x00\x01"
# Types sanity answers itself (FORMERR, REFUSED): never plain.
_NOT_PLAIN_TYPES: Final = frozenset({wire.TYPE_OPT, wire.TYPE_AXFR, wire.TYPE_IXFR})
# EDNS of a plain question: absent, or the payload size advertised (RFC 6891 6.2.5:
# at least 512) with the DO bit above it.
NO_EDNS: Final = -1
EDNS_DO_BIT: Final = 1 << 16
# What follows the question name in a plain query (type, class, then the OPT if any):
# (its type, its EDNS, the additional count it goes with); the count is -1 when the
# bytes are not a plain query's. The few client programs of a network send the same
# bytes there question after question: they are read once, then looked up. Bounded in
# entries and in their size (an OPT with a cookie fits).
_TailShape = tuple[int, int, int]
_NOT_PLAIN: Final[_TailShape] = (0, NO_EDNS, -1)
_TAILS: Final[dict[bytes, _TailShape]] = {}
_TAILS_KEPT: Final = 256
_TAIL_KEPT_SIZE: Final = 64


# A plain query's question (``plain_question``): where its name ends, its label
# offsets, its type, its EDNS (NO_EDNS, or the payload size | EDNS_DO_BIT).
PlainQuestion = tuple[int, tuple[int, ...], int, int]


def plain_question(data: bytes) -> PlainQuestion | None:
    """The question of a plain query, the shape of nearly every one: opcode QUERY, one
    class IN question, no answer or authority records, and either nothing after the
    question or one OPT of EDNS version 0 ending the message. Returns (where the name
    ends, its label offsets, its type, its EDNS as NO_EDNS or payload | EDNS_DO_BIT);
    None for anything else, which ``parse_query`` and the pipeline's sanity stage
    read in full. A plain query is one they would pass through unchanged."""
    if len(data) < 17 or data[2] & 0xF8:
        return None  # a response or another opcode
    counts = data[4:12]
    if counts != _PLAIN_COUNTS and counts != _PLAIN_COUNTS_OPT:
        return None
    try:
        name_end, labels = wire.read_question_name(data, 12)
    except wire.WireError:
        return None
    tail = data[name_end:]
    shape = _TAILS.get(tail)
    if shape is None:
        shape = _tail_shape(tail)
        if len(tail) <= _TAIL_KEPT_SIZE:
            if len(_TAILS) >= _TAILS_KEPT:
                _TAILS.clear()
            _TAILS[tail] = shape
    qtype, edns, additional = shape
    if additional != counts[7]:
        return None  # not a plain query's, or not with this additional count
    return name_end, labels, qtype, edns


def plain_query(data: bytes, protocol: str, client: str, question: PlainQuestion) -> Query:
    """``parse_query`` of a plain query whose ``plain_question`` was read already (the
    fast path reads it for every query of a client it knows): the same Query, without
    walking the name and the OPT again."""
    name_end, labels, qtype, edns = question
    return Query(
        raw=data,
        id=wire.U16.unpack_from(data)[0],
        flags=wire.U16.unpack_from(data, 2)[0],
        qdcount=1,
        qname=data[12:name_end].lower(),
        labels=labels,
        qtype=qtype,
        qclass=wire.CLASS_IN,
        question_end=name_end + 4,
        # A plain query's OPT is of version 0 (``_tail_shape``).
        edns=None if edns == NO_EDNS else Edns(edns & 0xFFFF, 0, bool(edns & EDNS_DO_BIT)),
        protocol=protocol,
        client=client,
    )


def _tail_shape(tail: bytes) -> _TailShape:
    """What follows a plain query's question name, read (``_TAILS``)."""
    if len(tail) < 4:
        return _NOT_PLAIN  # the question cut short
    qtype, qclass = _TYPE_CLASS.unpack_from(tail)
    if qclass != wire.CLASS_IN or qtype in _NOT_PLAIN_TYPES:
        return _NOT_PLAIN
    if len(tail) == 4:
        return qtype, NO_EDNS, 0
    shape = lone_opt(tail, 4)
    if shape is None or shape[1] & 0x00FF0000:  # not one OPT, or an EDNS version > 0
        return _NOT_PLAIN
    payload, ttl = shape
    do = EDNS_DO_BIT if ttl & wire.EDNS_DO else 0
    return qtype, max(payload, wire.PLAIN_UDP_LIMIT) | do, 1


# Bits the client decides: RD and CD are echoed (RFC 1035 4.1.1, RFC 4035 3.2.2).
_CLIENT_BITS: Final = wire.RD | wire.CD
# Bits the answer decides; RA is set because we recurse (through our upstreams), except
# on NOTIMP: an opcode we do not implement gets no claim about recursion (as Unbound).
_ANSWER_BITS: Final = wire.QR | wire.AA | wire.TC | wire.AD | wire.RCODE_MASK


def encode_answer(query: Query, answer: Answer, udp: bool) -> bytes:
    """Finish an answer for the wire: ID, flags, question as asked, EDNS and truncation."""
    message = answer.message
    edns = query.edns
    flags = (
        (wire.U16.unpack_from(message, 2)[0] & _ANSWER_BITS & ~wire.RCODE_MASK)
        | (answer.rcode & wire.RCODE_MASK)
        | (query.flags & (_CLIENT_BITS | wire.OPCODE_MASK))
        | wire.QR
        | (wire.RA if answer.rcode != wire.NOTIMP else 0)
    )
    if not query.flags & wire.AD and (edns is None or not edns.do):
        # RFC 6840 5.8: AD goes only to clients that asked for it with AD or DO.
        flags &= ~wire.AD
    question_end = query.question_end
    qdcount, ancount, nscount, arcount = wire.COUNTS.unpack_from(message, 4)
    body = message[12:]
    if qdcount == 1 and question_end > 12:
        name_end = 12 + len(query.qname)
        if (
            message[12:name_end].lower() == query.qname
            and message[name_end:question_end] == query.raw[name_end:question_end]
        ):
            # Echo the question byte for byte, so 0x20 case randomisation checks pass.
            body = query.raw[12:question_end] + message[question_end:]
    opt = b""
    limit = wire.PLAIN_UDP_LIMIT
    if edns is not None:
        options = wire.ede_option(*answer.ede) if answer.ede else b""
        opt = wire.opt_record(do=edns.do, extended_rcode=answer.rcode >> 4, options=options)
        # Never more than we advertise ourselves: bigger datagrams risk IP fragmentation.
        limit = min(edns.payload, wire.EDNS_PAYLOAD)
        arcount += 1
    if udp and 12 + len(body) + len(opt) > limit:
        # Too big for the client's buffer: header and question only, TC set, so it
        # retries over TCP (RFC 1035 4.2.1, RFC 6891 7).
        body = query.raw[12:question_end] if qdcount == 1 and question_end > 12 else b""
        flags |= wire.TC
        qdcount = 1 if body else 0
        ancount = nscount = 0
        arcount = 1 if opt else 0
    return wire.HEADER.pack(query.id, flags, qdcount, ancount, nscount, arcount) + body + opt
