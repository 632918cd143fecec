"""One view of the upstreams for every worker: the supervisor probes, the workers read.

Each upstream the config names gets a slot on the health board (``resolver.shared``),
kept for the life of the server (a reload may add upstreams, never renumber them). A
worker whose question to an upstream fails tells the supervisor (``suspect``); the
supervisor's own forwarder, which answers no client, then probes it (RFC 8767's
"failure recheck" spirit: one probe, not one per worker) and posts the verdict on the
board. A genuine answer seen by a worker while the board says dead (``revived``)
brings it back at once.
"""

from __future__ import annotations

from resolver.config import Config
from resolver.metrics import Metrics
from resolver.pipeline import upstream_servers
from resolver.shared import HealthBoard
from resolver.upstream.forwarder import Forwarder, Upstream


def upstreams_of(config: Config) -> list[Upstream]:
    """Every upstream the config names, the conditional zones' included, once each."""
    servers = list(upstream_servers(config.upstream.servers))
    for specs in config.upstream.conditional.values():
        servers.extend(upstream_servers(specs))
    return list(dict.fromkeys(servers))


class SharedUpstreams:
    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.board = HealthBoard()
        self.slots: dict[str, int] = {}
        self._metrics = metrics
        self._config = config
        self._prober: Forwarder | None = None
        self.assign(config)

    def assign(self, config: Config) -> dict[str, int]:
        """A slot for every upstream ``config`` names; all the slots (label -> slot)."""
        for upstream in upstreams_of(config):
            self.slots.setdefault(upstream.label, len(self.slots))
        return dict(self.slots)

    def start(self) -> None:
        """Begin probing (in the running event loop)."""
        self._prober = self._make_prober(self._config)

    async def follow(self, config: Config) -> None:
        """A reload: probe the upstreams of ``config`` from now on."""
        if upstreams_of(config) != upstreams_of(self._config) and self._prober is not None:
            await self._prober.close()
            self._prober = self._make_prober(config)
        self._config = config

    def suspect(self, label: str) -> None:
        if self._prober is not None:
            self._prober.suspect(label)

    def revived(self, label: str) -> None:
        if self._prober is not None:
            self._prober.revived(label)

    async def close(self) -> None:
        if self._prober is not None:
            await self._prober.close()

    def _make_prober(self, config: Config) -> Forwarder:
        self.assign(config)

        def posted(server: Upstream, up: bool) -> None:
            self.board.set_up(self.slots[server.label], up)

        servers = tuple(upstreams_of(config))
        ca_file = config.upstream.ca_path(config.base_dir)
        return Forwarder(
            servers, config.upstream.timeout, self._metrics, on_change=posted, ca_file=ca_file
        )
