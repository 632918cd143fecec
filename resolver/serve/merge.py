"""One /metrics and one /api/stats for several workers: theirs merged into one
server's, never going down.

Counters, histograms and most gauges are summed; gauges every worker reports alike
(the same policy, the same limits) take the maximum, start times the minimum. A worker
that misses a request counts with its last answer; a worker that died leaves its totals
behind (as NSD and Unbound keep their children's statistics).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

# Gauges every worker reports alike (the same policy, the same limits): merged with max.
_SAME_IN_EVERY_WORKER = (
    "aiwall_list_",
    "aiwall_build_info",
    "python_info",
    "process_max_fds",
    "aiwall_upstream_up",
    "aiwall_loop_stall_max",  # the worst of any worker's
)


class Merged(Collector):
    """Families already merged, served as they are."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def _combiner(family: Metric) -> Callable[[float, float], float]:
    if family.name == "process_start_time_seconds":
        return min
    if family.type == "gauge" and family.name.startswith(_SAME_IN_EVERY_WORKER):
        return max
    return operator.add


def merge_expositions(texts: Iterable[str]) -> list[Metric]:
    """Counters, histograms and most gauges are summed over the workers; gauges every
    worker reports alike take the maximum, start times the minimum."""
    families: dict[str, Metric] = {}
    values: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            combine = _combiner(family)
            for sample in family.samples:
                key = (family.name, sample.name, tuple(sorted(sample.labels.items())))
                previous = values.get(key)
                values[key] = sample.value if previous is None else combine(previous, sample.value)
    for (family_name, sample_name, labels), value in values.items():
        families[family_name].add_sample(sample_name, dict(labels), value)
    return list(families.values())


# Families the supervisor itself keeps (its own probes, list refreshes, reloads and
# policy versions, the audit trail it owns): its values, never the workers' (which have
# none to give). Prefixes of family names, which carry no "_total" (prometheus_client).
SUPERVISOR_OWNS = (
    "aiwall_upstream_up",
    "aiwall_upstream_probes",
    "aiwall_list_refresh_failures",
    "aiwall_list_last_success_timestamp_seconds",
    "aiwall_list_skipped_lines",  # counted where the lists are read
    "aiwall_catalog_",  # the signed catalog feed (policy.feed)
    "aiwall_reloads",
    "aiwall_policy_rebuild_",
    "aiwall_policy_version",
    "aiwall_policy_info",
    "aiwall_audit_",
)


class MergedMetrics:
    """The workers' expositions merged into one server's, never going down: each
    worker's last answer stands in when it misses a scrape, and the counters of a worker
    that died are kept (as NSD and Unbound keep their children's statistics)."""

    def __init__(self) -> None:
        self._last: dict[int, str] = {}
        self._retired: list[str] = []

    def update(self, worker: int, text: str) -> None:
        self._last[worker] = text

    def retire(self, worker: int) -> None:
        """The worker died: its counters stay; its gauges go with it."""
        text = self._last.pop(worker, None)
        if text is not None:
            self._retired.append(_counters_only(text))
        # Keep the retired ones to one merged text, so they never pile up.
        if len(self._retired) > 1:
            self._retired = [_exposition(merge_expositions(self._retired))]

    def render(self, own: CollectorRegistry) -> bytes:
        families = [
            family
            for family in merge_expositions([*self._retired, *self._last.values()])
            if not family.name.startswith(SUPERVISOR_OWNS)
        ]
        mine = [
            family
            for family in text_string_to_metric_families(generate_latest(own).decode())
            if family.name.startswith(SUPERVISOR_OWNS)
        ]
        registry = CollectorRegistry()
        registry.register(Merged([*families, *mine]))
        return generate_latest(registry)


def _counters_only(text: str) -> str:
    families = [
        family
        for family in text_string_to_metric_families(text)
        if family.type in ("counter", "histogram", "summary")
    ]
    return _exposition(families)


def _exposition(families: list[Metric]) -> str:
    registry = CollectorRegistry()
    registry.register(Merged(families))
    return generate_latest(registry).decode()


# The /api/stats totals: counts since the server started, whichever worker counted them.
STATS_TOTALS = ("queries", "blocked", "reported", "cache_hits")


class MergedStats:
    """The workers' /api/stats totals, kept as MergedMetrics keeps counters."""

    def __init__(self) -> None:
        self._last: dict[int, Mapping[str, Any]] = {}
        self._retired: dict[str, Any] = _no_totals()

    def update(self, worker: int, stats: Mapping[str, Any]) -> None:
        self._last[worker] = stats

    def retire(self, worker: int) -> None:
        stats = self._last.pop(worker, None)
        if stats is not None:
            self._retired = _add(self._retired, stats)

    def totals(self) -> dict[str, Any]:
        total = self._retired
        for stats in self._last.values():
            total = _add(total, stats)
        by_service = total["blocked_by_service"]
        total["blocked_by_service"] = dict(sorted(by_service.items(), key=lambda kv: -kv[1]))
        return total


def _no_totals() -> dict[str, Any]:
    return {**dict.fromkeys(STATS_TOTALS, 0), "blocked_by_service": {}}


def _add(total: Mapping[str, Any], stats: Mapping[str, Any]) -> dict[str, Any]:
    result = {key: total[key] + stats.get(key, 0) for key in STATS_TOTALS}
    by_service = dict(total["blocked_by_service"])
    for service, count in stats.get("blocked_by_service", {}).items():
        by_service[service] = by_service.get(service, 0) + count
    result["blocked_by_service"] = by_service
    return result
