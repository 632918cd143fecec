"""The two parts of a run: the comparison of the servers over alternating rounds, and
aiwall's start time, memory and blocked throughput as its list grows."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.load import Load
from bench.pauses import PausesPhase
from bench.report import Journal
from bench.servers import Running, Servers, metric
from bench.settings import Settings
from bench.system import Processes
from bench.workers import WorkersPhase
from tests.peers.process import descendants, memory_kb


class Bench:
    """One benchmark run: the servers it starts, the load it puts on them, what it found."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.procs = Processes()
        self.journal = Journal()
        self.servers = Servers(settings, workdir, self.procs, self.journal)
        self.load = Load(settings, workdir, self.servers, self.journal)
        self.workers = WorkersPhase(settings, workdir, self.servers, self.load, self.procs)
        self.pauses = PausesPhase(settings, workdir, self.servers, self.load, self.procs)

    def compare(self) -> dict[str, Any]:
        s = self.settings
        servers: dict[str, Running] = {}
        for name in s.servers:
            print(
                f"starting {name} with {len(self.servers.catalog) + s.names:,} blocked names",
                flush=True,
            )
            servers[name] = self.servers.start_server(name, s.names, "main")
            print(f"  answering after {servers[name].start_seconds:.2f} s", flush=True)
        files = {
            "blocked": self.load.blocked_queries(s.names, self.workdir / "blocked.txt"),
            "cached": self.load.cached_queries(self.workdir / "cached.txt"),
        }
        for round_ in range(1, s.rounds + 1):
            # Rotate who goes first, so no server always runs right after another.
            shift = (round_ - 1) % len(s.servers)
            order = [servers[n] for n in (s.servers[shift:] + s.servers[:shift])]
            for mix in s.mixes:
                peaks: dict[str, float] = {}
                for server in order:
                    result = self.load.measure(
                        round_, server, mix, "peak", files.get(mix), s.duration
                    )
                    peaks[server.name] = result.qps
                # Latency at half of each server's own peak: a server at 100 % only
                # shows its queue (dnsperf keeps 200 queries outstanding).
                for server in order:
                    rate = peaks[server.name] * 0.5
                    if rate < 1:
                        self.journal.warn(f"{server.name} {mix}: no peak, no latency run")
                        continue
                    self.load.measure(
                        round_, server, mix, "half", files.get(mix), s.latency_duration, rate
                    )
        info: dict[str, Any] = {}
        for name, server in servers.items():
            info[name] = {
                "version": server.version,
                # The event loop's worst stall over every run (issue 13: at most 5 ms).
                "loop_stall_max_ms": (
                    metric(server.http, "aiwall_loop_stall_max_seconds") * 1000
                    if server.http
                    else None
                ),
                "start_seconds": round(server.start_seconds, 3),
                # aiwall with workers runs several; their memory is summed.
                "processes": len(descendants(server.proc.pid)),
                **memory_kb(server.proc.pid),
            }
            self.procs.stop(server.proc)
        return info

    # -- list scale --

    def list_scale(self) -> list[dict[str, Any]]:
        s = self.settings
        sizes = s.scale_sizes
        samples: dict[int, dict[str, list[float]]] = {
            n: {"start_seconds": [], "rss_kb": [], "peak_rss_kb": [], "blocked_qps": []}
            for n in sizes
        }
        files = {
            n: self.load.blocked_queries(n, self.workdir / f"scale-blocked-{n}.txt") for n in sizes
        }
        for round_ in range(1, s.rounds + 1):
            shift = (round_ - 1) % len(sizes)
            for size in sizes[shift:] + sizes[:shift]:
                server = self.servers.start_server("aiwall", size, f"scale-{size}-r{round_}")
                # Right after the first answer: the list is loaded, no query load yet.
                memory = memory_kb(server.proc.pid)
                result = self.load.measure(
                    round_, server, "blocked", f"scale-{size}", files[size], s.duration
                )
                self.procs.stop(server.proc)
                sample = samples[size]
                sample["start_seconds"].append(server.start_seconds)
                sample["rss_kb"].append(memory["rss_kb"])
                sample["peak_rss_kb"].append(memory["peak_rss_kb"])
                sample["blocked_qps"].append(result.qps)
                print(
                    f"  {size:>9,} names: answering after {server.start_seconds:.2f} s, "
                    f"RSS {memory['rss_kb'] / 1024:.0f} MB",
                    flush=True,
                )
        return [
            {
                "extra_names": size,
                "total_names": size + len(self.servers.catalog),
                **{f"{key}_runs": values for key, values in samples[size].items()},
                **{key: statistics.median(values) for key, values in samples[size].items()},
            }
            for size in sizes
        ]
