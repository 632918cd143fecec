"""Benchmark aiwall against dnsmasq and Unbound with dnsperf, all on loopback.

The command line (``python bench/run.py``, ``make bench``) and one run from the start
to the report: results.json, results.md and results.png in --output-dir.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.charts import chart
from bench.report import markdown, summarise
from bench.rounds import Bench
from bench.servers import program_versions
from bench.settings import (
    AIWALL_VARIANTS,
    ALL_MIXES,
    ALL_SERVERS,
    DNSPERF_CLIENTS,
    DNSPERF_OUTSTANDING,
    OTHER_LOAD_WARNING,
    REPO,
    BenchError,
    Settings,
)
from bench.system import (
    cpu_list,
    ensure_packages,
    find_binary,
    pinned,
    raise_interrupt,
    run_tool,
    stay_off_the_server_core,
)
from bench.targets import targets
from tests.peers.process import memory_kb


def _choices(text: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    wrong = [v for v in values if v not in allowed]
    if wrong or not values:
        raise argparse.ArgumentTypeError(f"{what}: expected some of {','.join(allowed)}")
    return values


def _parser() -> argparse.ArgumentParser:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--names", type=int, help="synthetic blocked names (default 200000)")
    parser.add_argument("--duration", type=float, help="seconds per full-load run (default 10)")
    parser.add_argument(
        "--latency-duration", type=float, help="seconds per 50%%-load run (default duration/2)"
    )
    parser.add_argument("--rounds", type=int, help="rounds of alternating runs (default 3)")
    parser.add_argument("--mixes", default=",".join(ALL_MIXES))
    parser.add_argument("--servers", default=",".join(ALL_SERVERS))
    parser.add_argument("--output-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--scale-sizes",
        help="aiwall list-scale sizes, comma-separated, or 'none' (default 0,200000,1000000)",
    )
    parser.add_argument(
        "--miss-queries", type=int, help="unique names per cache-miss run (default 2000000)"
    )
    parser.add_argument("--blocked-queries", type=int, default=100_000)
    parser.add_argument("--cached-names", type=int, default=1000)
    parser.add_argument(
        "--aiwall-workers", type=int, help="add 'workers: N' to aiwall's config (default: absent)"
    )
    parser.add_argument(
        "--aiwall-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a key of aiwall's config, e.g. audit.enabled=false (value read as JSON,"
        " else a string); repeatable",
    )
    parser.add_argument(
        "--pin",
        metavar="SERVER_CPUS:LOADGEN_CPUS",
        help="taskset the servers and dnsperf+NSD apart: SERVER_CPUS:LOADGEN_CPUS, or"
        " 'none' (default 1:0 on a machine with 2 CPUs or more: one core per server)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="dnsperf -t: seconds before a query counts as lost, and its latency in p99"
        " (default 2; every time-limited run waits this long for its last answers)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="before each run, wait up to this many seconds for other jobs to leave the"
        " CPUs (default 30; 0 = never wait)",
    )
    parser.add_argument(
        "--aiwall-ref",
        default="worktree",
        help="the aiwall code to measure: 'worktree' (a copy of resolver/ taken at the start)"
        " or a git commit, e.g. HEAD (from git archive, untouched by uncommitted edits)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        help="measure a run again when other processes used over"
        f" {OTHER_LOAD_WARNING} cores during it (default 1)",
    )
    parser.add_argument(
        "--unbound-threads", type=int, default=1, help="Unbound num-threads (default 1)"
    )
    parser.add_argument(
        "--worker-counts",
        help="aiwall worker counts compared side by side, or 'none' (default 1,2)",
    )
    parser.add_argument(
        "--workers-names", type=int, help="synthetic names in the workers phase (default 1000000)"
    )
    parser.add_argument(
        "--pause-names",
        help="names in the pauses phase (stalls during flushes, scrapes, refreshes and"
        " reloads), or 'none' (default 1000000)",
    )
    parser.add_argument(
        "--pause-rate", type=int, help="queries a second in the pauses phase (default 5000)"
    )
    parser.add_argument("--keep-workdir", action="store_true", help="keep configs and logs")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds: 1000 names, 1 s runs, 1 round, tiny list-scale sizes",
    )
    return parser


def _ints(text: str) -> tuple[int, ...]:
    """A comma-separated list of integers, or none at all for 'none'."""
    return () if text == "none" else tuple(int(v) for v in text.split(","))


def _lists(
    parser: argparse.ArgumentParser, args: argparse.Namespace, sizes_text: str, counts_text: str
) -> tuple[tuple[int, ...], tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
    """The comma lists: worker counts, --mixes, --servers and list-scale sizes."""
    try:
        counts = _ints(counts_text)
        mixes = _choices(args.mixes, ALL_MIXES, "--mixes")
        servers = _choices(args.servers, ALL_SERVERS, "--servers")
        sizes = _ints(sizes_text)
    except (argparse.ArgumentTypeError, ValueError) as error:
        parser.error(str(error))
    return counts, mixes, servers, sizes


def _aiwall_set(
    parser: argparse.ArgumentParser, items: Sequence[str]
) -> tuple[tuple[str, Any], ...]:
    """--aiwall-set KEY=VALUE, each value read as JSON, else kept as a string."""
    aiwall_set: list[tuple[str, Any]] = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            parser.error(f"--aiwall-set: expected KEY=VALUE, got {item!r}")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        aiwall_set.append((key, value))
    return tuple(aiwall_set)


def _pin(parser: argparse.ArgumentParser, text: str | None, smoke: bool) -> tuple[str, str] | None:
    """--pin SERVER_CPUS:LOADGEN_CPUS; by default 1:0 on 2 CPUs or more (not with --smoke)."""
    if text is None and (os.cpu_count() or 1) >= 2 and not smoke:
        text = "1:0"
    if not text or text == "none":
        return None
    server_cpus, sep, load_cpus = text.partition(":")
    try:
        cpu_list(server_cpus)
        cpu_list(load_cpus)
    except ValueError:
        sep = ""
    if not sep:
        parser.error("--pin: expected SERVER_CPUS:LOADGEN_CPUS, e.g. 1:0")
    return (server_cpus, load_cpus)


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = _parser()
    args = parser.parse_args(argv)
    smoke = bool(args.smoke)

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if smoke else full)

    duration = float(pick(args.duration, 10.0, 1.0))
    sizes_text = pick(args.scale_sizes, "0,200000,1000000", "0,1000,2000")
    counts_text = pick(args.worker_counts, "1,2", "1,2")
    counts, mixes, servers, sizes = _lists(parser, args, sizes_text, counts_text)
    aiwall_set = _aiwall_set(parser, args.aiwall_set)
    pin = _pin(parser, args.pin, smoke)
    if not any(server in AIWALL_VARIANTS for server in servers):
        sizes = counts = ()
    # The pauses phase runs aiwall and aiwall-groups, when they are among --servers.
    pause_text = str(pick(args.pause_names, 1_000_000, 2000))
    if pause_text == "none" or not {"aiwall", "aiwall-groups"} & set(servers):
        pause_text = "0"
    return Settings(
        names=int(pick(args.names, 200_000, 1000)),
        duration=duration,
        latency_duration=float(pick(args.latency_duration, max(1.0, duration / 2), 0.5)),
        rounds=int(pick(args.rounds, 3, 1)),
        mixes=mixes,
        servers=servers,
        output_dir=args.output_dir,
        scale_sizes=tuple(dict.fromkeys(sizes)),
        miss_queries=int(pick(args.miss_queries, 2_000_000, 200_000)),
        blocked_queries=args.blocked_queries if not smoke else min(args.blocked_queries, 20_000),
        cached_names=args.cached_names,
        aiwall_workers=args.aiwall_workers,
        aiwall_set=aiwall_set,
        pin=pin,
        timeout=float(pick(args.timeout, 2.0, 0.5)),
        quiet_wait=float(pick(args.quiet_wait, 30.0, 0.0)),
        aiwall_ref=args.aiwall_ref,
        retries=int(pick(args.retries, 1, 0)),
        unbound_threads=args.unbound_threads,
        keep_workdir=args.keep_workdir,
        smoke=smoke,
        worker_counts=tuple(dict.fromkeys(counts)),
        workers_names=int(pick(args.workers_names, 1_000_000, 2000)),
        pause_names=int(pause_text),
        pause_rate=int(pick(args.pause_rate, 5_000, 500)),
    )


# How long the server's core is spun on before the runs (bench/floor.py), at least: as
# long as one server's half-load runs together, where the stall target is judged (a
# worst gap is found more often in a longer span: 8.05 ms in 10 s once, on a VM where
# 60 s of it had given 2.39 ms).
FLOOR_SECONDS = 10.0


def floor_seconds(settings: Settings) -> float:
    """How long ``core_floor`` spins: one server's half-load runs, or FLOOR_SECONDS."""
    if settings.smoke:
        return 1.0
    half_load = settings.rounds * len(settings.mixes) * settings.latency_duration
    return max(FLOOR_SECONDS, half_load)


def core_floor(settings: Settings) -> dict[str, Any]:
    """The gaps in the server's core (``bench/floor.py``), measured before anything of
    the benchmark runs there."""
    seconds = floor_seconds(settings)
    script = str(Path(__file__).with_name("floor.py"))
    command = pinned(settings, [sys.executable, script, f"{seconds:g}"], "server")
    floor: dict[str, Any] = json.loads(run_tool(command, timeout=seconds + 60).splitlines()[-1])
    return floor


# Round trips per figure of bench/wakeups.py.
WAKEUP_COUNT = 20_000


def wakeup_cost(settings: Settings) -> dict[str, Any]:
    """What waking a sleeping process on the load generator's core costs a process on
    the server's (``bench/wakeups.py``), measured before anything of the benchmark runs."""
    count = 2_000 if settings.smoke else WAKEUP_COUNT
    cpus = [re.split(r"[,-]", cpu)[0] for cpu in settings.pin] if settings.pin else []
    script = str(Path(__file__).with_name("wakeups.py"))
    command = [sys.executable, script, str(count), *cpus]
    wakeups: dict[str, Any] = json.loads(run_tool(command, timeout=300).splitlines()[-1])
    return wakeups


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="aiwall-bench-"))
    (workdir / "logs").mkdir()
    bench = Bench(settings, workdir)
    started = time.monotonic()
    try:
        ensure_packages(["dnsperf", "nsd", *settings.servers])
        if settings.pin and find_binary("taskset") is None:
            raise BenchError("--pin needs taskset (util-linux)")
        stay_off_the_server_core(settings)
        floor = core_floor(settings)
        print(f"server core: worst gap {floor['worst_ms']:.2f} ms in {floor['seconds']:g} s")
        wakeups = wakeup_cost(settings)
        print(
            f"waking a sleeping peer: {wakeups['sleeping_peer_us']:.1f} µs of CPU per datagram"
            f" ({wakeups['spinning_peer_us']:.1f} µs when it never sleeps)"
        )
        # Also without aiwall under test: its export gives everyone the catalog.
        bench.servers.aiwall_version = bench.servers.snapshot_aiwall()
        print(f"aiwall under test: {bench.servers.aiwall_version}", flush=True)
        bench.servers.load_catalog()
        upstream = bench.servers.start_upstream()
        print(f"upstream: {upstream.version} on 127.0.0.1:{upstream.port}", flush=True)
        servers = bench.compare()
        scale: list[dict[str, Any]] = []
        if settings.scale_sizes:
            print("list scale (aiwall)", flush=True)
            scale = bench.list_scale()
        workers: dict[str, Any] = {}
        if settings.worker_counts:
            print(f"workers (aiwall with {settings.workers_names:,} names)", flush=True)
            workers = bench.workers.run()
        pauses: dict[str, Any] = {}
        if settings.pause_names:
            print(f"pauses (aiwall with {settings.pause_names:,} names)", flush=True)
            pauses = bench.pauses.run()
        upstream_memory = memory_kb(upstream.proc.pid)
        busy = bench.journal.busy_starts
        if busy:
            bench.journal.warn(
                f"{len(busy)} runs started on a busy machine (up to"
                f" {max(busy):.2f} cores) after waiting {settings.quiet_wait:g} s"
            )
        bench.procs.stop_all()
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        print(f"(configs and logs kept in {workdir})", file=sys.stderr)
        settings.keep_workdir = True
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        bench.procs.stop_all()
        signal.signal(signal.SIGTERM, previous)
        if not settings.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    summary, ratios = summarise(bench.journal.runs, settings.servers, settings.mixes)
    results: dict[str, Any] = {
        "meta": {
            "aiwall_commit": bench.servers.aiwall_version,
            "aiwall_ref": settings.aiwall_ref,
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "host": f"{os.cpu_count()} CPUs, {platform.platform(terse=True)},"
            f" Python {platform.python_version()}",
            "versions": program_versions(servers, upstream.version),
            "names": settings.names,
            "catalog_names": len(bench.servers.catalog),
            "duration": settings.duration,
            "latency_duration": settings.latency_duration,
            "rounds": settings.rounds,
            "mixes": list(settings.mixes),
            "servers": list(settings.servers),
            "aiwall_workers": settings.aiwall_workers,
            "aiwall_set": dict(settings.aiwall_set),
            "unbound_threads": settings.unbound_threads,
            "pin": list(settings.pin) if settings.pin else None,
            "smoke": settings.smoke,
            "dnsperf": {
                "clients": DNSPERF_CLIENTS,
                "threads": 1,
                "outstanding": DNSPERF_OUTSTANDING,
                "timeout": settings.timeout,
            },
            "upstream_peak_rss_kb": upstream_memory["peak_rss_kb"],
            "core_floor": floor,
            "wakeups": wakeups,
            "other_cores_max": max(
                (r["other_cores"] for r in bench.journal.runs if not r["discarded"]), default=0.0
            ),
            "retries": settings.retries,
            "quiet_wait": settings.quiet_wait,
            "discarded_runs": sum(r["discarded"] for r in bench.journal.runs),
            "wall_seconds": round(time.monotonic() - started, 1),
        },
        "summary": summary,
        "ratios": ratios,
        "servers": servers,
        "list_scale": scale,
        "workers": workers,
        "pauses": pauses,
        "targets": targets(summary, ratios, scale, workers, floor["worst_ms"], pauses),
        "warnings": bench.journal.warnings,
        "runs": bench.journal.runs,
    }
    write_results(results, settings.output_dir)
    return 0


def write_results(results: dict[str, Any], out: Path) -> None:
    """results.json, results.md and results.png (when matplotlib is there) in ``out``,
    and the report on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    report = markdown(results)
    results["chart"] = "results.png" if chart(results, out / "results.png") else None
    if results["chart"] is None:
        report += "\n(no chart: matplotlib is not installed; `pip install matplotlib`)\n"
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(report)
    print()
    print(report)
    print(f"written: {out / 'results.json'}, {out / 'results.md'}", end="")
    print(f", {out / 'results.png'}" if results["chart"] else "")
