"""The catalog feed's metrics, registered once in a server's registry.

Label values are bounded: ``source`` is a configured catalog source's label, ``reason``
one of ``CATALOG_FAILURES``. In a server of several workers the supervisor fetches the
bundles, so these series are its own (``serve.merge``).
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

# Why a signed catalog bundle was not applied.
CATALOG_FAILURES = (
    "network",
    "timeout",
    "http_status",
    "too_large",
    "unsigned",
    "signature",
    "format",
    "invalid",
    "rollback",
    "shrink",
    "policy",
)

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, FeedMetrics] = (
    weakref.WeakKeyDictionary()
)


class FeedMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        gauge = functools.partial(Gauge, registry=registry)
        self.serial = gauge(
            "aiwall_catalog_serial",
            "Serial of the signed catalog bundle of each catalog source that the policy was "
            "last built from; 0 while none has been verified (the shipped catalog stands in).",
            ["source"],
        )
        self.created = gauge(
            "aiwall_catalog_bundle_created_timestamp_seconds",
            "When that bundle was signed (Unix time); 0 while there is none.",
            ["source"],
        )
        self.last_success = gauge(
            "aiwall_catalog_last_success_timestamp_seconds",
            "When each catalog source was last fetched and verified, or confirmed unchanged "
            "(Unix time).",
            ["source"],
        )
        reasons = ", ".join(CATALOG_FAILURES)
        self.failures = Counter(
            "aiwall_catalog_refresh_failures_total",
            f"Catalog bundles not applied, the last good one kept, by reason: {reasons}.",
            ["source", "reason"],
            registry=registry,
        )
        self.verified_age = gauge(
            "aiwall_catalog_verified_median_age_seconds",
            "Median age of the verified: dates of the services in the catalog in force: "
            "half of them were checked against their sources more recently.",
        )
        self.verified_age.set(float("nan"))  # unknown until a policy uses the catalog

    @classmethod
    def of(cls, registry: CollectorRegistry) -> FeedMetrics:
        """The one set of a registry (a policy source made again on a reload reuses it)."""
        found = _BY_REGISTRY.get(registry)
        if found is None:
            found = _BY_REGISTRY[registry] = cls(registry)
        return found

    def preset(self, sources: Iterable[str]) -> None:
        """Every configured source's series, at zero until known: a dashboard shows 0, and
        the stale-catalog alert sees a source that never delivered a bundle."""
        for source in sources:
            self.serial.labels(source)
            self.created.labels(source)
            for reason in CATALOG_FAILURES:
                self.failures.labels(source, reason)

    def bundle(self, source: str, serial: int, created: float) -> None:
        self.serial.labels(source).set(serial)
        self.created.labels(source).set(created)

    def verified(self, median: float) -> None:
        """The median verified date (Unix time) of the catalog in force; the gauge gives
        its age at each scrape."""
        self.verified_age.set_function(lambda: time.time() - median)
