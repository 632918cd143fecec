"""Several processes answering, one server: the supervisor and its workers.

Python runs one thread of bytecode at a time, so more cores need more processes. The
supervisor keeps one state for all of them:
- it binds the ports once (``serve.sockets``), a UDP socket per worker on each address,
  and steers each question name to one worker (``serve.steering``): one cache, whoever
  asks; questions on connections (TCP, DoT, DoH) reach their name's worker too
  (``serve.relay``);
- it reads the config and every list, fetches remote lists, and builds each version of
  the policy once; workers are forked from it with the first version, and load later
  ones from the files it writes (``policy.published``), all switching together or not
  at all (``prepare`` on every worker, then ``commit``);
- it probes failing upstreams, once for the whole server, and posts their health on a
  board the workers read (``resolver.shared``), where the rate limit's buckets are too;
- it owns the audit trail, the HTTP endpoint (the control operations, answered from
  its workers taken together, ``serve.fleetview``), and the merged metrics, which
  never go down: a dead worker's last values are kept (``serve.merge``).
Workers that die are forked again, from the supervisor's current policy
(``serve.fleet``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from pathlib import Path
from typing import Any

from resolver.audit.writer import AuditWriter
from resolver.config import Config, ConfigError
from resolver.launch import reload_was_asked
from resolver.metrics import Metrics
from resolver.policy.loading import BuiltPolicy, PolicyError, retire
from resolver.policy.published import load_published, publish
from resolver.policy.source import PolicySource
from resolver.serve.fleet import Fleet, WorkerStartError
from resolver.serve.fleetview import FleetView
from resolver.serve.http import StatusServer
from resolver.serve.probing import SharedUpstreams
from resolver.serve.relay import relay_sockets
from resolver.serve.rpzfeed import RpzFeed
from resolver.serve.server import audit_pause, next_candidate, pause_refused
from resolver.serve.sockets import DnsSockets, bind_dns, bind_encrypted
from resolver.serve.steering import attach
from resolver.serve.worker import WorkerStart
from resolver.shared import BucketTable

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(
        self, config: Config, config_path: Path | None = None, catalog_dir: Path | None = None
    ) -> None:
        self.config = config
        self._config_path = config_path
        self._api_token = config.api_token()
        self.count = config.worker_count
        self.metrics = Metrics()
        self.source = PolicySource(config, self.metrics, catalog_dir)
        self.rpz = RpzFeed(config, catalog_dir)  # the rpz: zones, built once for every worker
        self.audit = AuditWriter.for_config(config, self.metrics)
        self.upstreams = SharedUpstreams(config, self.metrics)
        self.buckets = BucketTable(config.ratelimit.max_prefixes)
        self._paused_until = 0.0  # monotonic (one clock for every process of the host)
        self.fleet = Fleet(self.count, self._start_for, self._from_worker, self._died, self._own)
        self.workers = FleetView(self.fleet)
        self._sockets: list[DnsSockets] = []
        self._relay: list[socket.socket] = []
        self._encrypted: list[tuple[str, socket.socket]] = []
        self._built: BuiltPolicy | None = None
        self._version = 0
        self._reload_lock: asyncio.Lock | None = None
        self._status: StatusServer | None = None
        self._stop: asyncio.Event | None = None
        self._stop_wanted = False
        self._reload_wanted = False
        self._background: set[asyncio.Task[Any]] = set()

    # --- start (before any event loop: the workers are forked from here) ------------

    def run(self) -> int:
        """Bind, build the first policy, fork the workers, then supervise them."""
        self._early_signals()
        self._sockets = bind_dns(self.config.listen.dns, self.count)
        try:
            # DoT/DoH: one listening socket each, shared by the workers (as TCP's).
            self._encrypted = bind_encrypted(self.config.listen.dot, self.config.listen.doh)
            for sockets in self._sockets:
                attach(sockets.udp[0], self.count)
            self._relay = relay_sockets(self.count)
            built = asyncio.run(self._first_policy())
            if built is None:
                return 0  # stopped while starting
            self._built, self._version = self._as_published(built, 1), 1
            del built
            retire(None)
            self.metrics.policy_in_force(1, self._built.fingerprint)
            self.fleet.fork_all()
            return asyncio.run(self._supervise())
        finally:
            self.fleet.stop_now()
            for sockets in self._sockets:
                sockets.close()
            for _, sock in self._encrypted:
                sock.close()
            for sock in self._relay:
                sock.close()

    def _early_signals(self) -> None:
        """Before anything else: a signal while the lists load must not take its default
        action (SIGHUP would kill the server)."""

        def stop(_number: int, _frame: object) -> None:
            self._stop_wanted = True
            if self._stop is not None:
                self._stop.set()

        def reload(_number: int, _frame: object) -> None:
            self._reload_wanted = True
            log.info("reload asked for during start-up: it follows once the workers serve")

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)
        if reload_was_asked():  # during the imports, before these handlers
            reload(signal.SIGHUP, None)

    async def _first_policy(self) -> BuiltPolicy | None:
        fetching = asyncio.ensure_future(self.source.fetch_missing())
        while not fetching.done():
            if self._stop_wanted:
                fetching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fetching
                return None
            await asyncio.sleep(0.1)
        fetching.result()
        # In this (the main) thread, not a helper thread: what the build leaves alive
        # then sits in the main heap, not in a thread's malloc arena whose free holes
        # every forked worker would inherit as private pages.
        built = self.source.build(starting=True)
        retire(None)
        return None if self._stop_wanted else built

    def _as_published(self, built: BuiltPolicy, version: int) -> BuiltPolicy:
        """The first version as every later one: written down and its table mapped from
        the file, so that the workers share clean pages of the page cache rather than
        the supervisor's heap (measured with 1M names: 48 MB PSS for three processes,
        against 60 MB with the table forked from the heap). Kept in memory when the
        state folder cannot be written."""
        try:
            published = publish(built, self.config.state_dir / "run", version)
        except OSError as error:
            log.warning("cannot write the policy to share it (%s): keeping it in memory", error)
            return built
        try:
            return load_published(published)
        finally:
            published.remove()

    def _own(self) -> list[socket.socket]:
        """Sockets only the supervisor uses, closed in every worker it forks."""
        return self._status.sockets if self._status is not None else []

    def _start_for(self, index: int, channel: socket.socket) -> WorkerStart:
        assert self._built is not None
        return WorkerStart(
            index=index,
            workers=self.count,
            config=self.config,
            built=self._built,
            version=self._version,
            sockets=self._sockets,
            encrypted=self._encrypted,
            relay=self._relay,
            channel=channel,
            board=self.upstreams.board,
            slots=dict(self.upstreams.slots),
            buckets=self.buckets,
            paused_until=self._paused_until,
        )

    # --- supervising -----------------------------------------------------------------

    async def _supervise(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop = stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        if self._stop_wanted:
            stop.set()
        await self.fleet.connect_all()
        await self.fleet.wait_started()
        self.upstreams.start()
        self.audit.start()
        self.rpz.policy_changed(self.config)
        http = self.config.listen.http
        if http is not None:
            self._status = StatusServer(self)
            await self._status.start(http.host, http.port)
        self.source.start_refreshing(self.reload_lists)
        watcher = loop.create_task(self.fleet.watch(stop))
        await self.rpz.rebuilt()  # the rpz zones are published before "serving" is said
        log.info("%d workers serving", self.count)
        if self._reload_wanted:
            log.info("applying the reload asked for during start-up")
            self.request_reload()
        await stop.wait()
        log.info("shutting down: finishing answers in flight")
        watcher.cancel()
        self.source.stop()
        await self.rpz.stop()
        await self.fleet.stop()
        await self.upstreams.close()
        if self._status is not None:
            await self._status.stop()
        await self.audit.close()
        return 0

    async def _from_worker(self, _index: int, op: str, payload: Any) -> None:
        """A note from a worker."""
        if op == "audit":
            batches, dropped = payload
            self.audit.absorb(batches if self.audit.enabled else [], dropped)
        elif op == "suspect":
            self.upstreams.suspect(payload)
        elif op == "alive":
            self.upstreams.revived(payload)

    def _died(self, index: int) -> None:
        self.workers.died(index)

    # --- reload ----------------------------------------------------------------------

    def request_reload(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload_lists(self) -> bool:
        accepted, _ = await self.reload(reread_config=False)
        return accepted

    async def reload(self, *, reread_config: bool = True) -> tuple[bool, str]:
        """Build the new version once, have every worker load it, and switch them all
        together; if any cannot load it, none switches."""
        assert self._reload_lock is not None
        async with self._reload_lock:
            try:
                config, source, built, token = await next_candidate(
                    self.config, self._config_path if reread_config else None, self.source
                )
            except (ConfigError, PolicyError) as error:
                return self._rejected(str(error))
            version = self._version + 1
            run = self.config.state_dir / "run"
            try:
                published = await asyncio.to_thread(publish, built, run, version)
            except OSError as error:
                return self._rejected(f"cannot write the policy for the workers: {error}")
            try:
                slots = self.upstreams.assign(config)
                accepted, detail = await self.workers.switch(config, published, slots)
                # Ours mapped from the same file, so that a worker forked later shares
                # the table's pages with the others.
                current = await asyncio.to_thread(load_published, published) if accepted else None
            finally:
                published.remove()  # every worker has mapped or read it by now
            if current is None:
                return self._rejected(detail)
            retired, self._built = self._built, current
            self._version = version
            self.metrics.policy_in_force(version, self._built.fingerprint)
            if source is not self.source:
                self.source.stop()
                self.source = source
                source.start_refreshing(self.reload_lists)
            await self.upstreams.follow(config)
            self.config, self._api_token = config, token
            self.rpz.policy_changed(config)
            await asyncio.to_thread(retire, retired.groups if retired is not None else None)
            await asyncio.to_thread(retire, built.groups)
            self.metrics.reloads.labels("success").inc()
            entries = sum(self._built.groups.entries_by_source.values())
            log.info("reloaded: %d policy entries, version %d on every worker", entries, version)
            return True, "; ".join([f"reloaded: {entries} policy entries", *built.warnings])

    def _rejected(self, detail: str) -> tuple[bool, str]:
        log.error("reload rejected, keeping the running config and policy: %s", detail)
        self.metrics.reloads.labels("rejected").inc()
        return False, f"reload rejected: {detail}"

    # --- control operations ------------------------------------------------------------

    def api_token(self) -> str:
        return self._api_token

    async def exposition(self) -> bytes:
        return await self.workers.exposition(self.metrics.registry)

    async def ready(self) -> tuple[bool, str]:
        missing = self.source.missing
        if missing:
            return False, f"no copy yet of {', '.join(missing)} (never fetched)"
        return await self.workers.ready()

    async def check(self, name: str, client: str) -> dict[str, object]:
        return await self.workers.check(name, client)

    async def stats(self) -> dict[str, object]:
        return await self.workers.stats(self._version, self.audit.degraded)

    async def pause(self, minutes: float) -> tuple[bool, str]:
        refused = pause_refused(self.config, minutes)
        if refused:
            return False, refused
        failed = await self.workers.pause(minutes * 60)
        if failed:
            self._paused_until = 0.0
            return False, f"not paused: no answer from {', '.join(failed)}; blocking stays on"
        # Kept for the workers forked later (a restart must not end the pause early),
        # and audited once, here, by the owner of the trail.
        self._paused_until = time.monotonic() + minutes * 60 if minutes else 0.0
        return True, audit_pause(self.audit, minutes)


__all__ = ["Supervisor", "WorkerStartError"]
