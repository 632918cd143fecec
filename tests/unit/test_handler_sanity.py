import dns.opcode
import dns.rcode

from resolver.dns import wire
from resolver.dns.codec import parse_query
from resolver.dns.model import Answer
from resolver.handlers.sanity import SanityHandler
from tests.unit.handler_support import FakeNext, decode, make_query


def run(query):
    following = FakeNext()
    answer = SanityHandler(following).handle(query)
    assert isinstance(answer, Answer)
    return answer, following


def test_a_good_query_goes_on_to_the_next_stage():
    answer, following = run(make_query("example.com"))
    assert len(following.seen) == 1
    assert answer.outcome == "forwarded"


def test_unsupported_opcode_gets_notimp_and_stops_here():
    message = dns.message.make_query("example.com", "A")
    message.set_opcode(dns.opcode.NOTIFY)
    query = parse_query(message.to_wire(), "udp", "127.0.0.1")
    answer, following = run(query)
    assert following.seen == []
    assert decode(query, answer).rcode() == dns.rcode.NOTIMP


def test_two_questions_get_formerr():
    raw = bytearray(make_query("example.com").raw)
    wire.U16.pack_into(raw, 4, 2)
    query = parse_query(bytes(raw), "udp", "127.0.0.1")
    answer, following = run(query)
    assert following.seen == []
    assert answer.rcode == wire.FORMERR


def test_edns_version_above_zero_gets_badvers_with_an_opt():
    query = make_query("example.com", edns=True)
    raw = bytearray(query.raw)
    # The OPT TTL's second byte is the EDNS version (RFC 6891 6.1.3).
    raw[-5] = 1
    query = parse_query(bytes(raw), "udp", "127.0.0.1")
    answer, following = run(query)
    reply = decode(query, answer)
    assert following.seen == []
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0


def test_non_internet_class_is_refused():
    message = dns.message.make_query("version.bind", "TXT", "CH")
    query = parse_query(message.to_wire(), "udp", "127.0.0.1")
    answer, following = run(query)
    assert following.seen == []
    assert answer.rcode == wire.REFUSED


def test_zone_transfer_is_refused():
    answer, following = run(make_query("example.com", "AXFR"))
    assert following.seen == []
    assert answer.rcode == wire.REFUSED
