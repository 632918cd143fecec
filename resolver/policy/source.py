"""Where a running server's policy comes from, and keeping it current.

``PolicySource`` owns the remote lists and the catalog sources of one config: it
fetches those with no copy before the server opens its ports (waiting for the
``required`` lists; a catalog source that fails leaves the shipped catalog in force),
refreshes each on its interval, builds whole policies (never from a list file caught
mid-rewrite), and asks for a rebuild whenever a refresh brings a new copy or bundle,
trying again with back-off while the rebuild fails.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from resolver.config import Config
from resolver.metrics import Metrics
from resolver.policy.feed import CatalogFeeds
from resolver.policy.loading import (
    BuiltPolicy,
    PolicyError,
    Rejected,
    load_policy,
    remote_lists,
)
from resolver.policy.remote import RemoteList
from resolver.policy.steadyread import ListsChanging, build_when_steady

log = logging.getLogger(__name__)

# A remote list whose refresh failed is tried again after this (or its refresh period).
REMOTE_RETRY_SECONDS = 60.0
# A rebuild wanted after a list refresh that failed is tried again after this, doubling.
REBUILD_RETRY_FIRST = 5.0
REBUILD_RETRY_MAX = 300.0

# Rebuilds the policy from the running config; True when it was accepted.
Rebuild = Callable[[], Awaitable[bool]]


class PolicySource:
    def __init__(self, config: Config, metrics: Metrics, catalog_dir: Path | None) -> None:
        self.config = config
        self._metrics = metrics
        self._catalog_dir = catalog_dir
        self.remote = remote_lists(config, metrics)
        self.feeds = CatalogFeeds(config, catalog_dir, metrics)
        self._refreshers: list[asyncio.Task[None]] = []
        self._rebuild_task: asyncio.Task[None] | None = None
        metrics.preset_lists(
            [r.source for r in self.remote], [f"list:{p.name}" for p in config.list_paths()]
        )

    @property
    def missing(self) -> list[str]:
        """Remote lists with no copy at all: neither a download nor a seed."""
        return [source.source for source in self.remote if source.missing]

    def for_config(self, config: Config) -> PolicySource:
        """The source for a changed config: this one if its lists are the same."""
        same = (config.blocking.remote_lists, config.catalog, config.state_dir) == (
            self.config.blocking.remote_lists,
            self.config.catalog,
            self.config.state_dir,
        )
        if same:
            self.config = config
            return self
        return PolicySource(config, self._metrics, self._catalog_dir)

    async def fetch_missing(self) -> None:
        """A remote list with no copy at all is fetched before the ports open; a
        ``required`` one is waited for (retrying, and saying so), the others are
        fetched later while /readyz says what is missing. A catalog source with no
        bundle yet is asked once; if that fails, the shipped catalog stands in."""
        await self._fetch_first_bundles()
        delay = 1.0
        while True:
            for source in [source for source in self.remote if source.missing]:
                log.warning(
                    "list %s: no copy yet; fetching %s (timeout %g s)%s",
                    source.label,
                    source.config.url,
                    source.config.timeout,
                    ", required: no DNS is served without it" if source.config.required else "",
                )
                await asyncio.to_thread(source.refresh)
            waiting = [s for s in self.remote if s.config.required and s.missing]
            if not waiting:
                return
            log.error(
                "waiting for required lists %s; trying again in %.0f s",
                ", ".join(s.label for s in waiting),
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, REMOTE_RETRY_SECONDS)

    async def _fetch_first_bundles(self) -> None:
        for feed in self.feeds.feeds:
            if feed.last_good() is None:
                log.warning("catalog %s: no bundle yet; fetching %s", feed.label, feed.config.url)
                await asyncio.to_thread(self.feeds.refresh, feed)

    @property
    def catalog_dir(self) -> Path | None:
        return self._catalog_dir

    def build(self, *, starting: bool) -> BuiltPolicy:
        """The whole policy of this source's config. At start (no policy yet), a list the
        guard rejects is replaced by its last good copy; afterwards the whole build is
        rejected and the running policy stays. Blocking; run it in a thread."""
        built = build_steady(
            self.config,
            self._catalog_dir,
            self.remote,
            self._metrics.list_rejected,
            starting=starting,
        )
        self.adopt(built)
        return built

    def adopt(self, built: BuiltPolicy | None, rejected: Sequence[tuple[str, str]] = ()) -> None:
        """What a build tells the metrics: the list updates it did not believe (counted
        here when another process built the policy), and when it succeeded, the catalog
        it was built from and the lines each list skipped. Blocking (the catalog may be
        read); run it in a thread."""
        for source, reason in rejected:
            self._metrics.list_rejected(source, reason)
        if built is None:
            return
        self.feeds.observe(built.catalog)
        self._metrics.set_list_skipped(built.skipped)

    def start_refreshing(self, rebuild: Rebuild) -> None:
        self._refreshers = [
            asyncio.create_task(
                self._keep_fresh(
                    functools.partial(_fetched_at, source),
                    source.config.refresh,
                    source.refresh,
                    rebuild,
                )
            )
            for source in self.remote
        ] + [
            asyncio.create_task(
                self._keep_fresh(
                    feed.fetched_at,
                    feed.config.refresh,
                    functools.partial(self.feeds.refresh, feed),
                    rebuild,
                )
            )
            for feed in self.feeds.feeds
        ]

    def stop(self) -> None:
        for task in self._refreshers:
            task.cancel()
        if self._rebuild_task is not None:
            self._rebuild_task.cancel()

    async def _keep_fresh(
        self,
        fetched_at: Callable[[], float],
        period: float,
        refresh: Callable[[], bool],
        rebuild: Rebuild,
    ) -> None:
        """Refresh one remote list or catalog source forever; a new copy rebuilds the
        policy."""
        attempted = 0.0
        while True:
            due = fetched_at() + period
            if attempted > due - period:
                # The last attempt failed (fetched_at did not move): wait before the next
                # one instead of asking a list server that is down in a tight loop.
                due = max(due, attempted + min(period, REMOTE_RETRY_SECONDS))
            await asyncio.sleep(max(due - time.time(), 0))
            attempted = time.time()
            if await asyncio.to_thread(refresh):
                self._rebuild_soon(rebuild)

    def _rebuild_soon(self, rebuild: Rebuild) -> None:
        if self._rebuild_task is None or self._rebuild_task.done():
            self._rebuild_task = asyncio.get_running_loop().create_task(self._rebuild(rebuild))

    async def _rebuild(self, rebuild: Rebuild) -> None:
        """A rebuild that fails (a local list unreadable at that moment) is tried again
        with back-off until one succeeds, counted, and the gauge stays up meanwhile."""
        delay = REBUILD_RETRY_FIRST
        self._metrics.rebuild_pending.set(1)
        try:
            while not await rebuild():
                self._metrics.rebuild_failures.inc()
                log.error("policy rebuild failed; trying again in %.0f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, REBUILD_RETRY_MAX)
        finally:
            self._metrics.rebuild_pending.set(0)


def build_steady(
    config: Config,
    catalog_dir: Path | None,
    remote: Sequence[RemoteList],
    rejected: Rejected,
    *,
    starting: bool,
) -> BuiltPolicy:
    """The whole policy of ``config``, never from a list file caught mid-rewrite; the
    local lists that pass their guard become their last good copies. Raises PolicyError."""
    try:
        return build_when_steady(
            config.list_paths(),
            lambda: load_policy(
                config,
                catalog_dir,
                remote,
                rejected=rejected,
                remember=True,
                fallback=starting,
            ),
        )
    except ListsChanging as error:
        raise PolicyError(str(error)) from None


def _fetched_at(source: RemoteList) -> float:
    copy = source.last_good()
    return copy.fetched_at if copy is not None else 0.0
