"""What a run found: the journal of raw runs and warnings kept while it goes, the summary
over the rounds, the targets, and the Markdown report."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.floor import describe
from bench.settings import DNSPERF_CLIENTS, DNSPERF_OUTSTANDING, REFERENCE
from bench.wakeups import describe as describe_wakeups


@dataclass
class Journal:
    """Kept while the run goes: every measured run (raw, noisy ones marked discarded),
    the warnings, and the load seen by each run that started without the machine going
    quiet first."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    busy_starts: list[float] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)


def median_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(runs: list[dict[str, Any]], servers: Sequence[str], mixes: Sequence[str]) -> Any:
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for server in servers:
        for mix in mixes:
            kept = [
                r for r in runs if r["server"] == server and r["mix"] == mix and not r["discarded"]
            ]
            peak = [r for r in kept if r["kind"] == "peak"]
            if peak:
                half = [r for r in kept if r["kind"] == "half"]
                summary.setdefault(server, {})[mix] = _summary_row(peak, half)
    return summary, per_round_ratios(runs, servers, mixes)


def _summary_row(peak: list[dict[str, Any]], half: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's figures for one mix, over its full-load and half-load runs."""
    qps = [r["qps"] for r in peak]
    return {
        "qps_median": statistics.median(qps),
        "qps_min": min(qps),
        "qps_max": max(qps),
        "qps_runs": qps,
        "avg_latency_at_peak_ms": median_or_none([r["avg_latency_ms"] for r in peak]),
        "lost_at_peak": sum(r["lost"] for r in peak),
        "server_cores_at_peak": median_or_none([r["server_cores"] for r in peak]),
        **_cpu_per_answer(peak, "peak"),
        # At half load fewer datagrams wait per wake-up of the server.
        **_cpu_per_answer(half, "half"),
        "other_cores_max": max(r["other_cores"] for r in peak + half),
        "half_load_qps": median_or_none([r["qps"] for r in half]),
        "p50_ms": median_or_none([r["p50_ms"] for r in half]),
        "p99_ms": median_or_none([r["p99_ms"] for r in half]),
        "p99_ms_runs": [r["p99_ms"] for r in half],
        "lost_at_half": sum(r["lost"] for r in half),
        # The worst loop stall in the half-load runs (a bucket's upper bound).
        "stall_at_half_ms": max(
            (r["stall_max_le_ms"] for r in half if r.get("stall_max_le_ms") is not None),
            default=None,
        ),
    }


def _cpu_per_answer(runs: list[dict[str, Any]], kind: str) -> dict[str, float | None]:
    """CPU per answer (µs) over ``runs``, the median: the server's own code (user) and
    the kernel's work for it."""
    return {
        f"user_us_at_{kind}": median_or_none([r.get("user_us") for r in runs]),
        f"kernel_us_at_{kind}": median_or_none([r.get("kernel_us") for r in runs]),
    }


# The peers every server is compared with, per round (they ran in the same minutes).
PEERS = ("unbound", "dnsmasq")


def per_round_ratios(
    runs: list[dict[str, Any]], servers: Sequence[str], mixes: Sequence[str]
) -> dict[str, dict[str, float]]:
    """mix -> "server/peer" -> the median over the rounds of that round's qps ratio: a
    server and its peer measured minutes apart, so slow drift of the machine cancels."""
    peak: dict[tuple[str, str, int], float] = {
        (r["server"], r["mix"], r["round"]): r["qps"]
        for r in runs
        if r["kind"] == "peak" and not r["discarded"]
    }
    ratios: dict[str, dict[str, float]] = {}
    for mix in mixes:
        for server in servers:
            for peer in PEERS:
                if peer == server or peer not in servers:
                    continue
                found = [
                    qps / peak[(peer, mix, round_)]
                    for (name, kind, round_), qps in peak.items()
                    if name == server and kind == mix and peak.get((peer, mix, round_))
                ]
                if found:
                    ratios.setdefault(mix, {})[f"{server}/{peer}"] = statistics.median(found)
    return ratios


def stall_text(bound: float | None) -> str:
    """A stall's histogram bucket (its upper bound in ms) as the report shows it."""
    if bound is None:
        return "-"
    return "> 2.5 s" if bound == float("inf") else f"<= {bound:g} ms"


def workers_table(workers: dict[str, Any], mixes: Sequence[str]) -> list[str]:
    out = [
        "",
        f"## Workers (aiwall alone, {workers['names']:,} synthetic names)",
        "",
        "| workers | processes | start to every worker answering | PSS, list loaded"
        " | PSS after the runs | cached-mix hit ratio | "
        + " | ".join(f"{mix} qps" for mix in mixes)
        + " |",
        "|---:|---:|---:|---:|---:|---:|" + "---:|" * len(mixes),
    ]
    for row in workers["rows"]:
        ratio = row["cached_hit_ratio"]
        out.append(
            f"| {row['workers']} | {row['processes']} | {row['start_seconds']:.2f} s"
            f" ({row['start_ratio']:.2f}x) | {row['pss_idle_kb'] / 1024:.1f} MB"
            f" ({row['pss_idle_ratio']:.2f}x) | {row['pss_kb'] / 1024:.1f} MB"
            f" ({row['pss_ratio']:.2f}x) | {'-' if ratio is None else f'{ratio:.1%}'} | "
            + " | ".join(fmt(row["qps"].get(mix), 0) for mix in mixes)
            + " |"
        )
    return out


def cpu_table(summary: dict[str, Any], servers: Sequence[str], mixes: Sequence[str]) -> list[str]:
    """The server's CPU per answer at full load, split between its own code (user) and
    the kernel's work for its system calls: where a gap to the reference comes from."""
    reference = summary.get(REFERENCE, {})
    rows: list[str] = []
    for mix in mixes:
        peer = reference.get(mix, {})
        peer_user = peer.get("user_us_at_peak")
        peer_total = None if peer_user is None else peer_user + peer["kernel_us_at_peak"]
        for server in servers:
            row = summary.get(server, {}).get(mix)
            if row is None or row.get("user_us_at_peak") is None:
                continue
            user, kernel = row["user_us_at_peak"], row["kernel_us_at_peak"]
            rows.append(
                f"| {mix} | {server} | {fmt(user, 1)} µs | {fmt(kernel, 1)} µs |"
                f" {fmt(user + kernel, 1)} µs | {_times(user, peer_user)} |"
                f" {_times(user + kernel, peer_total)} |"
                f" {_us(row.get('user_us_at_half'))} | {_us(row.get('kernel_us_at_half'))} |"
            )
    if not rows:
        return []
    return [
        "",
        "## CPU per answer",
        "",
        f"| mix | server | user | kernel | total | user vs {REFERENCE} | total vs {REFERENCE}"
        " | user at 50% | kernel at 50% |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "From the server's utime and stime over each run, divided by the answers it gave;"
        " the median of the rounds; at full load unless marked 50% (the half-load runs)."
        " User: the server's own code. Kernel: its system calls and the network stack's"
        " work for them, which grows when the peers sleep between datagrams (the wake-up"
        " cost above). At half load fewer datagrams wait per wake-up of the server, so what"
        " a wake-up costs (a turn of the event loop, for a Python server) is shared by fewer"
        " answers.",
    ]


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} µs"


def _times(mine: float, theirs: float | None) -> str:
    return "-" if not theirs else f"{mine / theirs:.2f}x"


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    summary = results["summary"]
    out = [
        *_header(meta),
        *_throughput_table(summary, results["ratios"], meta["servers"], meta["mixes"]),
        "",
        "vs unbound / vs dnsmasq: the median over the rounds of each round's qps ratio."
        " Worst loop stall at 50%: the upper bound of the highest bucket of"
        " aiwall_loop_stall_seconds that a half-load run reached.",
        *cpu_table(summary, meta["servers"], meta["mixes"]),
        *_memory_table(results["servers"]),
    ]
    if results["list_scale"]:
        out += _scale_table(results["list_scale"])
    if results.get("workers"):
        out += workers_table(results["workers"], meta["mixes"])
    out += _pauses_table(results.get("pauses") or {})
    if results["targets"]:
        out += _targets_table(results["targets"])
    if results["warnings"]:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in results["warnings"]]
    return "\n".join(out) + "\n"


def _header(meta: dict[str, Any]) -> list[str]:
    """The title and what was measured, with what, and how."""
    return [
        "# aiwall benchmark",
        "",
        f"- aiwall: `{meta['aiwall_commit']}`",
        f"- peers: {', '.join(meta['versions'].values())}",
        f"- {meta['date']}, {meta['host']}",
        f"- block list: {meta['catalog_names']} catalog names + {meta['names']:,} synthetic names;"
        f" {meta['rounds']} rounds x {meta['duration']:g} s per run, servers alternating;"
        f" dnsperf -c {DNSPERF_CLIENTS} -T 1 -q {DNSPERF_OUTSTANDING} on loopback;"
        f" aiwall workers: {meta['aiwall_workers'] or 'config default'},"
        + "".join(f" {key}: {json.dumps(value)}," for key, value in meta["aiwall_set"].items())
        + f" Unbound num-threads: {meta['unbound_threads']}"
        + (f"; CPU pinning server:loadgen {':'.join(meta['pin'])}" if meta["pin"] else ""),
        "- qps: median of the rounds at full load (min-max in brackets); p50/p99: at 50 % of"
        " the server's own peak (dnsperf -Q), median of the rounds; a lost query counts as"
        f" {meta['dnsperf']['timeout']:g} s. A query is lost when no answer came within that"
        " time: on loopback, the kernel dropped it at the server's full receive queue"
        " (RcvbufErrors in /proc/net/snmp; Unbound as configured here keeps the system's"
        " default queue, about 256 questions).",
        f"- other processes on the machine used up to {meta['other_cores_max']:.2f} cores"
        " during a kept run (0 = a quiet machine);"
        f" {meta['discarded_runs']} noisy runs were measured again",
        *filter(None, [describe(meta.get("core_floor")), describe_wakeups(meta.get("wakeups"))]),
    ]


def _throughput_table(
    summary: dict[str, Any],
    ratios: dict[str, Any],
    servers: Sequence[str],
    mixes: Sequence[str],
) -> list[str]:
    """Each server's qps at full load and latency at half load, mix by mix."""
    rows: list[str] = []
    for mix in mixes:
        ratio = ratios.get(mix, {})
        for server in servers:
            row = summary.get(server, {}).get(mix)
            if row is None:
                continue
            versus = [ratio.get(f"{server}/{peer}") for peer in PEERS]
            rows.append(
                f"| {mix} | {server} | {fmt(row['qps_median'], 0)} |"
                f" [{fmt(row['qps_min'], 0)}-{fmt(row['qps_max'], 0)}] |"
                + "".join(f" {'-' if v is None else fmt(v) + 'x'} |" for v in versus)
                + f" {fmt(row['server_cores_at_peak'])} cores |"
                f" {fmt(row['avg_latency_at_peak_ms'])} ms | {fmt(row['p50_ms'])} ms |"
                f" {fmt(row['p99_ms'])} ms | {stall_text(row.get('stall_at_half_ms'))} |"
                f" {row['lost_at_peak'] + row['lost_at_half']} |"
            )
    return _section(
        "Throughput and latency",
        "| mix | server | qps (median) | [min-max] | vs unbound | vs dnsmasq"
        " | server CPU at peak | avg latency at peak | p50 at 50% | p99 at 50%"
        " | worst loop stall at 50% | lost |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        rows,
    )


def _memory_table(servers: dict[str, Any]) -> list[str]:
    """Each server's start time and memory with the full list loaded."""
    rows: list[str] = []
    for server, info in servers.items():
        stall = info.get("loop_stall_max_ms")
        rows.append(
            f"| {server} | {info['version']} | {info['processes']} |"
            f" {info['start_seconds']:.2f} s |"
            f" {info['peak_rss_kb'] / 1024:.1f} MB | {info['rss_kb'] / 1024:.1f} MB |"
            f" {'-' if stall is None else fmt(stall) + ' ms'} |"
        )
    return _section(
        "Start and memory (with the full list loaded)",
        "| server | version | processes | start to answering | peak RSS (VmHWM) after all runs"
        " | RSS at end | worst event-loop stall, all runs (full load included) |",
        "|---|---|---:|---:|---:|---:|---:|",
        rows,
    )


def _scale_table(scale: list[dict[str, Any]]) -> list[str]:
    """aiwall's start, memory and blocked qps by the size of its list."""
    rows = [
        f"| {row['extra_names']:,} | {row['start_seconds']:.2f} s |"
        f" {row['rss_kb'] / 1024:.1f} MB | {row['peak_rss_kb'] / 1024:.1f} MB |"
        f" {fmt(row['blocked_qps'], 0)} |"
        for row in scale
    ]
    return _section(
        "List scale (aiwall alone)",
        "| extra names | start to answering | RSS after load | VmHWM after load | blocked qps |",
        "|---:|---:|---:|---:|---:|",
        rows,
    )


def _pauses_table(pauses: dict[str, Any]) -> list[str]:
    """Each variant's worst loop stall in each window of the pauses phase."""
    if not pauses:
        return []
    windows = list(next(iter(pauses.values()))["windows"])
    rows = []
    for variant, found in pauses.items():
        cells = " | ".join(stall_text(found["windows"][name]["stall_le_ms"]) for name in windows)
        lost = f"{found.get('lost', '-')} of {found.get('sent', '-')}"
        rows.append(f"| {variant} | {found['rate']:,} | {cells} | {lost} |")
    return _section(
        "Pauses: the worst loop stall while each happens, under a steady load",
        "| server | queries a second | " + " | ".join(windows) + " | lost |",
        "|---|---:|" + "---:|" * len(windows) + "---:|",
        rows,
    )


def _targets_table(checked: list[dict[str, Any]]) -> list[str]:
    """The targets, each with what was measured and whether it was met."""
    rows: list[str] = []
    for target in checked:
        unit = target["unit"]
        value = fmt(target["value"]) + (unit if unit == "x" else f" {unit}")
        rows.append(f"| {target['target']} | {value} | {_verdict(target)} |")
    return _section(
        "Targets (reported, never enforced)", "| target | measured | met |", "|---|---:|---|", rows
    )


def _verdict(target: dict[str, Any]) -> str:
    if target["met"] is None:
        return f"not measurable here: the core's own worst gap was {fmt(target['floor'])} ms"
    return "yes" if target["met"] else "NO"


def _section(title: str, head: str, rule: str, rows: list[str]) -> list[str]:
    """A section of the report: its heading, then a table of ``rows`` under ``head``."""
    return ["", f"## {title}", "", head, rule, *rows]
