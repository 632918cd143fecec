"""The primary's side of the rpz feed: build each zone when the policy changes, write it
for every answering process, and tell the secondaries (NOTIFY, RFC 1996).

Exactly one process does this: the single server, or the supervisor of the workers
(which also builds the policy once). A rebuild runs in a thread, never on the query
path; rebuilds asked for while one runs are folded into one more. A policy version
with an expiry (``until:``) schedules a rebuild at that moment, so the zone follows the
policy in force without a reload.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
import time
from pathlib import Path

from resolver.config import Config, DnsEndpoint
from resolver.config.rpz import RpzZoneConfig
from resolver.dns import wire
from resolver.policy.loading import PolicyError
from resolver.policy.rpzzone import SOA, ZoneContent, ZoneWriter, build_zone, zone_dir

log = logging.getLogger(__name__)

NOTIFY_OPCODE = 4 << 11
# RFC 1996 3.6: retransmit until answered, a few times, with growing intervals.
NOTIFY_TRIES = 5
NOTIFY_FIRST_WAIT = 1.0


def notify_message(zone: str, ident: int) -> bytes:
    """A NOTIFY for ``zone`` (RFC 1996 3.7: QTYPE SOA, AA set)."""
    header = struct.pack("!HHHHHH", ident, NOTIFY_OPCODE | wire.AA, 1, 0, 0, 0)
    return header + wire.text_to_name(zone) + struct.pack("!HH", SOA, 1)


async def send_notify(zone: str, target: DnsEndpoint) -> bool:
    """NOTIFY ``target`` of a new serial of ``zone``; True once acknowledged."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
    wait = NOTIFY_FIRST_WAIT
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for _ in range(NOTIFY_TRIES):
            ident = random.getrandbits(16)
            await loop.sock_sendto(sock, notify_message(zone, ident), (target.host, target.port))
            deadline = loop.time() + wait
            while (left := deadline - loop.time()) > 0:
                try:
                    data, _peer = await asyncio.wait_for(loop.sock_recvfrom(sock, 512), left)
                except (TimeoutError, OSError):
                    break
                if len(data) >= 12:
                    answer_id, flags = struct.unpack_from("!HH", data)
                    if answer_id == ident and flags & wire.QR and flags & 0x7800 == NOTIFY_OPCODE:
                        return True
            wait *= 2
    return False


class RpzFeed:
    """Builds, writes and announces the ``rpz:`` zones of one server."""

    def __init__(self, config: Config, catalog_dir: Path | None) -> None:
        self._config = config
        self._catalog_dir = catalog_dir
        self._writers: dict[str, ZoneWriter] = {}
        # Per zone, the versions still to come: (content, until when it holds).
        self._versions: dict[str, list[tuple[ZoneContent, float | None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._timer: asyncio.TimerHandle | None = None
        self._notifying: set[asyncio.Task[bool]] = set()
        self.serials: dict[str, int] = {}

    def policy_changed(self, config: Config) -> None:
        """The policy (or the config) changed: rebuild the zones in the background."""
        self._config = config
        if not config.rpz:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._rebuild_all())
        self._task.add_done_callback(_report)

    async def rebuilt(self) -> None:
        """Wait for the rebuild in progress, if any (start-up)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def _rebuild_all(self) -> None:
        while True:
            self._again = False
            config = self._config
            self._versions = {k: v for k, v in self._versions.items() if k in _names(config)}
            for item in config.rpz:
                try:
                    self._versions[item.name] = await asyncio.to_thread(
                        build_zone, config, item, self._catalog_dir, time.time()
                    )
                except (PolicyError, OSError, ValueError) as error:
                    # The zone in the files stays: secondaries keep the last good policy,
                    # and so does this server (a reload that cannot build is rejected).
                    log.error("rpz zone %s not rebuilt, the last one stays: %s", item.name, error)
            await self._publish_due()
            if not self._again:
                return

    async def _publish_due(self) -> None:
        """Publish the version in force now of every zone; a timer for the next expiry."""
        config, now = self._config, time.time()
        expiries = []
        for item in config.rpz:
            versions = self._versions.get(item.name)
            if not versions:
                continue
            while len(versions) > 1 and (until := versions[0][1]) is not None and until <= now:
                versions.pop(0)
            content, until = versions[0]
            if until is not None:
                expiries.append(until)
            try:
                await self._publish(config, item, content)
            except OSError as error:
                log.error("rpz zone %s: cannot write the zone: %s", item.name, error)
        self._schedule(min(expiries, default=None))

    async def _publish(self, config: Config, item: RpzZoneConfig, content: ZoneContent) -> None:
        writer = self._writers.get(item.name)
        if writer is None or writer.directory != zone_dir(config.state_dir, item.name):
            writer = self._writers[item.name] = ZoneWriter(config.state_dir, item.name)
        serial, new = await asyncio.to_thread(writer.publish, content)
        self.serials[item.name] = serial
        if new:
            log.info("rpz zone %s: serial %d, %d records", item.name, serial, len(content.records))
            for target in item.notify:
                self._notify(item.name, target)

    def _notify(self, zone: str, target: DnsEndpoint) -> None:
        task = asyncio.get_running_loop().create_task(send_notify(zone, target))
        self._notifying.add(task)

        def done(finished: asyncio.Task[bool]) -> None:
            self._notifying.discard(finished)
            if not finished.cancelled() and finished.result() is not True:
                log.warning("rpz zone %s: NOTIFY to %s not acknowledged", zone, target)

        task.add_done_callback(done)

    def _schedule(self, until: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if until is not None:
            delay = max(until - time.time(), 0) + 0.01
            self._timer = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        """A temporary rule ended: the next version, built beforehand, goes out now."""
        self._timer = None
        if self._task is not None and not self._task.done():
            self._again = True  # the rebuild in progress publishes what is due
            return
        self._task = asyncio.get_running_loop().create_task(self._publish_due())
        self._task.add_done_callback(_report)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in [*self._notifying, *([self._task] if self._task else [])]:
            task.cancel()


def _names(config: Config) -> set[str]:
    return {item.name for item in config.rpz}


def _report(task: asyncio.Task[None]) -> None:
    """A bug in a rebuild is logged; the zone last published stays in force."""
    if not task.cancelled() and task.exception() is not None:
        log.error("rpz zones not rebuilt: %r", task.exception())
