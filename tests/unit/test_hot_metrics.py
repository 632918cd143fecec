"""The miss path's metrics kept without a lock (``resolver.metrics.HotHistogram``, the
cache's gauges read when scraped) show exactly what prometheus_client's own would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from resolver.collectors import HotHistogram
from resolver.config import CacheConfig
from resolver.handlers.cache import AnswerCache
from resolver.handlers.cache_entry import cache_key
from resolver.metrics import Metrics
from tests.unit.test_handler_cache import upstream_answer

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# On the bounds (a bucket counts what is at most its bound), between them, beyond the
# last, zero.
AMOUNTS = (0.0, 0.0005, 0.0004999, 0.00051, 0.003, 0.01, 0.0100001, 1.0, 4.99, 5.0, 7.5, 60.0)


def test_the_hot_histogram_exposes_what_prometheus_clients_does() -> None:
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    name, documentation = "aiwall_test_duration_seconds", "Some durations."
    ours = HotHistogram(name, documentation, ("upstream",), BUCKETS, registry=ours_registry)
    theirs = Histogram(name, documentation, ["upstream"], buckets=BUCKETS, registry=theirs_registry)
    for label in ("a:53", "b:53"):
        ours.labels(label)  # a series shown at zero before any observation
        theirs.labels(label)
    for amount in AMOUNTS:
        ours.labels("a:53").observe(amount)
        theirs.labels("a:53").observe(amount)
    exposition = generate_latest(ours_registry)
    assert exposition == generate_latest(theirs_registry)
    assert b'aiwall_test_duration_seconds_bucket{le="0.0005",upstream="a:53"} 3.0' in exposition


def test_the_cache_gauges_are_exact_whenever_scraped() -> None:
    metrics = Metrics()
    cache = AnswerCache(CacheConfig(max_stale=0), metrics)

    def scraped(name: str) -> float | None:
        return metrics.registry.get_sample_value(name)

    answer = upstream_answer("a.", ttl=10)
    cache.put(cache_key(b"\x01a\x00", 1, 0), answer, now=0.0)
    assert scraped("aiwall_cache_entries") == 1
    assert scraped("aiwall_cache_bytes") == cache.bytes == AnswerCache.cost(answer.message)
    # An entry dropped on a lookup past its stale window shows at the next scrape too.
    assert cache.get(cache_key(b"\x01a\x00", 1, 0), now=1000.0) is None
    assert scraped("aiwall_cache_entries") == 0
    assert scraped("aiwall_cache_bytes") == 0
