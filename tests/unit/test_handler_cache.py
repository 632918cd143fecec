import asyncio
import gc
import time

import dns.edns
import dns.message
import dns.rcode
import dns.rrset

from resolver.config import CacheConfig
from resolver.dns import responses, wire
from resolver.dns.model import Answer, Outcome
from resolver.handlers.cache import AnswerCache, CacheHandler
from resolver.handlers.cache_entry import cache_key
from resolver.metrics import Metrics
from resolver.upstream.messages import answer_from as _answer_from
from tests.unit.handler_support import FakeNext, decode, make_query, resolve


def upstream_answer(name: str, ttl: int = 300, rcode: int = 0, txt: int = 0):
    query = dns.message.make_query(name, "A")
    response = dns.message.make_response(query)
    if txt:
        # One big answer: TXT strings of 255 bytes adding up to about ``txt`` bytes.
        strings = " ".join(f'"{"x" * 250}"' for _ in range(txt // 251))
        response.answer.append(dns.rrset.from_text(name + ".", ttl, "IN", "TXT", strings))
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
    cache.put(
        cache_key(query.qname, 1, 0), upstream_answer("www.example.test", ttl=300), now=1000.0
    )
    hit = cache.get(cache_key(query.qname, 1, 0), now=1042.5)
    assert hit is not None
    assert hit.outcome is Outcome.CACHED
    assert decode(query, hit).answer[0].ttl == 258


def test_entries_expire_with_their_ttl():
    cache = AnswerCache(CacheConfig(max_stale=0), Metrics())
    key = cache_key(b"\x01a\x00", 1, 0)
    cache.put(key, upstream_answer("a.", ttl=10), now=0.0)
    assert cache.get(key, now=9.9) is not None
    assert cache.get(key, now=10.0) is None
    assert len(cache) == 0


def test_expired_entries_are_kept_only_for_the_stale_window():
    cache = AnswerCache(CacheConfig(max_stale=100), Metrics())
    key = cache_key(b"\x01a\x00", 1, 0)
    cache.put(key, upstream_answer("a.", ttl=10), now=0.0)
    assert cache.get(key, now=10.0) is None
    assert len(cache) == 1
    assert cache.stale(key, now=109.9) is not None
    assert cache.get(key, now=110.0) is None
    assert len(cache) == 0


def test_negative_answers_are_kept_for_the_soa_minimum_capped():
    cache = AnswerCache(CacheConfig(max_negative_ttl=30), Metrics())
    key = cache_key(b"\x01n\x00", 1, 0)
    # SOA TTL 300 but MINIMUM 60, capped at 30 by the config.
    cache.put(key, upstream_answer("n.test.", ttl=300, rcode=3), now=0.0)
    assert cache.get(key, now=29) is not None
    assert cache.get(key, now=30) is None


def test_min_and_max_ttl_clamp_the_entry_and_the_served_ttl():
    cache = AnswerCache(CacheConfig(min_ttl=60, max_ttl=100), Metrics())
    query = make_query("short.test")
    cache.put(cache_key(query.qname, 1, 0), upstream_answer("short.test", ttl=5), now=0.0)
    hit = cache.get(cache_key(query.qname, 1, 0), now=50)
    assert hit is not None
    assert decode(query, hit).answer[0].ttl == 10
    long_query = make_query("long.test")
    cache.put(cache_key(long_query.qname, 1, 0), upstream_answer("long.test", ttl=9999), now=0.0)
    hit = cache.get(cache_key(long_query.qname, 1, 0), now=1)
    assert decode(long_query, hit).answer[0].ttl == 99
    assert cache.get(cache_key(long_query.qname, 1, 0), now=100) is None


def test_least_recently_used_entry_is_evicted_first():
    metrics = Metrics()
    one = AnswerCache.cost(upstream_answer("a.").message)
    cache = AnswerCache(CacheConfig(max_bytes=2 * one + one // 2), metrics)
    keys = [cache_key(bytes([1, c]) + b"\x00", 1, 0) for c in b"abc"]
    cache.put(keys[0], upstream_answer("a."), now=0)
    cache.put(keys[1], upstream_answer("b."), now=0)
    cache.get(keys[0], now=1)
    cache.put(keys[2], upstream_answer("c."), now=2)
    assert cache.get(keys[1], now=3) is None
    assert cache.get(keys[0], now=3) is not None
    assert metrics.cache_evictions.value() == 1


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
    servfail = responses.error(query, wire.SERVFAIL, Outcome.SERVFAIL)
    following = FakeNext(answer=servfail)
    handler = CacheHandler(AnswerCache(CacheConfig(), Metrics()), Metrics(), following)
    handler.handle(query)
    handler.handle(query)
    assert len(following.seen) == 2


# --- serve-stale (RFC 8767) ---------------------------------------------------------------


def servfail_next(name: str) -> FakeNext:
    return FakeNext(
        answer=responses.error(make_query(name), wire.SERVFAIL, Outcome.SERVFAIL),
        delayed=True,
    )


def expired_cache(name: str, config: CacheConfig, rcode: int = 0, ago: float = 100) -> AnswerCache:
    """A cache holding ``name`` whose 10-second TTL ran out ``ago`` seconds before now."""
    cache = AnswerCache(config, Metrics())
    query = make_query(name)
    answer = upstream_answer(name, ttl=10, rcode=rcode)
    cache.put(cache_key(query.qname, 1, 0), answer, time.monotonic() - ago)
    return cache


def ede_codes(reply) -> list[int]:
    return [option.code for option in reply.options if isinstance(option, dns.edns.EDEOption)]


def test_stale_answer_with_ttl_30_and_ede_3_when_the_upstreams_fail():
    name = "stale.example.test"
    handler = CacheHandler(expired_cache(name, CacheConfig()), Metrics(), servfail_next(name))
    query = make_query(name)
    answer = resolve(handler.handle(query))
    assert answer.outcome is Outcome.STALE
    reply = decode(query, answer)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rrset.ttl for rrset in reply.answer] == [30]
    assert ede_codes(reply) == [dns.edns.EDECode.STALE_ANSWER]


def test_stale_nxdomain_carries_ede_19_and_the_stale_ttl_on_its_soa():
    name = "gone.example.test."
    config = CacheConfig(stale_ttl=7)
    handler = CacheHandler(expired_cache(name, config, rcode=3), Metrics(), servfail_next(name))
    query = make_query(name)
    reply = decode(query, resolve(handler.handle(query)))
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert {rrset.ttl for rrset in reply.authority} == {7}
    assert ede_codes(reply) == [dns.edns.EDECode.STALE_NXDOMAIN_ANSWER]


def test_no_stale_answer_beyond_max_stale():
    name = "old.example.test"
    cache = expired_cache(name, CacheConfig(max_stale=50), ago=100)
    handler = CacheHandler(cache, Metrics(), servfail_next(name))
    assert resolve(handler.handle(make_query(name))).outcome is Outcome.SERVFAIL


def test_no_stale_answer_when_serve_stale_is_off():
    name = "off.example.test"
    cache = expired_cache(name, CacheConfig(max_stale=0), ago=15)
    handler = CacheHandler(cache, Metrics(), servfail_next(name))
    assert resolve(handler.handle(make_query(name))).outcome is Outcome.SERVFAIL


def test_a_cached_servfail_is_never_served_stale():
    name = "broken.example.test"
    query = make_query(name)
    cache = AnswerCache(CacheConfig(), Metrics())
    failure = responses.error(query, wire.SERVFAIL, Outcome.SERVFAIL)
    failure.cache_ttl = 10  # as if something had let a SERVFAIL into the cache
    cache.put(cache_key(query.qname, 1, 0), failure, time.monotonic() - 100)
    assert cache.stale(cache_key(query.qname, 1, 0), time.monotonic()) is None
    handler = CacheHandler(cache, Metrics(), servfail_next(name))
    answer = resolve(handler.handle(query))
    assert answer.outcome is Outcome.SERVFAIL
    assert answer.ede is None  # the upstream's own SERVFAIL, not a stale one


def test_after_a_failure_the_stale_answer_is_served_without_asking_again():
    name = "recheck.example.test"
    following = servfail_next(name)
    handler = CacheHandler(expired_cache(name, CacheConfig()), Metrics(), following)
    for _ in range(5):
        assert resolve(handler.handle(make_query(name))).outcome is Outcome.STALE
    # RFC 8767's failure recheck timer: a dead upstream is not asked once per query.
    assert len(following.seen) == 1


def test_a_fresh_answer_replaces_the_stale_one():
    name = "back.example.test"
    following = FakeNext(delayed=True, answer=upstream_answer(name, ttl=300))
    handler = CacheHandler(expired_cache(name, CacheConfig()), Metrics(), following)
    assert resolve(handler.handle(make_query(name))).outcome is Outcome.FORWARDED
    assert handler.handle(make_query(name)).outcome is Outcome.CACHED


class SlowNext:
    """Answers after ``delay`` seconds, on the running loop."""

    name = "slow"

    def __init__(self, answer: Answer, delay: float) -> None:
        self.answer = answer
        self.delay = delay
        self.seen = 0

    def handle(self, query):
        self.seen += 1
        return self._later()

    async def _later(self) -> Answer:
        await asyncio.sleep(self.delay)
        return self.answer


def test_client_response_timer_serves_stale_and_the_late_answer_refreshes_the_cache():
    name = "slowly.example.test"
    config = CacheConfig(stale_client_timeout=0.05)
    following = SlowNext(upstream_answer(name, ttl=300), delay=0.3)
    handler = CacheHandler(expired_cache(name, config), Metrics(), following, config)

    async def scenario() -> tuple[Outcome, Outcome]:
        first = await handler.handle(make_query(name))
        await asyncio.sleep(0.5)  # the upstream answer arrives meanwhile
        second = handler.handle(make_query(name))
        assert isinstance(second, Answer)
        return first.outcome, second.outcome

    assert asyncio.run(scenario()) == (Outcome.STALE, Outcome.CACHED)
    assert following.seen == 1


def test_no_stale_wait_for_names_never_seen():
    name = "new.example.test"
    config = CacheConfig(stale_client_timeout=0.01)
    following = SlowNext(upstream_answer(name), delay=0.1)
    handler = CacheHandler(AnswerCache(config, Metrics()), Metrics(), following, config)
    assert resolve(handler.handle(make_query(name))).outcome is Outcome.FORWARDED


def test_the_cache_holds_bytes_not_entries():
    # 20,000 entries of 60 KB answers once reached 1.4 GB: the bound is in bytes now.
    metrics = Metrics()
    cache = AnswerCache(CacheConfig(max_bytes=1024 * 1024), metrics)
    big = upstream_answer("big.test", txt=60_000)
    for index in range(100):
        cache.put(cache_key(bytes([4]) + b"n%03d" % index + b"\x00", 16, 0), big, now=0)
        assert cache.bytes <= 1024 * 1024
    assert len(cache) == 1024 * 1024 // AnswerCache.cost(big.message)
    assert metrics.cache_evictions.value() == 100 - len(cache)


def test_workers_split_the_bytes_between_them():
    assert AnswerCache(CacheConfig(max_bytes=64 * 1024 * 1024), Metrics(), share=2).max_bytes == (
        32 * 1024 * 1024
    )


def test_a_full_cache_is_held_in_slabs_that_each_stay_small():
    """No single dict holds the whole cache: a dict that grows (or fills with the holes
    of evicted entries) copies itself whole in the answering callback, 9-23 ms at
    100,000 entries. The default 64 MiB is 64 slabs, each with its share of the bytes."""
    metrics = Metrics()
    cache = AnswerCache(CacheConfig(), metrics)
    assert cache.slabs == 64
    answer = upstream_answer("x.test")
    cost = AnswerCache.cost(answer.message)
    names = 2 * cache.max_bytes // cost  # twice what fits: every slab evicts
    for index in range(names):
        cache.put(cache_key(b"\x07n%06d\x04test\x00" % index, 1, 0), answer, now=0)
    assert cache.bytes <= cache.max_bytes
    assert len(cache) > 0.9 * cache.max_bytes // cost
    slab_share = cache.max_bytes // cache.slabs // cost
    slabs = zip(cache._young, cache._old, strict=True)
    assert max(len(young) + len(old) for young, old in slabs) <= slab_share
    assert metrics.cache_evictions.value() == names - len(cache)
    # The latest names are all there; each slab dropped its own least recently used.
    latest = [
        cache_key(b"\x07n%06d\x04test\x00" % index, 1, 0) for index in range(names - 100, names)
    ]
    assert all(cache.get(key, now=1) is not None for key in latest)


def test_a_small_cache_is_one_slab_least_recently_used_first():
    cache = AnswerCache(CacheConfig(max_bytes=600 * 1024), Metrics())
    assert cache.slabs == 1
    assert AnswerCache(CacheConfig(max_bytes=1024 * 1024), Metrics()).slabs == 2


def test_the_garbage_collector_never_walks_the_cache():
    """Keys and entries are bytes, so the slabs are dicts the collector does not track:
    as tuples they were checked one by one at each full collection (40-120 ms with
    130,000 answers), which ran every few seconds under misses."""
    # Small enough to evict: both generations hold entries.
    cache = AnswerCache(CacheConfig(max_bytes=1024 * 1024), Metrics())
    answer = upstream_answer("x.test")
    for index in range(5_000):
        cache.put(cache_key(b"\x07n%06d\x04test\x00" % index, 1, 0), answer, now=0)
        cache.get(cache_key(b"\x07n%06d\x04test\x00" % (index // 2), 1, 0), now=1)
    assert not any(gc.is_tracked(part) for part in cache._young + cache._old)
    assert any(cache._old), "no slab's young generation grew old: the test saw one dict"

    hit = cache.get(cache_key(b"\x07n%06d\x04test\x00" % 4_999, 1, 0), now=2)
    assert hit is not None
    assert hit.message[:2] == answer.message[:2]
    assert hit.cnames == answer.cnames
    assert hit.ttl_offsets == answer.ttl_offsets


def _cname_answer(name: str, target: str, ttl: int) -> Answer:
    query = dns.message.make_query(name, "A")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(name, ttl, "IN", "CNAME", target))
    response.answer.append(dns.rrset.from_text(target, ttl + 100, "IN", "A", "192.0.2.7"))
    data = response.to_wire()
    return _answer_from(data, wire.scan_response(data))


def test_every_hit_gives_the_whole_answer_whether_its_copy_is_reused_or_made_anew():
    """A hit reads its entry in part (the copy served within the same second is reused,
    a new second makes a new one): every field of the Answer is there each time, and the
    entry keeps its original message for the next second and for serve-stale."""
    cache = AnswerCache(CacheConfig(max_stale=600), Metrics())
    query = make_query("alias.test")
    key = cache_key(query.qname, 1, 0)
    answer = _cname_answer("alias.test.", "cdn.example.test.", 300)
    assert answer.cnames == (wire.text_to_name("cdn.example.test."),)
    cache.put(key, answer, now=100.0)
    for now, age in ((100.2, 0), (100.9, 0), (103.5, 3), (103.6, 3), (250.0, 150)):
        hit = cache.get(key, now=now)
        assert hit is not None
        assert hit.outcome is Outcome.CACHED
        assert hit.cnames == answer.cnames
        assert hit.ttl_offsets == answer.ttl_offsets
        assert hit.reuse_until == 400.0
        assert hit.countdown == (100.0, age)
        assert [r.ttl for r in decode(query, hit).answer] == [300 - age, 400 - age]
    stale = cache.stale(key, now=500.0)
    assert stale is not None
    assert [r.ttl for r in decode(query, stale).answer] == [30, 30]
    assert stale.cnames == answer.cnames


def test_evictions_over_many_generations_keep_exact_least_recently_used_order():
    """A slab's young generation grows old (reversed, in one copy) each time the old
    one is used up, and a hit moves an entry from the old one back to the young: over
    many generations, what is left must be exactly the most recently used entries, with
    their bytes counted."""
    metrics = Metrics()
    answer = upstream_answer("x.test")
    cost = AnswerCache.cost(answer.message)
    cache = AnswerCache(CacheConfig(max_bytes=100 * cost), metrics)
    assert cache.slabs == 1

    def key(index: int) -> bytes:
        return cache_key(b"\x07n%06d\x04test\x00" % index, 1, 0)

    kept = key(0)
    cache.put(kept, answer, now=0)
    generations = 0
    newest = 1000
    for index in range(1, newest + 1):
        before = len(cache._old[0])
        cache.put(key(index), answer, now=0)
        generations += len(cache._old[0]) > before
        if index % 50 == 0:
            # A hit: the first name becomes the most recently used again, whichever
            # generation holds it.
            assert cache.get(kept, now=1) is not None
    assert generations >= 5
    assert metrics.cache_evictions.value() == newest + 1 - 100
    assert len(cache) == 100
    assert cache.bytes == 100 * cost
    assert cache.get(kept, now=1) is not None
    # The 99 others are exactly the latest names; everything older went first.
    assert all(cache.get(key(i), now=1) is not None for i in range(newest - 98, newest + 1))
    assert cache.get(key(newest - 99), now=1) is None


def test_a_hit_in_the_old_generation_outlives_entries_put_after_it():
    """LRU, not FIFO: an entry already in the old generation that is hit must survive
    the eviction of everything that was put after it but not used since."""
    metrics = Metrics()
    answer = upstream_answer("x.test")
    cost = AnswerCache.cost(answer.message)
    cache = AnswerCache(CacheConfig(max_bytes=10 * cost), metrics)

    def key(index: int) -> bytes:
        return cache_key(b"\x07n%06d\x04test\x00" % index, 1, 0)

    for index in range(11):  # the eleventh makes the ten before it the old generation
        cache.put(key(index), answer, now=0)
    assert key(5) in cache._old[0]
    assert cache.get(key(5), now=1) is not None
    assert key(5) in cache._young[0]
    for index in range(11, 20):  # nine more: nine evictions
        cache.put(key(index), answer, now=0)
    assert cache.get(key(5), now=1) is not None
    gone = [i for i in range(20) if cache.get(key(i), now=1) is None]
    assert gone == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
