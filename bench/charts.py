"""The chart of a run: throughput, latency and list scale in one PNG (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

COLOURS = {
    "aiwall": "tab:red",
    "dnsmasq": "tab:blue",
    "unbound": "tab:green",
    "unbound-rpz": "tab:olive",
}


def chart(results: dict[str, Any], path: Path) -> bool:
    """A PNG of qps, latency and list scale; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on CI or a server
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    meta, summary = results["meta"], results["summary"]
    servers = [s for s in meta["servers"] if s in summary]
    mixes = meta["mixes"]
    scale = results["list_scale"]
    panels = 3 if scale else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.5))
    _server_panels(axes, summary, servers, mixes)
    if scale:
        _scale_panel(axes[2], scale)
    fig.suptitle(
        f"aiwall {meta['aiwall_commit'].split()[0]}"
        f" (workers: {meta['aiwall_workers'] or 'default'}), {meta['names']:,} synthetic names,"
        f" {meta['rounds']} x {meta['duration']:g} s, {meta['host'].split(',')[0]}",
        fontsize="medium",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _server_panels(
    axes: Any, summary: dict[str, Any], servers: list[str], mixes: list[str]
) -> None:
    """The first two panels, a bar per server and mix: throughput at full load and
    latency at half load."""
    width = 0.8 / max(1, len(servers))
    positions = range(len(mixes))
    for index, server in enumerate(servers):
        offsets = [p - 0.4 + width * (index + 0.5) for p in positions]
        rows = [summary[server].get(mix) for mix in mixes]
        medians, spread = _qps(rows)
        colour = COLOURS.get(server)
        axes[0].bar(offsets, medians, width, yerr=spread, capsize=3, label=server, color=colour)
        p99, p50 = _latency(rows)
        axes[1].bar(offsets, p99, width, label=f"{server} p99", color=colour)
        axes[1].plot(offsets, p50, "k_", markersize=12)
    axes[0].set_title("throughput at full load (median, min-max)")
    axes[0].set_ylabel("queries per second")
    axes[1].set_title("latency at 50% of own peak (bar p99, dash p50)")
    axes[1].set_ylabel("ms")
    axes[1].axhline(2.0, color="grey", linestyle="--", linewidth=1)
    for axis in axes[:2]:
        axis.set_xticks(list(positions), mixes)
        axis.legend(fontsize="small")


def _qps(rows: list[dict[str, Any] | None]) -> tuple[list[float], list[list[float]]]:
    """A server's median qps per mix, and the error bars down to the min and up to the max
    (0 where the mix was not measured)."""
    medians = [r["qps_median"] if r else 0 for r in rows]
    spread = [
        [r["qps_median"] - r["qps_min"] if r else 0 for r in rows],
        [r["qps_max"] - r["qps_median"] if r else 0 for r in rows],
    ]
    return medians, spread


def _latency(rows: list[dict[str, Any] | None]) -> tuple[list[float], list[float]]:
    """A server's p99 and p50 per mix (0 where missing)."""
    p99 = [r["p99_ms"] or 0 if r else 0 for r in rows]
    p50 = [r["p50_ms"] or 0 if r else 0 for r in rows]
    return p99, p50


def _scale_panel(axis: Axes, scale: list[dict[str, Any]]) -> None:
    """The third panel: aiwall's blocked qps and RSS by the size of its list."""
    labels = [f"{row['extra_names']:,}" for row in scale]
    axis.bar(labels, [row["blocked_qps"] for row in scale], color="tab:red", alpha=0.7)
    axis.set_title("aiwall list scale: blocked qps (bars), RSS (line)")
    axis.set_xlabel("extra names in the list")
    axis.set_ylabel("blocked queries per second")
    memory = axis.twinx()
    memory.plot(labels, [row["rss_kb"] / 1024 for row in scale], "ko-")
    memory.set_ylabel("RSS after load (MB)")
    memory.set_ylim(bottom=0)  # a zero baseline: the growth reads at its true size
    for label, row in zip(labels, scale, strict=True):
        axis.annotate(
            f"{row['start_seconds']:.2f} s",
            (label, row["blocked_qps"]),
            ha="center",
            va="bottom",
            fontsize="small",
        )
