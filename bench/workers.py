"""aiwall with 1 and with 2 workers, side by side (issue 12): what a second worker costs
and what it buys.

For each worker count, in alternating order over the rounds, aiwall starts alone with
the big list (1M synthetic names by default) and HTTP on, and the phase measures:
- start: from the exec until every worker answers (``Servers.start_server``);
- qps of every mix at full load (the same dnsperf runs as the comparison);
- PSS, summed over the process tree (``/proc/PID/smaps_rollup``; unlike RSS, a page
  shared by the supervisor and its workers counts once in all), right after the start
  (the policy's cost) and after the runs (with what the load left: cached answers, the
  audit trail's backlog, the heap's high-water marks);
- the cache hit ratio of the cached mix, from aiwall's own counters (warm-up included:
  a server whose workers each filled a cache of their own would show it there).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.phase import Phase
from bench.servers import metric
from tests.peers.ports import free_port
from tests.peers.process import descendants


def pss_kb(pid: int) -> int:
    """Proportional set size of ``pid`` and its children, in KiB."""
    total = 0
    for member in descendants(pid):
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


class WorkersPhase(Phase):
    def run(self) -> dict[str, Any]:
        s = self.settings
        counts = s.worker_counts
        names = s.workers_names
        files: dict[str, Path | None] = {
            "blocked": self.load.blocked_queries(names, self.workdir / "workers-blocked.txt"),
            "cached": self.load.cached_queries(self.workdir / "workers-cached.txt"),
            "miss": None,
        }
        samples: dict[int, list[dict[str, Any]]] = {count: [] for count in counts}
        for round_ in range(1, s.rounds + 1):
            shift = (round_ - 1) % len(counts)
            for count in counts[shift:] + counts[:shift]:
                samples[count].append(self._one(round_, count, names, files))
        rows = [self._summary(count, samples[count]) for count in counts]
        base = rows[0]
        for row in rows:
            row["pss_idle_ratio"] = row["pss_idle_kb"] / base["pss_idle_kb"]
            row["pss_ratio"] = row["pss_kb"] / base["pss_kb"]
            row["start_ratio"] = row["start_seconds"] / base["start_seconds"]
        return {"names": names, "rows": rows}

    def _one(
        self, round_: int, count: int, names: int, files: dict[str, Path | None]
    ) -> dict[str, Any]:
        http = f"127.0.0.1:{free_port()}"
        overrides = {"workers": count, "listen": {"http": http}}
        server = self.servers.start_server("aiwall", names, f"workers{count}-r{round_}", overrides)
        print(f"  {count} worker(s): answering after {server.start_seconds:.2f} s", flush=True)
        sample: dict[str, Any] = {
            "start_seconds": server.start_seconds,
            # The list loaded, the start probes answered, no load yet: the policy's cost.
            "pss_idle_kb": pss_kb(server.proc.pid),
            "qps": {},
        }
        for mix in self.settings.mixes:
            before = self._cache_counts(http)
            result = self.load.measure(
                round_, server, mix, f"workers-{count}", files[mix], self.settings.duration
            )
            sample["qps"][mix] = result.qps
            if mix == "cached":
                after = self._cache_counts(http)
                hits, misses = after[0] - before[0], after[1] - before[1]
                sample["cached_hit_ratio"] = hits / (hits + misses) if hits + misses else None
        sample["pss_kb"] = pss_kb(server.proc.pid)
        sample["processes"] = len(descendants(server.proc.pid))
        self.procs.stop(server.proc)
        return sample

    @staticmethod
    def _cache_counts(http: str) -> tuple[float, float]:
        return (
            metric(http, "aiwall_cache_hits_total"),
            metric(http, "aiwall_cache_misses_total"),
        )

    @staticmethod
    def _summary(count: int, samples: list[dict[str, Any]]) -> dict[str, Any]:
        ratios = [s["cached_hit_ratio"] for s in samples if s.get("cached_hit_ratio") is not None]
        mixes = samples[0]["qps"].keys()
        return {
            "workers": count,
            "processes": samples[0]["processes"],
            "start_seconds": statistics.median(s["start_seconds"] for s in samples),
            "pss_idle_kb": statistics.median(s["pss_idle_kb"] for s in samples),
            "pss_kb": statistics.median(s["pss_kb"] for s in samples),
            "qps": {mix: statistics.median(s["qps"][mix] for s in samples) for mix in mixes},
            "cached_hit_ratio": statistics.median(ratios) if ratios else None,
            "runs": samples,
        }
