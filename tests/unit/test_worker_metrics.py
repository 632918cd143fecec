import re

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from resolver.metrics import Metrics
from resolver.serve.merge import Merged, merge_expositions


def worker_text(queries: int, start: float) -> str:
    metrics = Metrics()
    for _ in range(queries):
        metrics.count_query("udp", 1)
    metrics.upstream_duration.labels("127.0.0.1:53").observe(0.002)
    metrics.set_list_sizes({"catalog": 410}, loaded_at=1000.0)
    text = generate_latest(metrics.registry).decode()
    return re.sub(
        r"^process_start_time_seconds .*$", f"process_start_time_seconds {start}", text, flags=re.M
    )


def samples(families):
    registry = CollectorRegistry()
    registry.register(Merged(families))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_and_histograms_add_up_and_shared_gauges_do_not():
    merged = samples(merge_expositions([worker_text(3, 50.0), worker_text(4, 40.0)]))
    assert merged[("aiwall_queries_total", (("protocol", "udp"), ("qtype", "A")))] == 7
    assert (
        merged[("aiwall_upstream_request_duration_seconds_count", (("upstream", "127.0.0.1:53"),))]
        == 2
    )
    assert merged[("aiwall_list_entries", (("source", "catalog"),))] == 410
    assert merged[("aiwall_list_last_load_timestamp_seconds", ())] == 1000.0
    assert merged[("process_start_time_seconds", ())] == 40.0
