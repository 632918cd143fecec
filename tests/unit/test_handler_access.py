import dns.edns
import dns.rcode

from resolver.config import ClientNetwork
from resolver.handlers.access import AccessHandler
from tests.unit.handler_support import FakeNext, decode, make_query


def networks(*texts: str) -> tuple[ClientNetwork, ...]:
    return tuple(ClientNetwork.parse(text) for text in texts)


def test_clients_in_allowed_networks_pass():
    following = FakeNext()
    handler = AccessHandler(networks("10.0.0.0/8", "::1/128"), following)
    handler.handle(make_query("example.com", client="10.9.8.7"))
    handler.handle(make_query("example.com", client="::1"))
    assert [q.client for q in following.seen] == ["10.9.8.7", "::1"]


def test_other_clients_are_refused_with_ede_prohibited():
    following = FakeNext()
    handler = AccessHandler(networks("10.0.0.0/8"), following)
    query = make_query("example.com", client="203.0.113.9")
    reply = decode(query, handler.handle(query))
    assert following.seen == []
    assert reply.rcode() == dns.rcode.REFUSED
    assert [e.code for e in reply.extended_errors()] == [dns.edns.EDECode.PROHIBITED]


def test_ipv4_mapped_ipv6_clients_match_ipv4_networks():
    following = FakeNext()
    handler = AccessHandler(networks("192.168.0.0/16"), following)
    handler.handle(make_query("example.com", client="::ffff:192.168.1.20"))
    assert len(following.seen) == 1


def test_refusals_are_counted_apart_from_other_refused_answers():
    from resolver.metrics import Metrics

    metrics = Metrics()
    handler = AccessHandler(networks("10.0.0.0/8"), FakeNext(), metrics)
    handler.handle(make_query("example.com", client="203.0.113.9"))
    handler.handle(make_query("example.com", client="10.1.1.1"))
    handler.handle(make_query("example.com", client="203.0.113.10"))
    assert metrics.access_refused.value() == 2
