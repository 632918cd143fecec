"""What answers queries in one process: the pipeline with its policy, and the listeners.

A single-process server has one data plane; with several workers, each worker process
has one, and the supervisor (which builds the policy and reads the config) tells them
when to switch: ``prepare`` builds everything a new version needs without touching the
running one, ``commit`` swaps it in with one assignment. The cache survives a switch
unless its own settings changed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from resolver.config import Config
from resolver.handlers.blocking import Attempts
from resolver.logs import setup_logging
from resolver.metrics import Metrics
from resolver.pipeline import Pipeline, ProcessParts, build_pipeline
from resolver.policy.catalog import Catalog, default_catalog_dir
from resolver.policy.catalog_files import load_catalog
from resolver.policy.explain import explain
from resolver.policy.groups import ClientGroups
from resolver.policy.loading import BuiltPolicy
from resolver.serve.connections import TcpConnections
from resolver.serve.encrypted import EncryptedListeners
from resolver.serve.fastpath import AuditRecord, FastPath
from resolver.serve.sockets import DnsSockets
from resolver.serve.stalls import LoopWatch
from resolver.serve.tcp import TcpConnection
from resolver.serve.transport import QueryRunner, UdpListener
from resolver.serve.xfr import ZoneService
from resolver.serve.young import YoungCollector

log = logging.getLogger(__name__)

# Answers in flight get this long to finish on shutdown; above an upstream timeout.
DRAIN_SECONDS = 3.0
# /readyz trusts a recent upstream answer instead of sending a probe on every poll.
READY_FRESHNESS = 30.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(slots=True)
class Prepared:
    """A version ready to be swapped in: its config, policy and (when the config
    changed) the pipeline built for it."""

    config: Config
    built: BuiltPolicy
    version: int
    pipeline: Pipeline | None = None


@dataclass(slots=True)
class _Listeners:
    udp: list[UdpListener] = field(default_factory=list)
    tcp: list[asyncio.Server] = field(default_factory=list)


class DataPlane:
    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        attempts: Attempts,
        parts: ProcessParts | None = None,
        runner: Callable[[Pipeline], QueryRunner] | None = None,
        audit: AuditRecord | None = None,
    ) -> None:
        """``parts``: what this process shares with others (the worker index, the health
        board, the rate-limit buckets); ``runner``: how queries reach the pipeline
        (a worker's runner relays the questions on connections whose names it does not
        own); ``audit``: where the fast path records blocked attempts (None: no audit
        trail)."""
        self.config = config
        self.metrics = metrics
        self._attempts = attempts
        self._parts = parts or ProcessParts()
        self._make_runner = runner or (lambda pipeline: QueryRunner(pipeline.head, metrics))
        self.pipeline: Pipeline | None = None
        self.catalog: Catalog | None = None
        self.version = 0
        self.dns_endpoints: list[Endpoint] = []
        self.runner: QueryRunner | None = None
        self._listeners = _Listeners()
        self._tcp_connections = TcpConnections(
            config.listen.tcp_max_connections,
            config.listen.tcp_idle_timeout,
            metrics.tcp_closed,
            metrics.tcp_connections,
        )
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._watch = LoopWatch(metrics)
        self._young = YoungCollector()
        self.fast = FastPath(metrics, self._group_of, audit)
        self.zones = ZoneService(config, metrics)  # the rpz: zones, read from their files
        self.encrypted = EncryptedListeners(config, metrics)  # listen.dot, listen.doh

    # --- versions ------------------------------------------------------------------

    def prepare(self, config: Config, built: BuiltPolicy, version: int) -> Prepared:
        """Everything a new version needs, built beside the running one."""
        prepared = Prepared(config, built, version)
        if self.pipeline is None or config != self.config:
            kept = None
            if self.pipeline is not None and config.cache == self.config.cache:
                kept = self.pipeline.cache.cache
            prepared.pipeline = build_pipeline(
                config, built.groups, self.metrics, kept, self._attempts, self._parts
            )
        return prepared

    def commit(self, prepared: Prepared) -> ClientGroups | None:
        """Swap the prepared version in; returns the policy it retired (None at first)."""
        retired = self.pipeline.blocking.groups if self.pipeline is not None else None
        if prepared.pipeline is not None:
            if prepared.config.logging != self.config.logging:
                setup_logging(prepared.config.logging)
            self.pipeline = prepared.pipeline
            if self.runner is not None:
                self.runner.head = self.pipeline.head
        assert self.pipeline is not None
        if prepared.config.rpz != self.config.rpz:
            self.zones.configure(prepared.config)
        self.config = prepared.config
        self.encrypted.reload(prepared.config)  # the certificate read again (SIGHUP, API)
        self.fast.clear()
        self.fast.enabled = prepared.config.ratelimit.rate == 0
        self.fast.blocker = self.pipeline.blocking
        self.fast.reserved = self.pipeline.ddr.names + self.zones.origins
        blocking = self.pipeline.blocking
        blocking.replace_groups(prepared.built.groups)
        blocking.on_expiry = self._policy_changed
        self.catalog = prepared.built.catalog
        self.version = prepared.version
        self.metrics.policy_in_force(prepared.version, prepared.built.fingerprint)
        self._policy_changed(blocking.groups)
        return retired

    def install(self, config: Config, built: BuiltPolicy, version: int) -> ClientGroups | None:
        return self.commit(self.prepare(config, built, version))

    def _group_of(self, client: str) -> object:
        assert self.pipeline is not None
        return self.pipeline.blocking.current().group_for(client)

    def _policy_changed(self, groups: ClientGroups) -> None:
        self.fast.clear()
        if self.pipeline is not None and groups is not self.pipeline.blocking.groups:
            log.warning("a temporary policy rule (until: ...) has expired; the next applies")
        self.metrics.set_list_sizes(groups.entries_by_source, groups.loaded_at)
        self._schedule_expiry(groups)

    def _schedule_expiry(self, groups: ClientGroups) -> None:
        """Switch to the next version when a temporary rule runs out even if no query
        comes (the blocking handler switches on its own at the first query after)."""
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        if groups.valid_until is not None and self.pipeline is not None:
            delay = max(groups.valid_until - time.time(), 0) + 0.01
            loop = asyncio.get_running_loop()
            self._expiry_timer = loop.call_later(delay, self.pipeline.blocking.current)

    # --- listeners -----------------------------------------------------------------

    async def listen(
        self,
        all_sockets: Sequence[DnsSockets],
        encrypted: Sequence[tuple[str, socket.socket]] = (),
    ) -> None:
        """Answer on the given sockets (this worker's UDP socket of each address), and
        DoT/DoH on ``encrypted`` (``serve.sockets.bind_encrypted``)."""
        assert self.pipeline is not None
        self.runner = runner = self._make_runner(self.pipeline)
        loop = asyncio.get_running_loop()
        index = self._parts.worker
        for sockets in all_sockets:
            assert sockets.tcp is not None
            tcp = await loop.create_server(
                lambda: TcpConnection(runner, self._tcp_connections, self.zones),
                sock=sockets.tcp,
                backlog=256,
            )
            udp = sockets.udp[index if len(sockets.udp) > 1 else 0]
            listener = UdpListener(
                udp, runner, wildcard=sockets.wildcard, fast=self.fast, zones=self.zones
            )
            listener.start(loop)
            self._listeners.udp.append(listener)
            self._listeners.tcp.append(tcp)
            self.dns_endpoints.append(Endpoint(sockets.host, sockets.port))
        await self.encrypted.start(encrypted, runner)
        self._watch.start(loop)
        self._young.start(loop)

    async def stop(self) -> None:
        """Stop taking queries, let the answers in flight reach their clients, close."""
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        self._watch.stop()
        self._young.stop()
        for listener in self._listeners.udp:
            listener.accepting = False
        for tcp in self._listeners.tcp:
            tcp.close()
        self.encrypted.stop_accepting()
        if self.runner is not None:
            await self.runner.drain(DRAIN_SECONDS)
        for listener in self._listeners.udp:
            # With several workers, this closes only this worker's copy of the socket.
            listener.close()
        self._tcp_connections.close_all()
        await self.encrypted.close()
        for tcp in self._listeners.tcp:
            await tcp.wait_closed()
        if self.pipeline is not None:
            await self.pipeline.forwarder.close()

    # --- what this process can say about itself -------------------------------------

    async def ready(self) -> tuple[bool, str]:
        if self.pipeline is None:
            return False, "starting"
        forwarder = self.pipeline.forwarder
        if time.monotonic() - forwarder.last_success < READY_FRESHNESS:
            return True, "ready"
        if await forwarder.probe():
            return True, "ready"
        return False, "no upstream answers"

    async def check(self, name: str, client: str) -> dict[str, object]:
        """The decision for ``name`` explained, as the policy in force decides it."""
        assert self.pipeline is not None
        catalog = self.catalog or await asyncio.to_thread(load_catalog, default_catalog_dir())
        return explain(self.pipeline.blocking.current(), catalog, name, client).as_dict()

    def stats(self) -> dict[str, object]:
        assert self.pipeline is not None
        blocked: dict[str, int] = {}
        for key, count in self.metrics.blocked.counts.items():
            service = str(key[0]) if isinstance(key, tuple) else ""
            blocked[service] = blocked.get(service, 0) + count
        paused = self.pipeline.blocking.paused_until - time.monotonic()
        groups = self.pipeline.blocking.current()
        return {
            "queries": sum(self.metrics.queries.counts.values()),
            "blocked": sum(blocked.values()),
            "blocked_by_service": dict(sorted(blocked.items(), key=lambda kv: -kv[1])),
            "reported": sum(self.metrics.reported.counts.values()),
            "cache_hits": self.metrics.cache_hits.value(),
            "policy_entries": sum(groups.entries_by_source.values()),
            "policy_version": self.version,
            "groups": [group.name for group in groups.all],
            "paused_seconds_left": max(round(paused), 0),
        }

    def pause(self, seconds: float) -> None:
        assert self.pipeline is not None
        self.pipeline.blocking.pause(seconds)
        self.fast.clear()  # blocked answers kept before must not outlive the change
