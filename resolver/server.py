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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from resolver.blocklist import Blocklist, ListError, ListText, build_blocklist, read_list_file
from resolver.catalog import Catalog, CatalogError, default_catalog_dir, load_catalog
from resolver.config import Config, parse_host_port
from resolver.metrics import Metrics
from resolver.pipeline import Pipeline, build_pipeline
from resolver.policy import SelectorError
from resolver.remote import RemoteList
from resolver.transport import QueryRunner, TcpConnection, TcpConnections, UdpListener
from resolver.web import StatusServer, registry_exposition

log = logging.getLogger(__name__)

# Answers in flight get this long to finish on shutdown; above an upstream timeout.
DRAIN_SECONDS = 3.0
# /readyz trusts a recent upstream answer instead of sending a probe on every poll.
READY_FRESHNESS = 30.0


class PolicyError(RuntimeError):
    """The blocking policy could not be built; nothing is served without one."""


def load_policy(
    config: Config,
    catalog_dir: Path | None = None,
    remote: Sequence[RemoteList] = (),
    *,
    compact: bool = True,
) -> tuple[Blocklist, Catalog | None]:
    """Build the policy from the catalog, the local lists and the remote lists' last good
    copies. Raises PolicyError when any part is unusable: nothing is half-loaded."""
    catalog: Catalog | None = None
    try:
        if not config.blocking.catalog.block.empty:
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
        return build_blocklist(config.blocking, catalog, lists, compact=compact), catalog
    except (CatalogError, ListError, SelectorError) as error:
        raise PolicyError(str(error)) from None


def _retire(blocklist: Blocklist | None) -> None:
    """After a policy swap: free the old policy piece by piece, keep the new one out of
    future GC passes, and hand the freed heap back to the OS. Runs in a thread."""
    if blocklist is not None:
        blocklist.names.release()
    # Everything alive now is long-lived; the collector need not walk it again.
    gc.freeze()
    # Parsing a large list leaves tens of megabytes freed in malloc's arenas (glibc).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


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
    ) -> None:
        self._reuse_port = reuse_port
        self.config = config
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
        self.remote_lists = [
            RemoteList(remote, config.state_dir, self.metrics)
            for remote in config.blocking.remote_lists
        ]
        self._refreshers: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[bool]] = set()

    async def start(self) -> None:
        # A remote list never fetched before is fetched now, before the ports open, so a
        # first start serves it whenever it can be had at all.
        for source in self.remote_lists:
            if source.last_good() is None:
                await asyncio.to_thread(source.refresh)
        blocklist, self.catalog = self._build_policy()
        _retire(None)
        self.metrics.set_list_sizes(blocklist.entries_by_source, blocklist.loaded_at)
        self.pipeline = build_pipeline(self.config, blocklist, self.metrics)
        self._runner = QueryRunner(self.pipeline.head, self.metrics)
        loop = asyncio.get_running_loop()
        for spec in self.config.listen.dns:
            host, port = parse_host_port(spec, 53)
            await self._listen_dns(loop, host, port)
        if self.config.listen.http:
            host, port = parse_host_port(self.config.listen.http, 9153)
            self._status = StatusServer(registry_exposition(self.metrics), self.ready)
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
            sum(blocklist.entries_by_source.values()),
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
        while True:
            copy = source.last_good()
            age = time.time() - copy.fetched_at if copy is not None else source.config.refresh
            await asyncio.sleep(max(source.config.refresh - age, 0))
            if await asyncio.to_thread(source.refresh):
                await self.reload_lists()

    def _build_policy(self) -> tuple[Blocklist, Catalog | None]:
        return load_policy(self.config, self._catalog_dir, self.remote_lists)

    def request_reload(self) -> None:
        """For signal handlers, which cannot await: reload in the background."""
        task = asyncio.get_running_loop().create_task(self.reload_lists())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload_lists(self) -> bool:
        """Rebuild the policy from the same config; on any error keep the running one.

        The build runs in a thread, so answering goes on meanwhile (a million-name list
        takes seconds to parse); the swap itself is one assignment on the event loop.
        """
        assert self.pipeline is not None
        try:
            blocklist, self.catalog = await asyncio.to_thread(self._build_policy)
        except PolicyError as error:
            log.error("reload rejected, keeping the running policy: %s", error)
            return False
        retired = self.pipeline.blocking.blocklist
        self.pipeline.blocking.replace_blocklist(blocklist)
        await asyncio.to_thread(_retire, retired)
        self.metrics.set_list_sizes(blocklist.entries_by_source, blocklist.loaded_at)
        log.info("policy reloaded: %d entries", sum(blocklist.entries_by_source.values()))
        return True

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
