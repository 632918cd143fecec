"""The Grafana dashboard's queries, run against a real Prometheus, and a preview of it.

No Grafana can be had on the CI machines (no Debian package, nothing on PyPI), so the
preview (deploy/grafana/preview.png) is drawn with matplotlib from the same expressions,
with the same layout, from Prometheus data. Regenerate it with ``make dashboard-preview``
(``python -m tests.e2e.dashboard --output deploy/grafana/preview.png``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.helpers import DEPLOY, Prometheus

DASHBOARD = DEPLOY / "grafana" / "aiwall.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"


@dataclass(frozen=True)
class Query:
    panel: str
    panel_type: str
    ref: str
    expr: str
    legend: str
    instant: bool
    unit: str


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> list[Query]:
    found = []
    for panel in panels(dashboard):
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        for target in panel.get("targets", []):
            found.append(
                Query(
                    panel=panel["title"],
                    panel_type=panel["type"],
                    ref=target["refId"],
                    expr=target["expr"],
                    legend=target.get("legendFormat", ""),
                    instant=bool(target.get("instant")) and not target.get("range"),
                    unit=unit,
                )
            )
    return found


def expand(expr: str, *, rate_interval: str, range_: str, instance: str) -> str:
    """Substitute the Grafana variables the dashboard uses, as Grafana would."""
    expanded = (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$__range", range_)
        .replace("$instance", instance)
    )
    if "$" in expanded:
        raise ValueError(f"unknown Grafana variable left in {expanded!r}")
    return expanded


def legend(template: str, labels: dict[str, str]) -> str:
    if template in ("", "__auto"):
        return (
            ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"
        )
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


# --- preview -------------------------------------------------------------------------------

BACKGROUND = "#111217"
PANEL = "#181b1f"
TEXT = "#ccccdc"
MUTED = "#8e8e99"
COLOURS = ("#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a")


def fmt(value: float, unit: str) -> str:
    if math.isnan(value) or math.isinf(value):
        return "-"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "reqps":
        return f"{value:.1f}/s"
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    if unit == "s":
        if value >= 3600:
            return f"{value / 3600:.1f} h"
        if value >= 60:
            return f"{value / 60:.1f} min"
        if value < 0.1:
            return f"{value * 1000:.2f} ms"
        return f"{value:.1f} s"
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.2f}"


def render_preview(
    prometheus: Prometheus,
    output: Path,
    *,
    start: float,
    end: float,
    rate_interval: str,
    instance: str,
) -> dict[str, int]:
    """Draw every panel from Prometheus data; return the number of series per panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    dashboard = load_dashboard()
    range_ = f"{max(int(end - start), 1)}s"
    step = max((end - start) / 200, 1.0)
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    unit_height = 0.32
    figure = plt.figure(figsize=(18, bottom * unit_height), dpi=80, facecolor=BACKGROUND)
    grid = figure.add_gridspec(bottom, 24, left=0.045, right=0.99, top=0.995, bottom=0.03)
    grid.update(wspace=2.2, hspace=2.4)
    counts: dict[str, int] = {}
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        area = grid[pos["y"] : pos["y"] + pos["h"], pos["x"] : pos["x"] + pos["w"]]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        if panel["type"] == "row":
            axis = figure.add_subplot(area)
            axis.set_axis_off()
            axis.text(0, 0.2, panel["title"], color=TEXT, fontsize=13, weight="bold")
            continue
        axis = figure.add_subplot(area, facecolor=PANEL)
        for spine in axis.spines.values():
            spine.set_color(PANEL)
        axis.set_title(panel["title"], color=TEXT, fontsize=10, loc="left")
        axis.tick_params(colors=MUTED, labelsize=7)
        series_count = 0
        if panel["type"] in ("stat", "table"):
            axis.set_xticks([])
            axis.set_yticks([])
            (target,) = panel["targets"]
            expr = expand(
                target["expr"], rate_interval=rate_interval, range_=range_, instance=instance
            )
            result = prometheus.query(expr, at=end)
            series_count = len(result)
            if panel["type"] == "stat":
                if target.get("legendFormat") not in (None, "", "__auto"):
                    text = ", ".join(legend(target["legendFormat"], r["metric"]) for r in result)
                else:
                    text = ", ".join(fmt(float(r["value"][1]), unit) for r in result) or "No data"
                axis.text(
                    0.5,
                    0.4,
                    text,
                    color=COLOURS[0],
                    fontsize=22,
                    weight="bold",
                    ha="center",
                    va="center",
                    transform=axis.transAxes,
                )
            else:
                rows = sorted(result, key=lambda r: -float(r["value"][1]))
                lines = [f"{'Service':<28}{'Category':<26}{'Blocked':>8}"]
                lines += [
                    f"{r['metric'].get('service', ''):<28}{r['metric'].get('category', ''):<26}"
                    f"{float(r['value'][1]):>8.0f}"
                    for r in rows[:12]
                ]
                axis.text(
                    0.02,
                    0.95,
                    "\n".join(lines),
                    color=TEXT,
                    fontsize=8,
                    family="monospace",
                    va="top",
                    transform=axis.transAxes,
                )
        else:
            colour = iter(COLOURS * 8)
            for target in panel["targets"]:
                expr = expand(
                    target["expr"], rate_interval=rate_interval, range_=range_, instance=instance
                )
                for series in prometheus.query_range(expr, start, end, step):
                    series_count += 1
                    xs = [float(t) - end for t, _ in series["values"]]
                    ys = [float(v) for _, v in series["values"]]
                    axis.plot(
                        xs,
                        ys,
                        linewidth=1.2,
                        color=next(colour),
                        label=legend(target.get("legendFormat", ""), series["metric"]),
                    )
            axis.yaxis.set_major_formatter(FuncFormatter(lambda v, _, u=unit: fmt(v, u)))
            axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}s"))
            axis.grid(color="#2c3235", linewidth=0.5)
            if series_count:
                axis.legend(
                    fontsize=6,
                    loc="upper left",
                    facecolor=PANEL,
                    edgecolor=PANEL,
                    labelcolor=TEXT,
                    ncol=2 if series_count > 6 else 1,
                )
        counts[panel["title"]] = series_count
    figure.text(
        0.99,
        0.001,
        "preview drawn from Prometheus data (tests/e2e/dashboard.py); "
        "Grafana renders deploy/grafana/aiwall.json",
        color=MUTED,
        fontsize=7,
        ha="right",
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, facecolor=BACKGROUND)
    plt.close(figure)
    return counts


def main(argv: list[str] | None = None) -> int:
    """Run the stack with varying traffic for a while and draw the preview."""
    from tests.e2e.stack import Traffic, observed_stack

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=DEPLOY / "grafana" / "preview.png")
    parser.add_argument("--seconds", type=float, default=150.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work, observed_stack(Path(work)) as stack:
        traffic = Traffic(stack, intensity=0.3)
        traffic.start()
        started = time.time()
        try:
            while (elapsed := time.time() - started) < args.seconds:
                phase = elapsed / args.seconds
                traffic.intensity = 0.55 + 0.45 * math.sin(phase * 2 * math.pi)
                # A rise of blocked DNS-bypass lookups, two thirds of the way in.
                traffic.bypass_boost = 0.8 if 0.6 < phase < 0.75 else 0.0
                time.sleep(1)
        finally:
            traffic.stop()
        end = time.time()
        instance = stack.metrics_target.replace(".", r"\\.")
        counts = render_preview(
            stack.prometheus,
            args.output,
            start=started,
            end=end,
            rate_interval="10s",
            instance=instance,
        )
    print(
        f"{args.output}: {sum(counts.values())} series in {len(counts)} panels, "
        f"{traffic.sent} queries sent"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
