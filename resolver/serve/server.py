"""A server in one process: load the policy, open the listeners, reload, shut down.

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
from collections.abc import Callable
from pathlib import Path

from resolver.audit.writer import AuditWriter
from resolver.config import RESTART_KEYS, Config, ConfigError, load_config
from resolver.dns.model import Query
from resolver.launch import reload_was_asked
from resolver.metrics import Metrics
from resolver.pipeline import Pipeline
from resolver.policy.loading import BuiltPolicy, PolicyError, load_policy, retire
from resolver.policy.source import PolicySource
from resolver.serve.builder import ChildBuilds
from resolver.serve.dataplane import DataPlane, Endpoint
from resolver.serve.exposition import exposition
from resolver.serve.http import StatusServer
from resolver.serve.rpzfeed import RpzFeed
from resolver.serve.sockets import bind_dns, bind_encrypted

__all__ = ["Endpoint", "PolicyError", "Server", "load_policy", "serve_until_stopped"]

log = logging.getLogger(__name__)


class Server:
    """A single-process server: one data plane, and everything around it (the config
    file, the policy's sources, the audit trail, the HTTP endpoint)."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics | None = None,
        catalog_dir: Path | None = None,
        *,
        config_path: Path | None = None,
        builds: ChildBuilds | None = None,
    ) -> None:
        self.config = config
        # Where reloads are built: a builder process (``aiwall serve``), else a thread.
        self._builds = builds
        # A reload reads this file again (None: started without one, lists only).
        self._config_path = config_path
        self._reload_lock = asyncio.Lock()
        self._api_token = config.api_token()
        self.metrics = metrics if metrics is not None else Metrics()
        self.audit = AuditWriter.for_config(config, self.metrics)
        self.data = DataPlane(
            config,
            self.metrics,
            self.record_attempt,
            audit=self.audit.record if self.audit.enabled else None,
        )
        self.http_endpoint: Endpoint | None = None
        self._status: StatusServer | None = None
        self.source = PolicySource(config, self.metrics, catalog_dir)
        self.rpz = RpzFeed(config, catalog_dir)  # the rpz: zones, built here for transfers
        self._background: set[asyncio.Task[object]] = set()
        self._starting = True
        self._reload_wanted = False
        self._version = 0

    @property
    def pipeline(self) -> Pipeline | None:
        return self.data.pipeline

    @property
    def dns_endpoints(self) -> list[Endpoint]:
        return self.data.dns_endpoints

    # --- start ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.source.fetch_missing()
        built = self.source.build(starting=True)
        if self._builds is not None:
            self._builds.know(built)
        retire(None)
        self.audit.start()
        self._version = 1
        self.data.install(self.config, built, self._version)
        self.rpz.policy_changed(self.config)
        await self.rpz.rebuilt()
        # The policy is in force; only now may a DNS port open.
        listen = self.config.listen
        await self.data.listen(bind_dns(listen.dns), bind_encrypted(listen.dot, listen.doh))
        if self.config.listen.http is not None:
            self._status = StatusServer(self)
            bound = await self._status.start(
                self.config.listen.http.host, self.config.listen.http.port
            )
            self.http_endpoint = Endpoint(*bound)
        self.source.start_refreshing(self.reload_lists)
        log.info(
            "serving DNS on %s, HTTP on %s, %d policy entries",
            ", ".join(str(e) for e in self.dns_endpoints),
            self.http_endpoint or "-",
            sum(built.groups.entries_by_source.values()),
        )
        self._starting = False
        if self._reload_wanted:
            log.info("applying the reload asked for during start-up")
            self.request_reload()

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

        The build runs in a builder process (``serve.builder``), so answering goes on
        meanwhile (a million-name list takes seconds to parse); the policy it publishes
        is loaded in a thread, and the swap happens on the event loop at once.
        """
        async with self._reload_lock:
            try:
                candidate = await next_candidate(
                    self.config,
                    self._config_path if reread_config else None,
                    self.source,
                    self._builds,
                    self._version + 1,
                )
            except (ConfigError, PolicyError) as error:
                return self._rejected(error)
            config, source, built, token = candidate
            self._version += 1
            retired = self.data.install(config, built, self._version)
            if source is not self.source:
                self.source.stop()
                self.source = source
                source.start_refreshing(self.reload_lists)
            self.config, self._api_token = config, token
            self.rpz.policy_changed(config)
            await asyncio.to_thread(retire, retired)
            if self._builds is not None:
                await self._builds.retired()
            return self._reloaded(built)

    def _rejected(self, error: Exception) -> tuple[bool, str]:
        log.error("reload rejected, keeping the running config and policy: %s", error)
        self.metrics.reloads.labels("rejected").inc()
        return False, f"reload rejected: {error}"

    def _reloaded(self, built: BuiltPolicy) -> tuple[bool, str]:
        self.metrics.reloads.labels("success").inc()
        entries = sum(built.groups.entries_by_source.values())
        log.info("reloaded: %d policy entries", entries)
        return True, "; ".join([f"reloaded: {entries} policy entries", *built.warnings])

    # --- control operations (HTTP API) ---------------------------------------------

    async def exposition(self) -> bytes:
        return await exposition(self.metrics.registry)

    def api_token(self) -> str:
        return self._api_token

    async def check(self, name: str, client: str) -> dict[str, object]:
        return await self.data.check(name, client)

    async def stats(self) -> dict[str, object]:
        # The sinks that cannot be written now, with why (DNS goes on regardless).
        stats = self.data.stats()
        return {
            **stats,
            # The same keys as a server of several workers (serve.supervisor).
            "worker_policy_versions": [stats["policy_version"]],
            "workers_answering": 1,
            "audit_degraded": self.audit.degraded,
        }

    async def pause(self, minutes: float) -> tuple[bool, str]:
        """Blocking off for a while: bounded by api.max_pause_minutes, logged, and
        audited; 0 minutes resumes blocking at once."""
        refused = pause_refused(self.config, minutes)
        if refused:
            return False, refused
        self.data.pause(minutes * 60)
        return True, audit_pause(self.audit, minutes)

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
        missing = self.source.missing
        if missing and self.pipeline is not None:
            # Serving without a list whose names would be blocked: no load balancer
            # should send clients here until it has a copy.
            return False, f"no copy yet of {', '.join(missing)} (never fetched)"
        return await self.data.ready()

    # --- stop ----------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop accepting, let answers in flight finish, then close everything."""
        self.source.stop()
        for task in self._background:
            task.cancel()
        await self.rpz.stop()
        await self.data.stop()
        if self._status is not None:
            await self._status.stop()
        # Last, so the attempts answered while draining are written out too.
        await self.audit.close()


Candidate = tuple[Config, PolicySource, BuiltPolicy, str]


async def next_candidate(
    running: Config,
    config_path: Path | None,
    source: PolicySource,
    builds: ChildBuilds | None = None,
    version: int = 0,
) -> Candidate:
    """What a reload would install: the config read again (when ``config_path``), the
    policy source for it, the policy (as version ``version``) built by ``builds``'
    builder process, or in a thread without one, the API token. Raises ConfigError or
    PolicyError, and then nothing changes."""
    config = running
    if config_path is not None:
        config = await asyncio.to_thread(load_config, config_path)
        for key in RESTART_KEYS:
            if getattr(config, key) != getattr(running, key):
                raise ConfigError(f"{key}: changed, which takes a restart; nothing was reloaded")
    source = source.for_config(config)
    token = config.api_token()
    if builds is not None and builds.usable:
        built = await builds.build(source, version)
    else:
        built = await asyncio.to_thread(source.build, starting=False)
    return config, source, built, token


def pause_refused(config: Config, minutes: float) -> str:
    """Why a pause of ``minutes`` is refused ("" when it is not)."""
    limit = config.api.max_pause_minutes
    if not 0 <= minutes <= limit:
        return f"minutes must be from 0 to {limit:g} (api.max_pause_minutes)"
    return ""


def audit_pause(audit: AuditWriter, minutes: float) -> str:
    """Log and audit a pause, once, by the process that owns the trail."""
    log.warning("blocking paused for %g minutes through the API", minutes)
    if audit.enabled:
        audit.record("api", "-", f"{minutes:g} minutes", "-", "-", "-", "pause")
    return f"blocking paused for {minutes:g} minutes" if minutes else "blocking resumed"


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
    if reload_was_asked():  # during the imports, before these handlers
        server.request_reload()
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
