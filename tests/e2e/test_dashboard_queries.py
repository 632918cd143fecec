"""Every query of the Grafana dashboard returns data from a real Prometheus scraping a
real aiwall, and the shipped alert rules evaluate on that data without error.

CI-sized (about 15 s, not marked e2e, marked slow: ``make test-slow`` and
``make e2e-prometheus`` run it): Prometheus from the Debian package, scraping every
second, and aiwall as ``python -m resolver serve``; see tests/e2e/stack.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.dashboard import expand, load_dashboard, queries, render_preview
from tests.e2e.helpers import PROMETHEUS
from tests.e2e.stack import Stack, Traffic, observed_stack
from tests.peers.wait import wait_until

RATE_INTERVAL = "5s"  # five scrapes: what Grafana's $__rate_interval gives at 1 s
RANGE = "1m"
SCRAPED = 'sum_over_time(up{job="aiwall"}[1m]) >= 3'
DEADLINE = 20.0  # seconds of traffic before a panel with no data is a failure

# A real Prometheus, a traffic thread and a matplotlib preview: a tool run, not a unit.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not Path(PROMETHEUS).exists():
        pytest.fail("prometheus missing: run tests/tools/install-system-deps.sh")
    with observed_stack(tmp_path_factory.mktemp("stack")) as running:
        traffic = Traffic(running)
        traffic.start()
        try:
            # A few successful scrapes with traffic before any panel is asked.
            wait_until(
                lambda: bool(running.prometheus.query(SCRAPED)), 15, "three scrapes of aiwall"
            )
            yield running
        finally:
            traffic.stop()
        assert traffic.sent > 0
        assert not traffic.errors, f"{len(traffic.errors)} queries timed out"


def instance_regex(stack: Stack) -> str:
    """What Grafana puts in for $instance when one instance is selected."""
    return stack.metrics_target.replace(".", r"\\.")


def run_all(stack: Stack) -> dict[tuple[str, str], list[dict[str, object]]]:
    results = {}
    for query in queries(load_dashboard()):
        expr = expand(
            query.expr, rate_interval=RATE_INTERVAL, range_=RANGE, instance=instance_regex(stack)
        )
        results[(query.panel, query.ref)] = stack.prometheus.query(expr)
    return results


def test_instance_variable_lists_the_scraped_server(stack: Stack) -> None:
    # label_values(aiwall_build_info, instance), as Grafana's variable query asks it.
    values = stack.prometheus.api("label/instance/values", **{"match[]": "aiwall_build_info"})
    assert stack.metrics_target in values


def test_every_panel_query_returns_data(stack: Stack) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        # A PromQL error raises at once; only empty results are waited for.
        results = run_all(stack)
        empty = sorted(key for key, result in results.items() if not result)
        if not empty or time.monotonic() > deadline:
            break
        stack.aiwall.check_running()
        time.sleep(1)
    assert not empty, f"panels without data: {empty}"
    assert len(results) >= 20

    def labels(panel: str, ref: str = "A") -> list[dict[str, str]]:
        return [r["metric"] for r in results[(panel, ref)]]  # type: ignore[misc]

    def values(panel: str, ref: str = "A") -> list[float]:
        return [float(r["value"][1]) for r in results[(panel, ref)]]  # type: ignore[index]

    # The panels show what the traffic did, with the labels their legends use.
    assert {"blocked", "forwarded", "cached", "servfail"} <= {
        m["outcome"] for m in labels("Queries/s by outcome")
    }
    blocked = {(m["service"], m["category"]) for m in labels("Blocked/s by service and category")}
    assert any(service == "deepseek" for service, _ in blocked)
    assert any(category == "bypass" for _, category in blocked)
    assert ("list:remote:ai-extra", "list") in blocked or any(
        "ai-extra" in service for service, _ in blocked
    )
    top = labels("Top blocked services")
    assert top[0]["service"] == "deepseek" or values("Top blocked services")[0] == max(
        values("Top blocked services")
    )
    assert 0 < values("Cache hit ratio")[0] < 1
    p50, p99 = values("Upstream latency p50 / p99", "A"), values("Upstream latency p50 / p99", "B")
    assert all(math.isfinite(v) and 0 < v < 0.5 for v in p50 + p99)
    assert "servfail" in {m["reason"] for m in labels("Upstream errors/s", "A")}
    assert "wrong_id" in {m["reason"] for m in labels("Upstream errors/s", "B")}
    sources = {m["source"] for m in labels("Policy entries by source")}
    assert {"catalog", "remote:ai-extra"} <= sources
    ages = dict(
        zip(
            [m["source"] for m in labels("Age of the last good list refresh", "A")],
            values("Age of the last good list refresh", "A"),
            strict=True,
        )
    )
    assert set(ages) == {"remote:ai-extra", "remote:flaky"}
    assert 0 <= ages["remote:ai-extra"] < 60
    assert ("remote:flaky", "http_status") in {
        (m["source"], m["reason"]) for m in labels("List refresh failures")
    }
    assert 0 < values("CPU")[0] < 4
    assert 10e6 < values("Memory")[0] < 1e9
    assert values("Policy entries")[0] > 400
    assert [m["version"] for m in labels("Version")]


def test_alert_rules_evaluate_without_error(stack: Stack) -> None:
    def rules() -> list[dict[str, object]]:
        groups = stack.prometheus.api("rules")["groups"]
        return [rule for group in groups for rule in group["rules"]]

    # Evaluated every second; wait for a first evaluation of each.
    deadline = time.monotonic() + 10
    while any(rule.get("health") == "unknown" for rule in rules()):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    found = {str(rule["name"]): rule for rule in rules()}
    assert set(found) == {
        "AiwallDown",
        "AiwallUpstreamFailing",
        "AiwallListRefreshStale",
        "AiwallListShrinkRejected",
        "AiwallBypassAttemptsRising",
        "AiwallCatalogStale",
        "AiwallReplicasDisagree",
    }
    for name, rule in found.items():
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
    # A healthy server with a healthy upstream and fresh lists: nothing fires.
    assert found["AiwallDown"]["state"] == "inactive"
    assert found["AiwallListRefreshStale"]["state"] == "inactive"
    assert found["AiwallListShrinkRejected"]["state"] == "inactive"
    # No catalog feed configured, and the shipped catalog was verified this year.
    assert found["AiwallCatalogStale"]["state"] == "inactive"
    # One server: one fingerprint, nothing to disagree with.
    assert found["AiwallReplicasDisagree"]["state"] == "inactive"


def test_preview_renders_every_panel(stack: Stack, tmp_path: Path) -> None:
    output = tmp_path / "preview.png"
    end = time.time()
    counts = render_preview(
        stack.prometheus,
        output,
        start=end - 15,
        end=end,
        rate_interval=RATE_INTERVAL,
        instance=instance_regex(stack),
    )
    dashboard = load_dashboard()
    drawn = {p["title"] for p in dashboard["panels"] if p["type"] != "row"}
    assert set(counts) == drawn
    assert all(counts.values()), {title: n for title, n in counts.items() if not n}
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert output.stat().st_size > 50_000
