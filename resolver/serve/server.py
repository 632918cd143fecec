"""The running server: load the policy, open the listeners, reload, shut down cleanly.

The order of start-up is the fail-closed guarantee: the policy is loaded before any DNS
port opens, so there is no moment in which a banned name is forwarded. Signals are
taken before start-up begins (by the caller); a reload asked for while starting is
applied as soon as the server serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import generate_latest

from resolver.audit.trail import AuditLog
from resolver.config import RESTART_KEYS, Config, ConfigError, HttpEndpoint, load_config
from resolver.dns.model import Query
from resolver.logs import setup_logging
from resolver.metrics import Metrics
from resolver.pipeline import Pipeline, build_pipeline
from resolver.policy.catalog import Catalog, default_catalog_dir
from resolver.policy.catalog_files import load_catalog
from resolver.policy.explain import explain
from resolver.policy.groups import ClientGroups
from resolver.policy.loading import BuiltPolicy, PolicyError, load_policy, retire
from resolver.policy.source import PolicySource
from resolver.serve.http import StatusServer
from resolver.serve.sockets import DnsSockets, bind_dns
from resolver.serve.transport import (
    QueryRunner,
    TcpConnection,
    TcpConnections,
    UdpListener,
)

__all__ = ["Endpoint", "PolicyError", "Server", "load_policy", "serve_until_stopped"]

log = logging.getLogger(__name__)

# Answers in flight get this long to finish on shutdown; above an upstream timeout.
DRAIN_SECONDS = 3.0
# /readyz trusts a recent upstream answer instead of sending a probe on every poll.
READY_FRESHNESS = 30.0


def _check_reloadable(running: Config, new: Config) -> None:
    """Sockets and processes are set up once, at start: a reload cannot move them."""
    for key in RESTART_KEYS:
        if getattr(new, key) != getattr(running, key):
            raise ConfigError(f"{key}: changed, which takes a restart; nothing was reloaded")


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int


def _shown(endpoint: Endpoint) -> str:
    return (
        f"[{endpoint.host}]:{endpoint.port}"
        if ":" in endpoint.host
        else (f"{endpoint.host}:{endpoint.port}")
    )


class Server:
    def __init__(
        self,
        config: Config,
        metrics: Metrics | None = None,
        catalog_dir: Path | None = None,
        *,
        config_path: Path | None = None,
        adjust: Callable[[Config], Config] = lambda config: config,
        sockets: Sequence[DnsSockets] | None = None,
        worker: int = 0,
    ) -> None:
        self.config = config
        # A reload reads this file again (None: started without one, lists only), and
        # passes what it read through ``adjust`` (a worker's own changes to the config).
        self._config_path = config_path
        self._adjust = adjust
        # Bound by the supervisor for its workers (``worker`` picks this one's UDP
        # sockets); None: bound here, at start.
        self._given_sockets = sockets
        self._worker = worker
        self._reload_lock = asyncio.Lock()
        self._api_token = config.api_token()
        self.metrics = metrics if metrics is not None else Metrics()
        self._catalog_dir = catalog_dir
        self.pipeline: Pipeline | None = None
        self.catalog: Catalog | None = None
        self.dns_endpoints: list[Endpoint] = []
        self.http_endpoint: Endpoint | None = None
        self._runner: QueryRunner | None = None
        self._udp_listeners: list[UdpListener] = []
        self._tcp: list[asyncio.Server] = []
        self._tcp_connections = TcpConnections(
            config.listen.tcp_max_connections, config.listen.tcp_idle_timeout, self.metrics
        )
        self._status: StatusServer | None = None
        self.audit = AuditLog(
            config.audit, config.privacy, config.state_dir, self.metrics, config.base_dir
        )
        self.source = PolicySource(config, self.metrics, catalog_dir)
        self._background: set[asyncio.Task[object]] = set()
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._starting = True
        self._reload_wanted = False

    # --- start ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.source.fetch_missing()
        built = self.source.build(starting=True)
        retire(None)
        self.audit.start()
        self.pipeline = build_pipeline(
            self.config, built.groups, self.metrics, attempts=self.record_attempt
        )
        self._install_policy(built)
        self._runner = QueryRunner(self.pipeline.head, self.metrics)
        loop = asyncio.get_running_loop()
        # The policy is in force; only now may a DNS port open.
        for sockets in self._given_sockets or bind_dns(self.config.listen.dns):
            await self._listen_dns(loop, sockets)
        if self.config.listen.http is not None:
            await self._start_http(self.config.listen.http)
        self.source.start_refreshing(self.reload_lists)
        log.info(
            "serving DNS on %s, HTTP on %s, %d policy entries",
            ", ".join(_shown(e) for e in self.dns_endpoints),
            _shown(self.http_endpoint) if self.http_endpoint else "-",
            sum(built.groups.entries_by_source.values()),
        )
        self._starting = False
        if self._reload_wanted:
            log.info("applying the reload asked for during start-up")
            self.request_reload()

    async def _start_http(self, endpoint: HttpEndpoint) -> None:
        self._status = StatusServer(self)
        bound = await self._status.start(endpoint.host, endpoint.port)
        self.http_endpoint = Endpoint(*bound)

    async def _listen_dns(self, loop: asyncio.AbstractEventLoop, sockets: DnsSockets) -> None:
        assert self._runner is not None
        runner = self._runner
        assert sockets.tcp is not None
        tcp = await loop.create_server(
            lambda: TcpConnection(runner, self._tcp_connections), sock=sockets.tcp, backlog=256
        )
        udp = sockets.udp[self._worker if len(sockets.udp) > 1 else 0]
        listener = UdpListener(udp, runner, wildcard=sockets.wildcard)
        listener.start(loop)
        self._udp_listeners.append(listener)
        self._tcp.append(tcp)
        self.dns_endpoints.append(Endpoint(sockets.host, sockets.port))

    # --- the policy ----------------------------------------------------------------

    def _install_policy(self, built: BuiltPolicy) -> None:
        assert self.pipeline is not None
        blocking = self.pipeline.blocking
        blocking.replace_groups(built.groups)
        blocking.on_expiry = self._on_expiry
        self.catalog = built.catalog
        self._policy_changed(blocking.groups)

    def _policy_changed(self, groups: ClientGroups) -> None:
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
            blocking = self.pipeline.blocking
            loop = asyncio.get_running_loop()
            self._expiry_timer = loop.call_later(delay, blocking.current)

    def _on_expiry(self, groups: ClientGroups) -> None:
        log.warning("a temporary policy rule (until: ...) has expired; the next policy applies")
        self._policy_changed(groups)

    # --- reload --------------------------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP: read the config file and every list again, as POST /api/reload does.
        Signal handlers cannot await: the reload runs in the background; during start-up
        it waits until the server serves."""
        if self._starting:
            self._reload_wanted = True
            log.info("reload asked for during start-up: it follows once the server serves")
            return
        task = asyncio.get_running_loop().create_task(self.reload())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload_lists(self) -> bool:
        """Rebuild the policy from the running config (a remote list changed)."""
        accepted, _ = await self.reload(reread_config=False)
        return accepted

    async def reload(self, *, reread_config: bool = True) -> tuple[bool, str]:
        """Read the config file again (when started with one) and every list, and swap the
        new settings and policy in whole; on any error keep the running ones and say why.

        The build runs in a thread, so answering goes on meanwhile (a million-name list
        takes seconds to parse); the swap itself happens on the event loop at once.
        """
        assert self.pipeline is not None
        assert self._runner is not None
        async with self._reload_lock:
            try:
                config = self.config
                if reread_config and self._config_path is not None:
                    config = self._adjust(await asyncio.to_thread(load_config, self._config_path))
                    _check_reloadable(self.config, config)
                source = self.source.for_config(config)
                token = config.api_token()
                built = await asyncio.to_thread(source.build, starting=False)
            except (ConfigError, PolicyError) as error:
                log.error("reload rejected, keeping the running config and policy: %s", error)
                self.metrics.reloads.labels("rejected").inc()
                return False, f"reload rejected: {error}"
            retired = self.pipeline.blocking.groups
            if config != self.config:
                self._apply(config, source, built.groups)
            self._install_policy(built)
            self._api_token = token
            await asyncio.to_thread(retire, retired)
            self.metrics.reloads.labels("success").inc()
            entries = sum(built.groups.entries_by_source.values())
            log.info("reloaded: %d policy entries", entries)
            detail = f"reloaded: {entries} policy entries"
            return True, "; ".join([detail, *built.warnings])

    def _apply(self, config: Config, source: PolicySource, groups: ClientGroups) -> None:
        """Swap in a whole new pipeline built from a changed config. Queries already in it
        finish on the old one; the cache is kept unless its own settings changed."""
        assert self.pipeline is not None
        assert self._runner is not None
        kept = self.pipeline.cache.cache if config.cache == self.config.cache else None
        self.pipeline = build_pipeline(
            config, groups, self.metrics, kept, attempts=self.record_attempt
        )
        self._runner.head = self.pipeline.head
        if config.logging != self.config.logging:
            setup_logging(config.logging)
        if source is not self.source:
            self.source.stop()
            self.source = source
            source.start_refreshing(self.reload_lists)
        self.config = config

    # --- control operations (HTTP API) ---------------------------------------------

    async def exposition(self) -> bytes:
        return generate_latest(self.metrics.registry)

    def api_token(self) -> str:
        return self._api_token

    async def check(self, name: str, client: str) -> dict[str, object]:
        assert self.pipeline is not None
        catalog = self.catalog or await asyncio.to_thread(load_catalog, default_catalog_dir())
        return explain(self.pipeline.blocking.current(), catalog, name, client).as_dict()

    async def stats(self) -> dict[str, object]:
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
            "groups": [group.name for group in groups.all],
            "paused_seconds_left": max(round(paused), 0),
            # The sinks that cannot be written now, with why (DNS goes on regardless).
            "audit_degraded": self.audit.degraded,
        }

    async def pause(self, minutes: float) -> tuple[bool, str]:
        """Blocking off for a while: bounded by api.max_pause_minutes, logged, and
        audited; 0 minutes resumes blocking at once."""
        assert self.pipeline is not None
        limit = self.config.api.max_pause_minutes
        if not 0 <= minutes <= limit:
            return False, f"minutes must be from 0 to {limit:g} (api.max_pause_minutes)"
        self.pipeline.blocking.pause(minutes * 60)
        log.warning("blocking paused for %g minutes through the API", minutes)
        if self.audit.enabled:
            self.audit.record("api", "-", f"{minutes:g} minutes", "-", "-", "-", "pause")
        return True, f"blocking paused for {minutes:g} minutes" if minutes else "blocking resumed"

    def record_attempt(
        self, query: Query, group: str, service: str, category: str, action: str
    ) -> None:
        """An attempt on a banned name: counted when it was let through, and queued for
        the audit trail either way (the audit log's own thread writes it)."""
        self.metrics.count_attempt(query, group, service, category, action)
        if self.audit.enabled:
            self.audit.record(
                query.client, group, query.qname, query.qtype, service, category, action
            )

    async def ready(self) -> tuple[bool, str]:
        if self.pipeline is None:
            return False, "starting"
        missing = self.source.missing
        if missing:
            # Serving without a list whose names would be blocked: no load balancer
            # should send clients here until it has a copy.
            return False, f"no copy yet of {', '.join(missing)} (never fetched)"
        forwarder = self.pipeline.forwarder
        if time.monotonic() - forwarder.last_success < READY_FRESHNESS:
            return True, "ready"
        if await forwarder.probe():
            return True, "ready"
        return False, "no upstream answers"

    # --- stop ----------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop accepting, let answers in flight finish, then close everything."""
        self.source.stop()
        for task in self._background:
            task.cancel()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        for listener in self._udp_listeners:
            listener.accepting = False
        for tcp in self._tcp:
            tcp.close()
        if self._runner is not None:
            await self._runner.drain(DRAIN_SECONDS)
        for listener in self._udp_listeners:
            # With a supervisor, this closes only this worker's copy of the socket.
            listener.close()
        self._tcp_connections.close_all()
        if self._status is not None:
            await self._status.stop()
        for tcp in self._tcp:
            await tcp.wait_closed()
        if self.pipeline is not None:
            await self.pipeline.forwarder.close()
        # Last, so the attempts answered while draining are written out too.
        await asyncio.to_thread(self.audit.close)


async def serve_until_stopped(
    server: Server, started: Callable[[], None] | None = None, name: str = ""
) -> None:
    """Run ``server`` until SIGTERM or SIGINT. The handlers (SIGHUP: reload) are installed
    before start-up begins, so a signal during a long start (a big list, a required list
    still downloading) is never the default action, which would kill the process."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.request_reload)
    starting = asyncio.ensure_future(server.start())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done():
        stopping.cancel()
        starting.result()  # a failed start raises here
        if started is not None:
            started()
        await stop.wait()
    else:
        log.info("stopped during start-up")
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    log.info("%sshutting down: finishing answers in flight", f"{name}: " if name else "")
    await server.stop()
