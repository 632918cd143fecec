"""/metrics written a few families at a time (``serve.exposition``): the same text as
prometheus_client's own, with the event loop given back between the pieces."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from resolver.metrics import Metrics
from resolver.serve.exposition import FAMILIES_PER_TURN, exposition


class _Reads:
    """A custom collector that counts how often it is read."""

    def __init__(self) -> None:
        self.reads = 0

    def collect(self) -> Iterable[Metric]:
        self.reads += 1
        yield GaugeMetricFamily("test_reads", "times read", value=self.reads)


def _registry() -> tuple[CollectorRegistry, _Reads]:
    registry = CollectorRegistry()
    for i in range(7):
        counter = Counter(f"test_counter_{i}", "a counter", ["service"], registry=registry)
        counter.labels('chat"gpt\\').inc(i)  # escaped in the text
        counter.labels("deepseek").inc(2 * i)
    Gauge("test_gauge", "a gauge", registry=registry).set(1.5e-7)
    histogram = Histogram("test_seconds", "a histogram", ["upstream"], registry=registry)
    histogram.labels("192.0.2.1").observe(0.003)
    reads = _Reads()
    registry.register(reads)
    return registry, reads


def test_the_text_is_the_same_as_prometheus_clients() -> None:
    registry, reads = _registry()
    ours = asyncio.run(exposition(registry))
    theirs = generate_latest(registry)
    # The custom collector is read once per scrape, so the second read says 2.
    assert ours.replace(b"test_reads 1.0", b"test_reads 2.0") == theirs
    assert reads.reads == 2


def test_the_real_registry_reads_the_same() -> None:
    metrics = Metrics()
    metrics.dropped.labels("udp", "unparsable").inc(3)
    gc.disable()  # the collector's own counts would move between the two reads
    try:
        ours = asyncio.run(exposition(metrics.registry))
        theirs = generate_latest(metrics.registry)
    finally:
        gc.enable()

    def steady(text: bytes) -> list[bytes]:
        return [line for line in text.splitlines() if not line.startswith(b"process_")]

    assert steady(ours) == steady(theirs)
    assert len(steady(ours)) > 100


def test_the_loop_runs_between_pieces() -> None:
    registry, _ = _registry()
    families = len(list(registry.collect()))
    assert families > 2 * FAMILIES_PER_TURN

    async def scrape_while_counting() -> int:
        turns = 0
        done = False

        async def count() -> None:
            nonlocal turns
            while not done:
                turns += 1
                await asyncio.sleep(0)

        counter = asyncio.create_task(count())
        await asyncio.sleep(0)
        before = turns
        await exposition(registry)
        done = True
        await counter
        return turns - before

    # One turn of the counter per piece written (the last piece's included).
    assert asyncio.run(scrape_while_counting()) >= families // FAMILIES_PER_TURN
