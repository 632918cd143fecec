"""Metrics updated on every query, kept without a lock: plain numbers in dicts and lists,
turned into samples only when scraped (``resolver.metrics`` declares them).

prometheus_client takes a lock per update, which on the hot path costs more than
answering a blocked query does. These are read and written from the event loop's
thread only. Imports nothing of ours.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


def _as_labels(key: Hashable) -> tuple[str, ...]:
    return key if isinstance(key, tuple) else ()


class HotCounter(Collector):
    """A counter bumped on every query: a plain dict increment, turned into samples only
    when scraped. prometheus_client's Counter takes a lock and a label lookup per call,
    which on the hot path costs more than answering a blocked query does."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...] = (),
        labels: Callable[[Any], tuple[str, ...]] = _as_labels,
        *,
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = labelnames
        self._labels = labels
        self._counts: dict[Hashable, int] = {} if labelnames else {(): 0}
        # Counts kept elsewhere and added in before every read (``Metrics.defer``).
        self.pending: list[Callable[[], None]] = []
        registry.register(self)

    def inc(self, key: Hashable = ()) -> None:
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1

    def add(self, key: Hashable, count: int) -> None:
        counts = self._counts
        counts[key] = counts.get(key, 0) + count

    @property
    def counts(self) -> dict[Hashable, int]:
        """Every count, the deferred ones added in."""
        for flush in self.pending:
            flush()
        return self._counts

    def value(self, key: Hashable = ()) -> int:
        return self.counts.get(key, 0)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        merged: dict[tuple[str, ...], int] = {}
        for key, count in list(self.counts.items()):
            labels = self._labels(key)
            merged[labels] = merged.get(labels, 0) + count
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for labels, count in merged.items():
            family.add_metric(list(labels), count)
        yield family


class HotHistogram(Collector):
    """A histogram observed on every cache miss: one list slot found by bisection and a
    sum, turned into samples only when scraped. prometheus_client's takes a lock for the
    sum and another for the bucket, which it finds with a loop in Python.

    Read and written from the event loop's thread only, as ``HotCounter``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        buckets: tuple[float, ...],
        *,
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = labelnames
        self._bounds = (*sorted(buckets), math.inf)
        self._children: dict[tuple[str, ...], HistogramSeries] = {}
        registry.register(self)

    def labels(self, *values: str) -> HistogramSeries:
        series = self._children.get(values)
        if series is None:
            series = self._children[values] = HistogramSeries(self._bounds)
        return series

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        names = [floatToGoString(bound) for bound in self._bounds]  # type: ignore[no-untyped-call]
        for values, series in list(self._children.items()):
            # The exposition's buckets are cumulative (le: "at most").
            family.add_metric(
                list(values),
                list(zip(names, itertools.accumulate(series.counts), strict=True)),
                series.sum,
            )
        yield family


class HistogramSeries:
    """One labelled series of a ``HotHistogram``."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * len(bounds)  # per bucket, not cumulative
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        # The first bucket whose bound is at least ``amount`` (the last is +Inf).
        self.counts[bisect.bisect_left(self._bounds, amount)] += 1
        self.sum += amount
