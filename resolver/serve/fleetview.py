"""The supervisor's workers asked together, and their answers made one.

Owns what the supervisor learns by asking every worker over the control channel
(``serve.channel``): the merged metrics and stats, which never go down (a dead worker's
last values are kept, ``serve.merge``), with the supervisor's own families (workers
configured, restarts); whether all are ready; a name checked by the first that answers;
a pause that reaches all of them or none; and a new version of the policy switched on
all of them or on none (``prepare`` on every worker, then ``commit``, else ``abort``).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from resolver.config import Config
from resolver.policy.published import Published
from resolver.serve.channel import ChannelClosed, RemoteError
from resolver.serve.fleet import Fleet
from resolver.serve.merge import MergedMetrics, MergedStats

# A scrape, /readyz or /api/stats asks every worker with this deadline; a worker that
# misses it is taken at its last known values (metrics) or as not ready.
QUICK_TIMEOUT = 2.0
# Loading a new version of the policy: a million-name table mapped and unpickled.
PREPARE_TIMEOUT = 120.0


class FleetView:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._registry = CollectorRegistry()
        self._restarts = Counter(
            "aiwall_worker_restarts_total",
            "Worker processes restarted after they died.",
            registry=self._registry,
        )
        Gauge("aiwall_workers", "Worker processes configured.", registry=self._registry).set(
            fleet.count
        )
        self._merged = MergedMetrics()
        self._stats = MergedStats()

    def died(self, index: int) -> None:
        """Its totals stay; a new worker takes its place (``Fleet.watch``)."""
        self._restarts.inc()
        self._merged.retire(index)
        self._stats.retire(index)

    async def _ask_all(
        self, op: str, payload: Any = None, wait: float = QUICK_TIMEOUT
    ) -> list[Any | BaseException]:
        return await self.fleet.ask_all(op, payload, wait)

    async def switch(
        self, config: Config, published: Published, slots: dict[str, int]
    ) -> tuple[bool, str]:
        """Every worker on version ``published``, or none: (switched, why not)."""
        payload = (published.version, published, config, slots)
        results = await self._ask_all("prepare", payload, PREPARE_TIMEOUT)
        failed = [
            f"worker {h.index}: {r}"
            for h, r in zip(self.fleet.handles, results, strict=True)
            if r is not True
        ]
        if failed:
            await self._ask_all("abort", published.version)
            return False, "; ".join(failed)
        await self._ask_all("commit", published.version, PREPARE_TIMEOUT)
        return True, ""

    async def exposition(self, own: CollectorRegistry) -> bytes:
        """The workers' metrics merged, then the supervisor's ``own``, then the fleet's."""
        answers = await self._ask_all("metrics")
        for handle, answer in zip(self.fleet.handles, answers, strict=True):
            if isinstance(answer, bytes):
                self._merged.update(handle.index, answer.decode())
        return self._merged.render(own) + generate_latest(self._registry)

    async def ready(self) -> tuple[bool, str]:
        answers = await self._ask_all("ready")
        for handle, answer in zip(self.fleet.handles, answers, strict=True):
            if not isinstance(answer, tuple) or not answer[0]:
                detail = answer[1] if isinstance(answer, tuple) else f"no answer ({answer!r})"
                return False, f"worker {handle.index}: {detail}"
        return True, "ready"

    async def check(self, name: str, client: str) -> dict[str, object]:
        for handle in self.fleet.handles:
            if handle.channel is None:
                continue
            try:
                answer: dict[str, object] = await handle.channel.request(
                    "check", (name, client), QUICK_TIMEOUT
                )
            except RemoteError as error:
                raise ValueError(str(error).split(": ", 1)[-1]) from None
            except (TimeoutError, ChannelClosed):
                continue
            return answer
        raise ValueError("no worker answered")

    async def stats(self, version: int, audit_degraded: list[str]) -> dict[str, object]:
        """The counts since start of every worker, living or dead, and what the first
        that answers says of the policy; ``version``: the supervisor's."""
        answers = await self._ask_all("stats")
        current = []
        for handle, answer in zip(self.fleet.handles, answers, strict=True):
            if isinstance(answer, dict):
                self._stats.update(handle.index, answer)
                current.append(answer)
        first = current[0] if current else {}
        return {
            **self._stats.totals(),
            "policy_entries": first.get("policy_entries", 0),
            "groups": first.get("groups", []),
            "paused_seconds_left": first.get("paused_seconds_left", 0),
            "policy_version": version,
            "worker_policy_versions": [a.get("policy_version") for a in current],
            "workers_answering": len(current),
            "audit_degraded": audit_degraded,
        }

    async def pause(self, seconds: float) -> list[str]:
        """Blocking off for ``seconds`` on every worker (0: back on), else on none: the
        workers that did not answer, once blocking is back on wherever it reached."""
        answers = await self._ask_all("pause", seconds)
        failed = [
            f"worker {h.index}"
            for h, a in zip(self.fleet.handles, answers, strict=True)
            if a is not True
        ]
        if failed:
            # All or none: blocking goes back on wherever the pause did reach.
            await self._ask_all("pause", 0)
        return failed
