"""Answers the server writes itself, read back with dnspython after encode_answer."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from resolver.dns import responses, wire
from resolver.dns.codec import encode_answer, parse_query
from resolver.dns.model import Answer, Outcome, Query

TTL = 321
REASON = "blocked: DeepSeek (chat assistant)"


def make_query(name: str, rdtype: str = "A", *, edns: bool = True) -> Query:
    message = dns.message.make_query(name, rdtype, use_edns=0 if edns else False)
    query = parse_query(message.to_wire(), "udp", "192.0.2.7")
    assert query is not None
    assert query.problem == ""
    return query


def decode(query: Query, answer: Answer) -> dns.message.Message:
    return dns.message.from_wire(encode_answer(query, answer, True))


def blocker(ipv4: str = "0.0.0.0", ipv6: str = "::") -> responses.BlockAnswers:
    return responses.BlockAnswers("nxdomain", TTL, ipv4, ipv6)


def check_ede(msg: dns.message.Message) -> None:
    (error,) = msg.extended_errors()
    assert error.code == dns.edns.EDECode.BLOCKED == wire.EDE_BLOCKED
    assert error.text == REASON


def check_negative_soa(msg: dns.message.Message, owner: str) -> None:
    assert msg.answer == []
    (soa,) = msg.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name == dns.name.from_text(owner)
    # RFC 2308 5: a downstream cache keeps the answer for min(SOA TTL, MINIMUM).
    assert soa.ttl == TTL
    assert soa[0].minimum == TTL
    assert soa[0].mname == dns.name.from_text("aiwall.invalid")


def test_nxdomain_soa_is_owned_by_the_matched_entry():
    query = make_query("chat.deepseek.com")
    # The entry "deepseek.com" starts at label 1 of the question.
    answer = blocker().build(query, 1, "nxdomain", REASON)
    assert (answer.outcome, answer.rcode) == (Outcome.BLOCKED, wire.NXDOMAIN)
    msg = decode(query, answer)
    assert msg.rcode() == dns.rcode.NXDOMAIN
    assert msg.question[0].name == dns.name.from_text("chat.deepseek.com")
    check_negative_soa(msg, "deepseek.com")
    check_ede(msg)


def test_nxdomain_for_the_entry_itself():
    query = make_query("deepseek.com", "AAAA")
    msg = decode(query, blocker().build(query, 0, "nxdomain", REASON))
    assert msg.rcode() == dns.rcode.NXDOMAIN
    check_negative_soa(msg, "deepseek.com")


def test_negative_block_answer_scans_with_the_block_ttl():
    query = make_query("a.b.example.org")
    data = encode_answer(query, blocker().build(query, 2, "nxdomain", REASON), True)
    scan = wire.scan_response(data)
    assert scan.negative_ttl == TTL
    assert scan.rcode == wire.NXDOMAIN


def test_soa_owner_keeps_the_question_case():
    query = make_query("Chat.DeepSeek.COM")
    msg = decode(query, blocker().build(query, 1, "nxdomain", REASON))
    assert msg.authority[0].name.labels[:2] == (b"DeepSeek", b"COM")


@pytest.mark.parametrize(("rdtype", "address"), [("A", "0.0.0.0"), ("AAAA", "::")])
def test_sinkhole_default_addresses(rdtype, address):
    query = make_query("chat.deepseek.com", rdtype)
    answer = blocker().build(query, 1, "sinkhole", REASON)
    assert (answer.outcome, answer.rcode) == (Outcome.BLOCKED, wire.NOERROR)
    msg = decode(query, answer)
    assert msg.rcode() == dns.rcode.NOERROR
    (rrset,) = msg.answer
    assert rrset.name == dns.name.from_text("chat.deepseek.com")
    assert rrset.rdtype == dns.rdatatype.from_text(rdtype)
    assert rrset.ttl == TTL
    assert [rdata.address for rdata in rrset] == [address]
    assert msg.authority == []
    check_ede(msg)


@pytest.mark.parametrize(("rdtype", "address"), [("A", "192.0.2.80"), ("AAAA", "2001:db8::80")])
def test_sinkhole_configured_addresses(rdtype, address):
    query = make_query("x.example", rdtype)
    msg = decode(query, blocker("192.0.2.80", "2001:db8::80").build(query, 0, "sinkhole", REASON))
    assert [rdata.address for rdata in msg.answer[0]] == [address]


@pytest.mark.parametrize("rdtype", ["MX", "TXT", "HTTPS", "ANY"])
def test_sinkhole_other_types_get_nodata_with_soa(rdtype):
    query = make_query("chat.deepseek.com", rdtype)
    answer = blocker().build(query, 1, "sinkhole", REASON)
    assert answer.rcode == wire.NOERROR
    msg = decode(query, answer)
    assert msg.rcode() == dns.rcode.NOERROR
    check_negative_soa(msg, "deepseek.com")
    check_ede(msg)


@pytest.mark.parametrize("rdtype", ["A", "AAAA", "MX"])
def test_nodata(rdtype):
    query = make_query("api.deepseek.com", rdtype)
    answer = blocker().build(query, 1, "nodata", REASON)
    msg = decode(query, answer)
    assert msg.rcode() == dns.rcode.NOERROR
    check_negative_soa(msg, "deepseek.com")
    check_ede(msg)


def test_refused():
    query = make_query("api.deepseek.com")
    answer = blocker().build(query, 1, "refused", REASON)
    assert (answer.outcome, answer.rcode) == (Outcome.BLOCKED, wire.REFUSED)
    msg = decode(query, answer)
    assert msg.rcode() == dns.rcode.REFUSED
    assert (msg.answer, msg.authority) == ([], [])
    assert msg.question[0].name == dns.name.from_text("api.deepseek.com")
    check_ede(msg)


def test_mode_argument_wins_over_the_configured_mode():
    # Canaries are answered NXDOMAIN whatever the configured mode.
    query = make_query("use-application-dns.net")
    sinkhole = responses.BlockAnswers("sinkhole", TTL, "0.0.0.0", "::")
    msg = decode(query, sinkhole.build(query, 0, "nxdomain", REASON))
    assert msg.rcode() == dns.rcode.NXDOMAIN
    assert msg.answer == []


def test_block_answer_without_edns_has_no_opt():
    query = make_query("chat.deepseek.com", edns=False)
    msg = decode(query, blocker().build(query, 1, "nxdomain", REASON))
    assert msg.edns == -1
    assert msg.rcode() == dns.rcode.NXDOMAIN
    assert len(msg.authority) == 1


@pytest.mark.parametrize(
    "rcode", [wire.FORMERR, wire.SERVFAIL, wire.NOTIMP, wire.REFUSED, wire.NOERROR]
)
def test_error_keeps_the_question(rcode):
    query = make_query("Some.Example.net", "TXT")
    answer = responses.error(query, rcode, Outcome.SERVFAIL)
    assert answer.ede is None
    msg = decode(query, answer)
    assert msg.rcode() == rcode
    assert msg.id == query.id
    (question,) = msg.question
    assert question.name.labels[0] == b"Some"
    assert question.rdtype == dns.rdatatype.TXT
    assert (msg.answer, msg.authority, msg.additional) == ([], [], [])


def test_error_with_ede():
    query = make_query("example.net")
    msg = decode(query, responses.error(query, wire.SERVFAIL, Outcome.SERVFAIL, (23, "no route")))
    assert msg.rcode() == dns.rcode.SERVFAIL
    (error,) = msg.extended_errors()
    assert (error.code, error.text) == (23, "no route")


def test_error_for_an_unreadable_question_has_no_question():
    data = wire.HEADER.pack(5, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"
    query = parse_query(data, "udp", "192.0.2.7")
    assert query is not None
    assert query.problem
    msg = decode(query, responses.error(query, wire.FORMERR, Outcome.FORMERR))
    assert msg.rcode() == dns.rcode.FORMERR
    assert msg.question == []
    assert msg.id == 5
