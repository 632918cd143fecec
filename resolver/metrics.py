"""Prometheus metrics: names, labels and pre-bound children for the hot path.

Labels are bounded by design: protocol, folded query type, outcome, rcode, catalog service
and category, upstream server. Never a client address or a queried name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

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

from resolver import __version__, compiled
from resolver.collectors import HotCounter, HotHistogram
from resolver.dns import wire

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


# The label values of counters whose label sets are known in advance.
REMOTE_FAILURES = ("network", "timeout", "http_status", "parse", "shrink", "too_large")
LOCAL_FAILURES = ("parse", "shrink", "unreadable")
UPSTREAM_ERRORS = ("timeout", "network", "refused", "servfail", "notimp", "formerr", "malformed")
UPSTREAM_REJECTIONS = ("wrong_id", "wrong_question", "malformed", "truncated")

RCODE_LABELS = {code: name for code, name in wire.RCODE_NAMES.items()} | {
    code: str(code) for code in range(24) if code not in wire.RCODE_NAMES
}


class Metrics:
    """All metrics of one server instance, in its own registry (tests run several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Info(
            "aiwall_build",
            "Version of the running server, and whether its hot path runs compiled.",
            registry=r,
        ).info({"version": __version__, "compiled": "yes" if compiled.COMPILED else "no"})
        self.queries = HotCounter(
            "aiwall_queries_total",
            "Queries received, by transport and query type.",
            ("protocol", "qtype"),
            lambda key: (key[0], QTYPE_LABELS.get(key[1], "other")),
            registry=r,
        )
        self.responses = HotCounter(
            "aiwall_responses_total",
            "Responses sent, by how they were answered and rcode.",
            ("outcome", "rcode"),
            lambda key: (key[0], RCODE_LABELS.get(key[1], "other")),
            registry=r,
        )
        self.blocked = HotCounter(
            "aiwall_blocked_queries_total",
            "Queries answered with a block, by catalog service (or list), category and "
            "client group.",
            ("service", "category", "group"),
            registry=r,
        )
        self.reported = HotCounter(
            "aiwall_reported_queries_total",
            "Queries a report-only rule let through (or a pause did) that would have been "
            "blocked, by service, category, client group and why (report, paused).",
            ("service", "category", "group", "action"),
            registry=r,
        )
        self.dropped = Counter(
            "aiwall_dropped_packets_total",
            "Packets dropped without an answer, by reason.",
            ["protocol", "reason"],
            registry=r,
        )
        self.cache_hits = HotCounter(
            "aiwall_cache_hits_total", "Answers served from the cache.", registry=r
        )
        self.cache_misses = HotCounter(
            "aiwall_cache_misses_total", "Cache lookups that found no usable answer.", registry=r
        )
        # A HotCounter: once the cache is full, every miss stored evicts.
        self.cache_evictions = HotCounter(
            "aiwall_cache_evictions_total",
            "Entries evicted to keep the cache within its size.",
            registry=r,
        )
        self.cache_entries = Gauge("aiwall_cache_entries", "Answers held in the cache.", registry=r)
        self.cache_bytes = Gauge(
            "aiwall_cache_bytes",
            "What the cached answers cost, counted as cache.max_bytes counts them.",
            registry=r,
        )
        self.upstream_duration = HotHistogram(
            "aiwall_upstream_request_duration_seconds",
            "Time from sending a query upstream to accepting its answer.",
            ("upstream",),
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
        self.access_refused = HotCounter(
            "aiwall_access_refused_total",
            "Queries refused because the client is outside access.allow.",
            registry=r,
        )
        self.ratelimited = HotCounter(
            "aiwall_ratelimited_total",
            "UDP answers over a client prefix's rate limit: dropped, or sent truncated (slip).",
            ("action",),
            registry=r,
        )
        self.upstream_skipped = Counter(
            "aiwall_upstream_skipped_total",
            "Upstream attempts skipped because the upstream did not answer the server's probe.",
            ["upstream"],
            registry=r,
        )
        self.upstream_up = Gauge(
            "aiwall_upstream_up",
            "1 while an upstream is used, 0 while it is skipped because it did not answer "
            "the server's own probe.",
            ["upstream"],
            registry=r,
        )
        self.upstream_connections = Counter(
            "aiwall_upstream_connections_total",
            "Connections to DoT and DoH upstreams: opened, failed (connect, TLS or "
            "certificate), closed, and queries that reused an open one.",
            ["upstream", "protocol", "event"],
            registry=r,
        )
        self.upstream_open_connections = Gauge(
            "aiwall_upstream_open_connections",
            "Connections to DoT and DoH upstreams open now.",
            ["upstream", "protocol"],
            registry=r,
        )
        self.upstream_probes = Counter(
            "aiwall_upstream_probes_total",
            "The server's own probes of a suspect upstream, by result (alive, dead).",
            ["upstream", "result"],
            registry=r,
        )
        self.reloads = Counter(
            "aiwall_reloads_total",
            "Config and policy reloads (SIGHUP, POST /api/reload, remote list refreshes): "
            "success, or rejected with the running config kept.",
            ["result"],
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
        self.list_skipped = Gauge(
            "aiwall_list_skipped_lines",
            "Lines of each list in force that gave no entry, by class: regex, cosmetic, "
            "pattern, modifier, forward, unsupported (not for DNS); invalid_name, "
            "other_format, unreadable (these count against max_invalid).",
            ["source", "class"],
            registry=r,
        )
        self.list_refresh_failures = Counter(
            "aiwall_list_refresh_failures_total",
            "List updates rejected, the last good copy kept: network, timeout, http_status, "
            "parse, shrink, too_large (remote lists); parse, shrink, unreadable (local files).",
            ["source", "reason"],
            registry=r,
        )
        # Buckets from 1 ms: the p99 a client feels is made of these (issue 13: none
        # over 5 ms during flushes, scrapes, refreshes or reloads).
        self.loop_stall = Histogram(
            "aiwall_loop_stall_seconds",
            "How late the event loop ran a timer due every 10 ms: time it answered nothing.",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.loop_stall_max = Gauge(
            "aiwall_loop_stall_max_seconds",
            "The worst stall of the event loop since the start.",
            registry=r,
        )
        self.policy_version = Gauge(
            "aiwall_policy_version",
            "The policy in force: a number the server raises at each build (start, reload, "
            "list refresh); every worker reports the same one.",
            registry=r,
        )
        self._fingerprints: tuple[str, ...] = ()
        self.policy_info = Gauge(
            "aiwall_policy_info",
            "1 for the policy in force, labelled with its fingerprint: equal on every "
            "replica whose config, catalog and lists decide alike (the version differs).",
            ["fingerprint"],
            registry=r,
        )
        self.rebuild_failures = Counter(
            "aiwall_policy_rebuild_failures_total",
            "Policy rebuilds after a list refresh that failed (each is tried again).",
            registry=r,
        )
        self.rebuild_pending = Gauge(
            "aiwall_policy_rebuild_pending",
            "1 while a list refresh waits for a policy rebuild that keeps failing.",
            registry=r,
        )
        self.audit_degraded = Gauge(
            "aiwall_audit_degraded",
            "1 while an audit sink cannot be written (full disk, dead database): DNS goes "
            "on, the attempts wait in memory.",
            ["sink"],
            registry=r,
        )
        self.audit_dropped = Counter(
            "aiwall_audit_dropped_total",
            "Attempts not recorded in the audit trail because its queue was full.",
            registry=r,
        )
        self.audit_written = Counter(
            "aiwall_audit_written_total",
            "Attempts written to each audit sink.",
            ["sink"],
            registry=r,
        )

    def policy_in_force(self, version: int, fingerprint: str) -> None:
        self.policy_version.set(version)
        if fingerprint not in self._fingerprints:
            self.policy_info.clear()  # one series: the policy in force
            self.policy_info.labels(fingerprint).set(1)
            self._fingerprints = (fingerprint,)

    def defer(self, flush: Callable[[], None]) -> None:
        """``flush`` adds counts of queries, responses, cache hits and blocked answers
        gathered elsewhere (the fast path's, one list slot per kind of answer); it runs
        before any of them is read or scraped."""
        for counter in (self.queries, self.responses, self.cache_hits, self.blocked):
            counter.pending.append(flush)

    def count_query(self, protocol: str, qtype: int) -> None:
        self.queries.inc((protocol, qtype))

    def count_response(self, outcome: str, rcode: int) -> None:
        self.responses.inc((outcome, rcode))

    def count_blocked(self, service: str, category: str, group: str) -> None:
        self.blocked.inc((service, category, group))

    def count_attempt(
        self, query: object, group: str, service: str, category: str, action: str
    ) -> None:
        """Attempts the blocking handler let through; blocked ones are counted from the
        answer by the metrics handler."""
        if action != "blocked":
            self.reported.inc((service, category, group, action))

    def list_rejected(self, source: str, reason: str) -> None:
        """A list update that was not believed; the last good copy stays in force."""
        self.list_refresh_failures.labels(source, reason).inc()

    def preset_lists(self, remote: Iterable[str], local: Iterable[str]) -> None:
        """Create the refresh-failure series of every configured list at zero, so a
        dashboard shows 0, not "No data", on a healthy server."""
        for source in remote:
            for reason in REMOTE_FAILURES:
                self.list_refresh_failures.labels(source, reason)
        for source in local:
            for reason in LOCAL_FAILURES:
                self.list_refresh_failures.labels(source, reason)

    def preset_upstream(self, label: str) -> None:
        for reason in UPSTREAM_ERRORS:
            self.upstream_errors.labels(label, reason)
        for reason in UPSTREAM_REJECTIONS:
            self.upstream_rejected.labels(label, reason)
        self.upstream_duration.labels(label)
        self.upstream_skipped.labels(label)

    def set_list_skipped(self, skipped: dict[str, dict[str, int]]) -> None:
        """The skipped lines of the lists just loaded (sources and classes are bounded
        by the config and the parser)."""
        self.list_skipped.clear()
        for source, counts in skipped.items():
            for kind, count in counts.items():
                self.list_skipped.labels(source, kind).set(count)

    def set_list_sizes(self, sizes: dict[str, int], loaded_at: float) -> None:
        self.list_entries.clear()
        for source, count in sizes.items():
            self.list_entries.labels(source).set(count)
        self.list_loaded.set(loaded_at)
