"""One /metrics for several workers: their expositions merged into one server's.

Counters, histograms and most gauges are summed; gauges every worker reports alike
(the same policy, the same limits) take the maximum, start times the minimum.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator

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
