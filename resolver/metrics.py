"""Prometheus metrics: names, labels and pre-bound children for the hot path.

Labels are bounded by design: protocol, folded query type, outcome, rcode, catalog service
and category, upstream server. Never a client address or a queried name.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from resolver import __version__, wire

# The _created series double the series count for no dashboard we ship.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

# Query types worth their own series; everything else is "other" (as CoreDNS does).
QTYPE_LABELS = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
}


class Metrics:
    """All metrics of one server instance, in its own registry (tests run several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Info("aiwall_build", "Version of the running server.", registry=r).info(
            {"version": __version__}
        )
        self.queries = Counter(
            "aiwall_queries_total",
            "Queries received, by transport and query type.",
            ["protocol", "qtype"],
            registry=r,
        )
        self.responses = Counter(
            "aiwall_responses_total",
            "Responses sent, by how they were answered and rcode.",
            ["outcome", "rcode"],
            registry=r,
        )
        self.blocked = Counter(
            "aiwall_blocked_queries_total",
            "Queries answered with a block, by catalog service (or list) and category.",
            ["service", "category"],
            registry=r,
        )
        self.dropped = Counter(
            "aiwall_dropped_packets_total",
            "Packets dropped without an answer, by reason.",
            ["protocol", "reason"],
            registry=r,
        )
        self.cache_hits = Counter(
            "aiwall_cache_hits_total", "Answers served from the cache.", registry=r
        )
        self.cache_misses = Counter(
            "aiwall_cache_misses_total", "Cache lookups that found no usable answer.", registry=r
        )
        self.cache_evictions = Counter(
            "aiwall_cache_evictions_total",
            "Entries evicted to keep the cache within its size.",
            registry=r,
        )
        self.cache_entries = Gauge("aiwall_cache_entries", "Answers held in the cache.", registry=r)
        self.upstream_duration = Histogram(
            "aiwall_upstream_request_duration_seconds",
            "Time from sending a query upstream to accepting its answer.",
            ["upstream"],
            buckets=(
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.5,
                5.0,
            ),
            registry=r,
        )
        self.upstream_errors = Counter(
            "aiwall_upstream_errors_total",
            "Upstream attempts that gave no usable answer (timeout, network, servfail, refused).",
            ["upstream", "reason"],
            registry=r,
        )
        self.upstream_rejected = Counter(
            "aiwall_upstream_rejected_responses_total",
            "Packets from upstream ignored as forged or broken (RFC 5452): wrong ID, question, "
            "source or malformed.",
            ["upstream", "reason"],
            registry=r,
        )
        self.tcp_connections = Gauge(
            "aiwall_tcp_connections", "Open client TCP connections.", registry=r
        )
        self.tcp_closed = Counter(
            "aiwall_tcp_connections_closed_total",
            "Client TCP connections closed by the server, by reason.",
            ["reason"],
            registry=r,
        )
        self.list_entries = Gauge(
            "aiwall_list_entries", "Names in the active policy, by source.", ["source"], registry=r
        )
        self.list_loaded = Gauge(
            "aiwall_list_last_load_timestamp_seconds",
            "When the active policy was loaded (Unix time).",
            registry=r,
        )
        self.list_last_success = Gauge(
            "aiwall_list_last_success_timestamp_seconds",
            "When each remote list was last fetched or confirmed unchanged (Unix time).",
            ["source"],
            registry=r,
        )
        self.list_refresh_failures = Counter(
            "aiwall_list_refresh_failures_total",
            "Remote list refreshes rejected, the last good copy kept: network, http_status, "
            "parse, shrink, too_large.",
            ["source", "reason"],
            registry=r,
        )
        self._query_children: dict[tuple[str, int], Counter] = {}
        self._response_children: dict[tuple[str, int], Counter] = {}
        # Label lookups take a lock and a tuple build; the hot path reuses bound children.
        self._blocked_children: dict[tuple[str, str], Counter] = {}

    def count_query(self, protocol: str, qtype: int) -> None:
        key = (protocol, qtype)
        child = self._query_children.get(key)
        if child is None:
            child = self.queries.labels(protocol, QTYPE_LABELS.get(qtype, "other"))
            self._query_children[key] = child
        child.inc()

    def count_response(self, outcome: str, rcode: int) -> None:
        key = (outcome, rcode)
        child = self._response_children.get(key)
        if child is None:
            name = wire.RCODE_NAMES.get(rcode, str(rcode) if rcode < 24 else "other")
            child = self.responses.labels(outcome, name)
            self._response_children[key] = child
        child.inc()

    def count_blocked(self, service: str, category: str) -> None:
        key = (service, category)
        child = self._blocked_children.get(key)
        if child is None:
            child = self.blocked.labels(service, category)
            self._blocked_children[key] = child
        child.inc()

    def set_list_sizes(self, sizes: dict[str, int], loaded_at: float) -> None:
        self.list_entries.clear()
        for source, count in sizes.items():
            self.list_entries.labels(source).set(count)
        self.list_loaded.set(loaded_at)
