import dns.message
import dns.rrset

from resolver import wire
from resolver.config import CacheConfig
from resolver.handlers.cache import AnswerCache, CacheHandler
from resolver.metrics import Metrics
from resolver.model import Outcome
from resolver.upstream import _answer_from
from tests.unit.handler_support import FakeNext, decode, make_query, resolve


def upstream_answer(name: str, ttl: int = 300, rcode: int = 0):
    query = dns.message.make_query(name, "A")
    response = dns.message.make_response(query)
    if rcode:
        response.set_rcode(rcode)
        response.authority.append(
            dns.rrset.from_text("test.", ttl, "IN", "SOA", "ns.test. h.test. 1 2 3 4 60")
        )
    else:
        name = name if name.endswith(".") else name + "."
    response.answer.append(dns.rrset.from_text(name, ttl, "IN", "A", "192.0.2.1"))
    data = response.to_wire()
    return _answer_from(data, wire.scan_response(data))


def test_ttls_count_down_with_age():
    cache = AnswerCache(CacheConfig(), Metrics())
    query = make_query("www.example.test")
    cache.put((query.qname, 1, 0), upstream_answer("www.example.test", ttl=300), now=1000.0)
    hit = cache.get((query.qname, 1, 0), now=1042.5)
    assert hit is not None
    assert hit.outcome is Outcome.CACHED
    assert decode(query, hit).answer[0].ttl == 258


def test_entries_expire_with_their_ttl():
    cache = AnswerCache(CacheConfig(), Metrics())
    key = (b"\x01a\x00", 1, 0)
    cache.put(key, upstream_answer("a.", ttl=10), now=0.0)
    assert cache.get(key, now=9.9) is not None
    assert cache.get(key, now=10.0) is None
    assert len(cache) == 0


def test_negative_answers_are_kept_for_the_soa_minimum_capped():
    cache = AnswerCache(CacheConfig(max_negative_ttl=30), Metrics())
    key = (b"\x01n\x00", 1, 0)
    # SOA TTL 300 but MINIMUM 60, capped at 30 by the config.
    cache.put(key, upstream_answer("n.test.", ttl=300, rcode=3), now=0.0)
    assert cache.get(key, now=29) is not None
    assert cache.get(key, now=30) is None


def test_min_and_max_ttl_clamp_the_entry_and_the_served_ttl():
    cache = AnswerCache(CacheConfig(min_ttl=60, max_ttl=100), Metrics())
    query = make_query("short.test")
    cache.put((query.qname, 1, 0), upstream_answer("short.test", ttl=5), now=0.0)
    hit = cache.get((query.qname, 1, 0), now=50)
    assert hit is not None
    assert decode(query, hit).answer[0].ttl == 10
    long_query = make_query("long.test")
    cache.put((long_query.qname, 1, 0), upstream_answer("long.test", ttl=9999), now=0.0)
    hit = cache.get((long_query.qname, 1, 0), now=1)
    assert decode(long_query, hit).answer[0].ttl == 99
    assert cache.get((long_query.qname, 1, 0), now=100) is None


def test_least_recently_used_entry_is_evicted_first():
    metrics = Metrics()
    cache = AnswerCache(CacheConfig(size=2), metrics)
    keys = [(bytes([1, c]) + b"\x00", 1, 0) for c in b"abc"]
    cache.put(keys[0], upstream_answer("a."), now=0)
    cache.put(keys[1], upstream_answer("b."), now=0)
    cache.get(keys[0], now=1)
    cache.put(keys[2], upstream_answer("c."), now=2)
    assert cache.get(keys[1], now=3) is None
    assert cache.get(keys[0], now=3) is not None
    assert metrics.cache_evictions._value.get() == 1


def test_handler_serves_the_second_query_from_cache_without_next():
    following = FakeNext(delayed=True, answer=upstream_answer("www.example.test"))
    handler = CacheHandler(AnswerCache(CacheConfig(), Metrics()), Metrics(), following)
    first = resolve(handler.handle(make_query("www.example.test")))
    assert first.outcome is Outcome.FORWARDED
    second = handler.handle(make_query("WWW.example.TEST"))
    assert second.outcome is Outcome.CACHED
    assert len(following.seen) == 1


def test_do_bit_is_part_of_the_key():
    following = FakeNext(answer=upstream_answer("www.example.test"))
    handler = CacheHandler(AnswerCache(CacheConfig(), Metrics()), Metrics(), following)
    handler.handle(make_query("www.example.test"))
    handler.handle(make_query("www.example.test", want_dnssec=True))
    assert len(following.seen) == 2


def test_uncacheable_answers_are_not_stored():
    query = make_query("fail.test")
    from resolver import responses

    servfail = responses.error(query, wire.SERVFAIL, Outcome.SERVFAIL)
    following = FakeNext(answer=servfail)
    handler = CacheHandler(AnswerCache(CacheConfig(), Metrics()), Metrics(), following)
    handler.handle(query)
    handler.handle(query)
    assert len(following.seen) == 2
