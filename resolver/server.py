"""The running server: load the policy, open the listeners, reload, shut down cleanly.

The order of start-up is the fail-closed guarantee: the policy is loaded before any port
opens, so there is no moment in which a banned name is forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from resolver.audit import AuditLog
from resolver.blocklist import (
    ListError,
    ListText,
    build_blocklist,
    parse_list_text,
    read_list_file,
)
from resolver.catalog import Catalog, CatalogError, default_catalog_dir, load_catalog
from resolver.config import Config, ConfigError, load_config, parse_host_port
from resolver.explain import explain
from resolver.groups import ClientGroups, Group
from resolver.logs import setup_logging
from resolver.metrics import Metrics
from resolver.model import Query
from resolver.pipeline import Pipeline, build_pipeline
from resolver.policy import SelectorError, next_expiry
from resolver.remote import RemoteList
from resolver.responses import BlockAnswers
from resolver.steadyread import ListsChanging, build_when_steady
from resolver.transport import QueryRunner, TcpConnection, TcpConnections, UdpListener
from resolver.web import StatusServer, registry_exposition

log = logging.getLogger(__name__)

# Answers in flight get this long to finish on shutdown; above an upstream timeout.
DRAIN_SECONDS = 3.0
# /readyz trusts a recent upstream answer instead of sending a probe on every poll.
READY_FRESHNESS = 30.0
# A remote list whose refresh failed is tried again after this (or its refresh period).
REMOTE_RETRY_SECONDS = 60.0


class PolicyError(RuntimeError):
    """The blocking policy could not be built; nothing is served without one."""


def load_policy(
    config: Config,
    catalog_dir: Path | None = None,
    remote: Sequence[RemoteList] = (),
    *,
    compact: bool = True,
    now: float | None = None,
) -> tuple[ClientGroups, Catalog | None]:
    """Build every group's policy from the catalog, the local lists and the remote lists'
    last good copies (lists are parsed once and shared by the groups). Raises
    PolicyError when any part is unusable: nothing is half-loaded."""
    when = time.time() if now is None else now
    catalog: Catalog | None = None
    blockings = [config.blocking] + [g.applied_to(config.blocking) for g in config.groups]
    try:
        if any(not b.catalog.block.empty or not b.catalog.report.empty for b in blockings):
            catalog = load_catalog(catalog_dir or default_catalog_dir())
        lists = [read_list_file(path) for path in config.list_paths()]
        for source in remote:
            copy = source.last_good()
            if copy is None:
                log.warning(
                    "list %s: no copy yet, serving without it until it downloads", source.label
                )
            else:
                lists.append(ListText(source.source, copy.text))
        parts = [parse_list_text(listed, compact=compact) for listed in lists]
        built = [
            Group(
                name,
                build_blocklist(blocking, catalog, parts, now=when),
                BlockAnswers(
                    blocking.response, blocking.ttl, blocking.sinkhole_ipv4, blocking.sinkhole_ipv6
                ),
                blocking.mode,
            )
            for name, blocking in zip(
                ["default", *(g.name for g in config.groups)], blockings, strict=True
            )
        ]
    except (CatalogError, ListError, SelectorError) as error:
        raise PolicyError(str(error)) from None
    expiries = [at for b in blockings if (at := next_expiry(b.catalog, when)) is not None]
    groups = ClientGroups(
        built[0],
        [(g.clients, group) for g, group in zip(config.groups, built[1:], strict=True)],
        min(expiries, default=None),
    )
    return groups, catalog


def _retire(groups: ClientGroups | None) -> None:
    """After a policy swap: free the old policy piece by piece, keep the new one out of
    future GC passes, and hand the freed heap back to the OS. Runs in a thread."""
    if groups is not None:
        groups.release()
    # Everything alive now is long-lived; the collector need not walk it again.
    gc.freeze()
    # Parsing a large list leaves tens of megabytes freed in malloc's arenas (glibc).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _check_reloadable(running: Config, new: Config) -> None:
    """Sockets and processes are set up once, at start: a reload cannot move them."""
    for key in ("listen", "workers"):
        if getattr(new, key) != getattr(running, key):
            raise ConfigError(f"{key}: changed, which takes a restart; nothing was reloaded")


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int


def _bind_udp(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if reuse_port:
        # Workers each bind the same port; the kernel spreads clients across them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        # Lets 0.0.0.0 and [::] be configured side by side on the same port.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))
    return sock


class Server:
    def __init__(
        self,
        config: Config,
        metrics: Metrics | None = None,
        catalog_dir: Path | None = None,
        *,
        reuse_port: bool = False,
        config_path: Path | None = None,
        adjust: Callable[[Config], Config] = lambda config: config,
    ) -> None:
        self._reuse_port = reuse_port
        self.config = config
        # A reload reads this file again (None: started without one, lists only), and
        # passes what it read through ``adjust`` (a worker's own changes to the config).
        self._config_path = config_path
        self._adjust = adjust
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
        self.audit = AuditLog(config.audit, config.privacy, config.state_dir)
        self.remote_lists = [
            RemoteList(remote, config.state_dir, self.metrics)
            for remote in config.blocking.remote_lists
        ]
        self._refreshers: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[bool]] = set()
        self._expiry_timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        # A remote list never fetched before is fetched now, before the ports open, so a
        # first start serves it whenever it can be had at all.
        for source in self.remote_lists:
            if source.last_good() is None:
                await asyncio.to_thread(source.refresh)
        groups, self.catalog = self._build_policy()
        _retire(None)
        self.metrics.set_list_sizes(groups.entries_by_source, groups.loaded_at)
        self.audit.start()
        self.pipeline = build_pipeline(
            self.config, groups, self.metrics, attempts=self.record_attempt
        )
        self._schedule_expiry(groups)
        self._runner = QueryRunner(self.pipeline.head, self.metrics)
        loop = asyncio.get_running_loop()
        for spec in self.config.listen.dns:
            host, port = parse_host_port(spec, 53)
            await self._listen_dns(loop, host, port)
        if self.config.listen.http:
            host, port = parse_host_port(self.config.listen.http, 9153)
            self._status = StatusServer(
                registry_exposition(self.metrics),
                self.ready,
                self.reload,
                lambda: self._api_token,
                check=self.api_check,
                stats=self.api_stats,
                pause=self.api_pause,
            )
            bound = await self._status.start(host, port)
            self.http_endpoint = Endpoint(*bound)
        self._refreshers = [
            asyncio.create_task(self._keep_fresh(source)) for source in self.remote_lists
        ]
        log.info(
            "serving DNS on %s, HTTP on %s, %d policy entries",
            ", ".join(
                f"[{e.host}]:{e.port}" if ":" in e.host else f"{e.host}:{e.port}"
                for e in self.dns_endpoints
            ),
            f"{self.http_endpoint.host}:{self.http_endpoint.port}" if self.http_endpoint else "-",
            sum(groups.entries_by_source.values()),
        )

    async def _listen_dns(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        assert self._runner is not None
        runner = self._runner
        # Bind UDP first so that port 0 picks one free port, then TCP on the same one.
        for attempt in range(20):
            udp_sock = _bind_udp(host, port, self._reuse_port)
            bound_port = udp_sock.getsockname()[1]
            try:
                tcp = await loop.create_server(
                    lambda: TcpConnection(runner, self._tcp_connections),
                    host,
                    bound_port,
                    backlog=256,
                    reuse_port=self._reuse_port,
                )
            except OSError:
                udp_sock.close()
                if port != 0 or attempt == 19:
                    raise
                continue
            listener = UdpListener(udp_sock, runner)
            listener.start(loop)
            self._udp_listeners.append(listener)
            self._tcp.append(tcp)
            self.dns_endpoints.append(Endpoint(host, bound_port))
            return

    async def _keep_fresh(self, source: RemoteList) -> None:
        """Refresh one remote list forever; a new copy rebuilds the policy."""
        attempted = 0.0
        while True:
            copy = source.last_good()
            due = (copy.fetched_at if copy is not None else 0.0) + source.config.refresh
            if attempted > due - source.config.refresh:
                # The last attempt failed (fetched_at did not move): wait before the next
                # one instead of asking a list server that is down in a tight loop.
                due = max(due, attempted + min(source.config.refresh, REMOTE_RETRY_SECONDS))
            await asyncio.sleep(max(due - time.time(), 0))
            attempted = time.time()
            if await asyncio.to_thread(source.refresh):
                await self.reload_lists()

    def _build_policy(
        self, config: Config | None = None, remote: Sequence[RemoteList] | None = None
    ) -> tuple[ClientGroups, Catalog | None]:
        config = config if config is not None else self.config
        remote = remote if remote is not None else self.remote_lists
        try:
            # A list rewritten in place while being read must never load half of it.
            return build_when_steady(
                config.list_paths(), lambda: load_policy(config, self._catalog_dir, remote)
            )
        except ListsChanging as error:
            raise PolicyError(str(error)) from None

    async def api_check(self, name: str, client: str) -> dict[str, object]:
        assert self.pipeline is not None
        catalog = self.catalog or await asyncio.to_thread(load_catalog, default_catalog_dir())
        return explain(self.pipeline.blocking.groups, catalog, name, client).as_dict()

    async def api_stats(self) -> dict[str, object]:
        assert self.pipeline is not None
        blocked: dict[str, int] = {}
        for key, count in self.metrics.blocked.counts.items():
            service = str(key[0]) if isinstance(key, tuple) else ""
            blocked[service] = blocked.get(service, 0) + count
        paused = self.pipeline.blocking.paused_until - time.monotonic()
        return {
            "queries": sum(self.metrics.queries.counts.values()),
            "blocked": sum(blocked.values()),
            "blocked_by_service": dict(sorted(blocked.items(), key=lambda kv: -kv[1])),
            "reported": sum(self.metrics.reported.counts.values()),
            "cache_hits": self.metrics.cache_hits.value(),
            "policy_entries": sum(self.pipeline.blocking.groups.entries_by_source.values()),
            "groups": [group.name for group in self.pipeline.blocking.groups.all],
            "paused_seconds_left": max(round(paused), 0),
        }

    async def api_pause(self, minutes: float) -> tuple[bool, str]:
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

    def _schedule_expiry(self, groups: ClientGroups) -> None:
        """Rebuild the policy when its next temporary rule (``until``) runs out, so an
        expired exception stops applying without a restart."""
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        if groups.next_expiry is None:
            return
        delay = max(groups.next_expiry - time.time(), 0) + 1
        loop = asyncio.get_running_loop()
        self._expiry_timer = loop.call_later(delay, self._on_expiry)

    def _on_expiry(self) -> None:
        log.warning("a temporary policy rule (until: ...) has expired; rebuilding the policy")
        self.request_reload()

    def request_reload(self) -> None:
        """For signal handlers, which cannot await: reload in the background."""
        task = asyncio.get_running_loop().create_task(self.reload_lists())
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
                remote = self.remote_lists
                if (config.blocking.remote_lists, config.state_dir) != (
                    self.config.blocking.remote_lists,
                    self.config.state_dir,
                ):
                    remote = [
                        RemoteList(r, config.state_dir, self.metrics)
                        for r in config.blocking.remote_lists
                    ]
                token = config.api_token()
                groups, catalog = await asyncio.to_thread(self._build_policy, config, remote)
            except (ConfigError, PolicyError) as error:
                log.error("reload rejected, keeping the running config and policy: %s", error)
                self.metrics.reloads.labels("rejected").inc()
                return False, f"reload rejected: {error}"
            retired = self.pipeline.blocking.groups
            if config == self.config:
                self.pipeline.blocking.replace_groups(groups)
            else:
                self._apply(config, remote, groups)
            self.catalog, self._api_token = catalog, token
            await asyncio.to_thread(_retire, retired)
            self.metrics.set_list_sizes(groups.entries_by_source, groups.loaded_at)
            self._schedule_expiry(groups)
            self.metrics.reloads.labels("success").inc()
            entries = sum(groups.entries_by_source.values())
            log.info("reloaded: %d policy entries", entries)
            return True, f"reloaded: {entries} policy entries"

    def _apply(self, config: Config, remote: list[RemoteList], groups: ClientGroups) -> None:
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
        if remote is not self.remote_lists:
            for refresher in self._refreshers:
                refresher.cancel()
            self.remote_lists = remote
            self._refreshers = [asyncio.create_task(self._keep_fresh(r)) for r in remote]
        self.config = config

    async def ready(self) -> tuple[bool, str]:
        if self.pipeline is None:
            return False, "starting"
        forwarder = self.pipeline.forwarder
        if time.monotonic() - forwarder.last_success < READY_FRESHNESS:
            return True, "ready"
        if await forwarder.probe():
            return True, "ready"
        return False, "no upstream answers"

    async def stop(self) -> None:
        """Stop accepting, let answers in flight finish, then close everything."""
        for refresher in self._refreshers:
            refresher.cancel()
        for listener in self._udp_listeners:
            listener.accepting = False
        for tcp in self._tcp:
            tcp.close()
        if self._runner is not None:
            await self._runner.drain(DRAIN_SECONDS)
        for listener in self._udp_listeners:
            listener.close()
        self._tcp_connections.close_all()
        if self._status is not None:
            await self._status.stop()
        for tcp in self._tcp:
            await tcp.wait_closed()
        # Last, so the attempts answered while draining are written out too.
        await asyncio.to_thread(self.audit.close)
