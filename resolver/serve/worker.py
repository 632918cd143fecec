"""One worker process: a data plane on its own UDP socket of each address, steered its
share of the question names, told by the supervisor which version of the policy to
answer from.

A worker is forked from the supervisor once the policy is built, so it starts with the
policy, the sockets, the shared health board and rate-limit buckets, and the hash secret
the policy's name table was built with. It never reads the config or a list itself: the
supervisor does, once, and sends each new version through the control channel
(``prepare``, then ``commit`` on every worker). Attempts on banned names go to the
supervisor, which owns the audit trail; a question to an upstream that fails makes the
supervisor probe it, once for the whole server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from resolver import background
from resolver.audit.attempts import AttemptBatcher
from resolver.config import Config
from resolver.dns.model import Query
from resolver.logs import setup_logging
from resolver.metrics import Metrics
from resolver.pipeline import Pipeline, ProcessParts
from resolver.policy.loading import BuiltPolicy, retire
from resolver.policy.published import Published, load_published
from resolver.serve.channel import Channel
from resolver.serve.dataplane import DataPlane, Prepared
from resolver.serve.exposition import exposition
from resolver.serve.relay import RelayingRunner
from resolver.serve.sockets import DnsSockets
from resolver.shared import BucketTable, HealthBoard
from resolver.upstream.forwarder import Upstream
from resolver.upstream.health import Health, SharedHealth

log = logging.getLogger(__name__)

# Attempts go to the supervisor at each audit flush interval, or sooner once this many
# distinct ones wait: a flood of distinct banned names then travels in notes of tens of
# kilobytes, never in one of megabytes that both processes would hold at once.
AUDIT_NOTE_ROWS = 1000


@dataclass
class WorkerStart:
    """Everything a worker is born with (inherited through fork, never pickled)."""

    index: int
    workers: int
    config: Config
    built: BuiltPolicy
    version: int
    sockets: list[DnsSockets]
    encrypted: list[tuple[str, socket.socket]]  # DoT/DoH listening sockets (kind, socket)
    relay: list[socket.socket]
    channel: socket.socket
    board: HealthBoard
    slots: dict[str, int]  # upstream label -> its slot on the board
    buckets: BucketTable
    paused_until: float = 0.0  # a pause in force when the worker is forked (monotonic)


def run_in_child(start: WorkerStart, inherited: list[socket.socket]) -> NoReturn:
    """The forked child: forget the parent's event loop and signal handlers, close what
    only the parent needs, serve until told to stop, and never return."""
    code = 1
    try:
        for sock in inherited:
            sock.close()
        signal.set_wakeup_fd(-1)
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(number, signal.SIG_DFL)
        # A fork from inside the supervisor's running loop (a restart) inherits that loop
        # as "running" in this thread; this process starts its own.
        asyncio.events._set_running_loop(None)
        setup_logging(start.config.logging)
        asyncio.run(_serve(start))
        code = 0
    except KeyboardInterrupt:
        code = 0
    except BaseException:
        log.exception("worker %d failed", start.index)
    finally:
        logging.shutdown()
        os._exit(code)


class _Worker:
    def __init__(self, start: WorkerStart) -> None:
        self.start = start
        self.stopping = asyncio.Event()
        self.metrics = Metrics()
        self.batcher = AttemptBatcher(bounded=True)
        self._dropped_sent = 0
        self.channel = Channel(start.channel, self.handle)
        self.slots = dict(start.slots)
        self._prepared: dict[int, Prepared] = {}
        parts = ProcessParts(
            worker=start.index,
            workers=start.workers,
            health=self.health_of,
            buckets=start.buckets,
        )
        self.data = DataPlane(
            start.config, self.metrics, self.record, parts, self.runner_for, self.audit
        )
        self.relaying: RelayingRunner | None = None

    def runner_for(self, pipeline: Pipeline) -> RelayingRunner:
        self.relaying = RelayingRunner(
            pipeline.head, self.metrics, self.start.index, self.start.relay
        )
        return self.relaying

    def health_of(self, server: Upstream) -> Health:
        label = server.label
        slot = self.slots.get(label, 0)
        return SharedHealth(
            self.start.board,
            slot,
            lambda: self.channel.note("suspect", label),
            lambda: self.channel.note("alive", label),
        )

    def record(self, query: Query, group: str, service: str, category: str, action: str) -> None:
        self.metrics.count_attempt(query, group, service, category, action)
        self.audit(query.client, group, query.qname, query.qtype, service, category, action)

    def audit(
        self,
        client: str,
        group: str,
        name: bytes,
        qtype: int,
        service: str,
        category: str,
        action: str,
    ) -> None:
        """An attempt for the supervisor's audit trail (the fast path's way in too)."""
        if not self.data.config.audit.enabled:
            return
        self.batcher.record(client, group, name, qtype, service, category, action)
        if len(self.batcher) >= AUDIT_NOTE_ROWS:
            self.send_attempts()

    async def handle(self, op: str, payload: Any) -> Any:
        """A request from the supervisor."""
        if op == "metrics":
            return await exposition(self.metrics.registry)
        if op == "ready":
            return await self.data.ready()
        if op == "check":
            return await self.data.check(*payload)
        if op == "stats":
            return self.data.stats()
        if op == "pause":
            self.data.pause(payload)
            return True
        if op == "prepare":
            return await self.prepare(*payload)
        if op == "commit":
            return await self.commit(payload)
        if op == "abort":
            self._prepared.pop(payload, None)
            return True
        raise ValueError(f"unknown request {op!r}")

    async def prepare(
        self, version: int, published: Published, config: Config, slots: dict[str, int]
    ) -> bool:
        built = await asyncio.to_thread(load_published, published)
        self.slots.update(slots)
        self._prepared[version] = self.data.prepare(config, built, version)
        return True

    async def commit(self, version: int) -> int:
        retired = self.data.commit(self._prepared.pop(version))
        await asyncio.to_thread(retire, retired)
        return version

    async def flush_attempts(self) -> None:
        interval = self.start.config.audit.flush_interval
        while True:
            await asyncio.sleep(interval)
            self.send_attempts()

    def send_attempts(self) -> None:
        batches, dropped = self.batcher.take()
        if batches or dropped > self._dropped_sent:
            self.channel.note("audit", (batches, dropped - self._dropped_sent))
            self._dropped_sent = dropped


async def _serve(start: WorkerStart) -> None:
    worker = _Worker(start)
    loop = asyncio.get_running_loop()
    background.helper_threads(loop)
    loop.add_signal_handler(signal.SIGTERM, worker.stopping.set)
    loop.add_signal_handler(signal.SIGINT, worker.stopping.set)
    # The supervisor reads the config and the lists; a SIGHUP sent to the whole
    # process group reaches it, and it tells every worker what to load.
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    worker.data.install(start.config, start.built, start.version)
    if start.paused_until > time.monotonic():
        worker.data.pause(start.paused_until - time.monotonic())
    await worker.channel.start()
    await worker.data.listen(start.sockets, start.encrypted)
    assert worker.relaying is not None
    worker.relaying.start(loop)
    flusher = loop.create_task(worker.flush_attempts())
    worker.channel.note("started", start.index)
    # The supervisor gone (its end of the channel closed): a worker must not outlive it.
    gone = loop.create_task(worker.channel.closed.wait())
    stopping = loop.create_task(worker.stopping.wait())
    await asyncio.wait({gone, stopping}, return_when=asyncio.FIRST_COMPLETED)
    log.info("worker %d: shutting down: finishing answers in flight", start.index)
    await worker.data.stop()
    flusher.cancel()
    worker.send_attempts()
    with contextlib.suppress(Exception):
        # Let the last notes reach the supervisor before the channel closes.
        await asyncio.sleep(0.05)
    worker.channel.close()
    gone.cancel()
    stopping.cancel()
