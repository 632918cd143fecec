"""parse_query and encode_answer, with dnspython building queries and reading answers."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rrset
import pytest

from resolver.dns import responses, wire
from resolver.dns.codec import encode_answer, parse_query
from resolver.dns.edns import Edns
from resolver.dns.model import Answer, Outcome, Query


def make_raw(
    name: str = "example.com",
    rdtype: str = "A",
    *,
    edns: bool = False,
    payload: int = 1232,
    do: bool = False,
    ident: int = 0x1234,
    flags: int = dns.flags.RD,
) -> bytes:
    message = dns.message.make_query(
        name, rdtype, use_edns=0 if edns else False, payload=payload, want_dnssec=do
    )
    message.id = ident
    message.flags = flags
    return message.to_wire()


def parse(data: bytes, protocol: str = "udp") -> Query:
    query = parse_query(data, protocol, "192.0.2.7")
    assert query is not None
    return query


def upstream_message(name: str = "example.com", rdtype: str = "A", flags: int = 0) -> bytes:
    """A response as an upstream would send it: lowercase question, no OPT, ID 0."""
    message = dns.message.make_response(dns.message.make_query(name, rdtype, use_edns=False))
    message.id = 0
    message.flags = dns.flags.QR | flags
    message.answer.append(dns.rrset.from_text(f"{name}.", 60, "IN", "A", "192.0.2.1"))
    return message.to_wire()


def sized_message(query: Query, size: int, rcode: int = wire.NOERROR) -> bytes:
    """A NOERROR message of exactly ``size`` bytes: the question, then one TXT record."""
    head = wire.HEADER.pack(0, wire.QR | rcode, 1, 1, 0, 0) + query.raw[12 : query.question_end]
    rdlength = size - len(head) - 12
    assert rdlength > 0
    rdata = b""
    while len(rdata) < rdlength:
        chunk = min(255, rdlength - len(rdata) - 1)
        rdata += bytes([chunk]) + b"t" * chunk
    assert len(rdata) == rdlength
    record = b"\xc0\x0c" + wire.RR_FIXED.pack(16, wire.CLASS_IN, 30, rdlength) + rdata
    out = head + record
    assert len(out) == size
    return out


def reply(query: Query, answer: Answer, udp: bool = True) -> dns.message.Message:
    return dns.message.from_wire(encode_answer(query, answer, udp))


def forwarded(message: bytes, rcode: int = wire.NOERROR, **kw) -> Answer:
    return Answer(message=message, outcome=Outcome.FORWARDED, rcode=rcode, **kw)


# --- parse_query --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 11])
def test_shorter_than_a_header_is_dropped(size):
    assert parse_query(make_raw()[:size], "udp", "192.0.2.7") is None


def test_header_alone_is_not_dropped_but_a_problem():
    query = parse(wire.HEADER.pack(7, 0, 0, 0, 0, 0))
    assert query.id == 7
    assert query.problem == "QDCOUNT is 0"


def test_responses_are_dropped():
    response = dns.message.make_response(dns.message.make_query("example.com", "A"))
    assert parse_query(response.to_wire(), "udp", "192.0.2.7") is None


@pytest.mark.parametrize("qdcount", [0, 2])
def test_qdcount_other_than_one_is_a_problem(qdcount):
    data = bytearray(make_raw())
    wire.U16.pack_into(data, 4, qdcount)
    query = parse(bytes(data))
    assert query.problem == f"QDCOUNT is {qdcount}"
    assert query.qname == b""
    assert query.question_end == 12


@pytest.mark.parametrize(
    "question",
    [
        b"\xc0\x0c\x00\x01\x00\x01",
        b"\x03www\x00\x00\x01",
        b"\x03www",
        b"\x45abc\x00\x00\x01\x00\x01",
    ],
    ids=["pointer", "cut type/class", "cut name", "label type"],
)
def test_bad_question_is_a_problem(question):
    query = parse(wire.HEADER.pack(9, 0, 1, 0, 0, 0) + question)
    assert query.problem
    assert query.qname == b""
    assert query.labels == ()
    assert query.question_end == 12


def test_question_fields_and_case():
    data = make_raw("WwW.ExAmple.COM", "AAAA", ident=0xBEEF)
    query = parse(data, "tcp")
    assert query.problem == ""
    assert query.qname == dns.name.from_text("www.example.com").to_wire()
    assert query.labels == (0, 4, 12)
    assert (query.qtype, query.qclass) == (28, 1)
    assert query.question_end == len(data)
    assert query.raw == data
    assert query.raw[12 : query.question_end - 4] == dns.name.from_text("WwW.ExAmple.COM").to_wire()
    assert (query.id, query.qdcount, query.protocol, query.client) == (
        0xBEEF,
        1,
        "tcp",
        "192.0.2.7",
    )
    assert query.flags & wire.RD
    assert query.edns is None


def test_edns_is_read():
    query = parse(make_raw(edns=True, payload=4096, do=True))
    assert query.problem == ""
    assert query.edns == Edns(payload=4096, version=0, do=True)
    # question_end stops before the OPT record.
    assert query.raw[query.question_end] == 0
    assert wire.U16.unpack_from(query.raw, query.question_end + 1)[0] == wire.TYPE_OPT


def test_small_edns_payload_reads_as_512():
    assert parse(make_raw(edns=True, payload=200)).edns == Edns(512, 0, False)


def test_two_opts_are_a_problem_but_the_question_is_kept():
    data = bytearray(make_raw(edns=True))
    data += wire.opt_record(do=False)
    wire.U16.pack_into(data, 10, 2)
    query = parse(bytes(data))
    assert "more than one OPT" in query.problem
    assert query.edns is None
    assert query.qname == dns.name.from_text("example.com").to_wire()


def test_cut_opt_is_a_problem():
    query = parse(make_raw(edns=True)[:-3])
    assert query.problem
    assert query.edns is None


# --- encode_answer: header ---------------------------------------------------------------


def test_sets_client_id_qr_ra_and_echoes_rd_cd():
    query = parse(make_raw(ident=0xBEEF, flags=dns.flags.RD | dns.flags.CD))
    answer = responses.error(query, wire.NOERROR, Outcome.FORWARDED)
    msg = reply(query, answer)
    assert msg.id == 0xBEEF
    for flag in (dns.flags.QR, dns.flags.RA, dns.flags.RD, dns.flags.CD):
        assert msg.flags & flag


def test_rd_and_cd_come_from_the_query_not_the_message():
    query = parse(make_raw(flags=0))
    msg = reply(query, forwarded(upstream_message(flags=dns.flags.RD | dns.flags.CD)))
    assert not msg.flags & dns.flags.RD
    assert not msg.flags & dns.flags.CD
    assert msg.flags & dns.flags.RA


@pytest.mark.parametrize("aa", [True, False])
def test_aa_is_kept_as_in_the_message(aa):
    # The client's own AA bit means nothing in a query and must not leak into the answer.
    query = parse(make_raw(flags=dns.flags.RD | dns.flags.AA))
    message = upstream_message(flags=dns.flags.AA if aa else 0)
    msg = reply(query, forwarded(message))
    assert bool(msg.flags & dns.flags.AA) is aa
    assert len(msg.answer) == 1


def test_ad_reaches_only_clients_that_asked_with_ad_or_do():
    # RFC 6840 5.8: a client that set neither AD nor DO does not get AD back.
    validated = upstream_message(flags=dns.flags.AD)
    plain = parse(make_raw())
    assert not reply(plain, forwarded(validated)).flags & dns.flags.AD
    asking = parse(make_raw(flags=dns.flags.RD | dns.flags.AD))
    assert reply(asking, forwarded(validated)).flags & dns.flags.AD
    assert not reply(asking, forwarded(upstream_message())).flags & dns.flags.AD


def test_rcode_comes_from_the_answer():
    query = parse(make_raw())
    msg = reply(query, forwarded(upstream_message(), rcode=wire.SERVFAIL))
    assert msg.rcode() == dns.rcode.SERVFAIL


def test_opcode_is_echoed():
    message = dns.message.make_query("example.com", "SOA", use_edns=False)
    message.set_opcode(dns.opcode.NOTIFY)
    query = parse(message.to_wire())
    msg = reply(query, responses.error(query, wire.NOTIMP, Outcome.NOTIMP))
    assert msg.opcode() == dns.opcode.NOTIFY
    assert msg.rcode() == dns.rcode.NOTIMP
    # Unbound's answer to an opcode it does not implement claims no recursion; ISC's
    # genreport flags RA there ("opcode=ra").
    assert not msg.flags & dns.flags.RA


def test_ra_is_set_on_every_other_answer():
    query = parse(make_raw())
    for answer in (
        forwarded(upstream_message()),
        responses.error(query, wire.REFUSED, Outcome.REFUSED),
    ):
        assert reply(query, answer).flags & dns.flags.RA


def test_question_is_echoed_in_the_case_asked():
    query = parse(make_raw("WwW.ExAmPlE.CoM"))
    data = encode_answer(query, forwarded(upstream_message("www.example.com")), True)
    assert data[12 : query.question_end] == query.raw[12 : query.question_end]
    assert dns.message.from_wire(data).question[0].name.labels[:3] == (b"WwW", b"ExAmPlE", b"CoM")


def test_a_different_question_in_the_message_is_not_overwritten():
    query = parse(make_raw("aaaa.example.com"))
    msg = reply(query, forwarded(upstream_message("bbbb.example.com")))
    assert msg.question[0].name == dns.name.from_text("bbbb.example.com")


# --- encode_answer: EDNS ------------------------------------------------------------------


def test_no_opt_without_edns_even_with_ede():
    query = parse(make_raw())
    answer = forwarded(upstream_message(), ede=(wire.EDE_BLOCKED, "blocked"))
    data = encode_answer(query, answer, True)
    assert wire.HEADER.unpack_from(data)[5] == 0
    assert dns.message.from_wire(data).edns == -1


@pytest.mark.parametrize("do", [True, False])
def test_opt_added_for_edns_queries(do):
    query = parse(make_raw(edns=True, payload=4096, do=do))
    msg = reply(query, forwarded(upstream_message()))
    assert msg.edns == 0
    assert msg.payload == wire.EDNS_PAYLOAD
    assert bool(msg.ednsflags & dns.flags.DO) is do
    assert msg.extended_errors() == []
    assert len(msg.answer) == 1


def test_ede_carried_in_the_opt():
    query = parse(make_raw(edns=True))
    answer = forwarded(upstream_message(), ede=(wire.EDE_NO_REACHABLE_AUTHORITY, "upstream down"))
    (error,) = reply(query, answer).extended_errors()
    assert error.code == dns.edns.EDECode.NO_REACHABLE_AUTHORITY
    assert error.text == "upstream down"


def test_opt_is_counted_after_existing_additional_records():
    base = dns.message.make_response(dns.message.make_query("example.com", "A", use_edns=False))
    base.additional.append(dns.rrset.from_text("ns.example.com.", 5, "IN", "A", "192.0.2.53"))
    query = parse(make_raw(edns=True))
    data = encode_answer(query, forwarded(base.to_wire()), True)
    assert wire.HEADER.unpack_from(data)[5] == 2
    msg = dns.message.from_wire(data)
    assert msg.edns == 0
    assert [r.name.to_text() for r in msg.additional] == ["ns.example.com."]


def test_badvers_goes_into_the_opt_ttl_with_header_rcode_zero():
    query = parse(make_raw(edns=True))
    data = encode_answer(query, responses.error(query, wire.BADVERS, Outcome.BADVERS), True)
    assert wire.HEADER.unpack_from(data)[1] & wire.RCODE_MASK == 0
    # The OPT is last: its TTL's high byte holds the upper eight bits of the rcode.
    opt_ttl = wire.U32.unpack_from(data, len(data) - 6)[0]
    assert opt_ttl >> 24 == wire.BADVERS >> 4
    assert dns.message.from_wire(data).rcode() == dns.rcode.BADVERS


# --- encode_answer: truncation ------------------------------------------------------------


def check_truncated(query: Query, data: bytes, edns: bool) -> None:
    _, flags, qd, an, ns, ar = wire.HEADER.unpack_from(data)
    assert flags & wire.TC
    assert (qd, an, ns, ar) == (1, 0, 0, 1 if edns else 0)
    assert data[12 : query.question_end] == query.raw[12 : query.question_end]
    msg = dns.message.from_wire(data)
    assert msg.id == query.id
    assert msg.answer == []
    assert (msg.edns == 0) is edns


def test_plain_udp_limit_is_512():
    query = parse(make_raw())
    fits = encode_answer(query, forwarded(sized_message(query, 512)), True)
    assert len(fits) == 512
    assert not wire.HEADER.unpack_from(fits)[1] & wire.TC
    assert len(dns.message.from_wire(fits).answer) == 1
    check_truncated(query, encode_answer(query, forwarded(sized_message(query, 513)), True), False)


def test_edns_limit_counts_our_opt():
    query = parse(make_raw(edns=True, payload=1232))
    opt_size = len(wire.opt_record(do=False))
    fits = encode_answer(query, forwarded(sized_message(query, 1232 - opt_size)), True)
    assert len(fits) == 1232
    assert not wire.HEADER.unpack_from(fits)[1] & wire.TC
    over = encode_answer(query, forwarded(sized_message(query, 1233 - opt_size)), True)
    check_truncated(query, over, True)


def test_edns_limit_counts_the_ede_option():
    query = parse(make_raw(edns=True, payload=1232))
    ede = (wire.EDE_BLOCKED, "x" * 20)
    opt_size = len(wire.opt_record(do=False, options=wire.ede_option(*ede)))
    fits = encode_answer(query, forwarded(sized_message(query, 1232 - opt_size), ede=ede), True)
    assert not wire.HEADER.unpack_from(fits)[1] & wire.TC
    over = encode_answer(query, forwarded(sized_message(query, 1233 - opt_size), ede=ede), True)
    check_truncated(query, over, True)
    assert dns.message.from_wire(over).extended_errors()[0].text == "x" * 20


def test_edns_payload_allows_answers_up_to_our_own_1232_bytes():
    query = parse(make_raw(edns=True, payload=4096))
    fits = encode_answer(query, forwarded(sized_message(query, 1000)), True)
    assert not wire.HEADER.unpack_from(fits)[1] & wire.TC
    assert len(fits) > 1000
    # A client offering 4096 still gets at most 1232 bytes over UDP: larger datagrams
    # fragment, and fragments are what off-path spoofing and middleboxes exploit.
    big = encode_answer(query, forwarded(sized_message(query, 3000)), True)
    assert wire.HEADER.unpack_from(big)[1] & wire.TC
    assert len(big) <= wire.EDNS_PAYLOAD


def test_small_edns_payload_still_allows_512():
    query = parse(make_raw(edns=True, payload=100))
    data = encode_answer(query, forwarded(sized_message(query, 480)), True)
    assert not wire.HEADER.unpack_from(data)[1] & wire.TC


def test_truncation_keeps_the_rcode_and_question_case():
    query = parse(make_raw("BIG.Example.com"))
    data = encode_answer(query, forwarded(sized_message(query, 900), rcode=wire.NOERROR), True)
    check_truncated(query, data, False)
    assert dns.message.from_wire(data).question[0].name.labels[0] == b"BIG"


@pytest.mark.parametrize("edns", [True, False])
def test_tcp_never_truncates(edns):
    query = parse(make_raw(edns=edns), "tcp")
    data = encode_answer(query, forwarded(sized_message(query, 5000)), False)
    assert not wire.HEADER.unpack_from(data)[1] & wire.TC
    msg = dns.message.from_wire(data)
    assert len(msg.answer) == 1
    assert (msg.edns == 0) is edns
