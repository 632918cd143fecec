"""Answer repeated questions from memory, with TTLs counting down (RFC 1035, RFC 2308),
and keep answering known names when the upstreams fail (serve-stale, RFC 8767)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Final

from resolver.config import CacheConfig
from resolver.dns import wire
from resolver.dns.model import Answer, Handler, Outcome, Query, Resolution
from resolver.metrics import Metrics

log = logging.getLogger(__name__)

CacheKey = tuple[bytes, int, int]

# What an entry costs besides its message: the key, the entry object, its dict slot and
# the copy served with TTLs counted down (measured with sys.getsizeof, rounded up).
ENTRY_OVERHEAD = 400

# RFC 8767 5 "failure recheck timer": after the upstreams failed for a name, its stale
# answer is served without asking them again for this long, so a dead upstream is not
# hammered with one query per client query.
STALE_RECHECK_SECONDS = 30.0


# An entry: (message, ttl_offsets, rcode, cnames, stored, expires, served_age, served,
# recheck_after). ``served`` is the copy last served and ``served_age`` its age in whole
# seconds: every hit within the same second reuses it instead of rewriting the TTLs.
# Until ``recheck_after`` the stale answer is served without asking upstream (after a
# failure). A plain tuple of bytes and numbers, replaced and never changed: the garbage
# collector stops tracking it at its first pass, so a full cache never lengthens a
# collection (as objects, every 32,000 entries cost a full collection 15 ms).
_Entry = tuple[bytes, tuple[int, ...], int, tuple[bytes, ...], float, float, int, bytes, float]
_RCODE: Final = 2
_EXPIRES: Final = 5
_RECHECK: Final = 8


def _capped_ttls(message: bytes, ttl_offsets: tuple[int, ...], limit: int) -> bytes:
    out = bytearray(message)
    for offset in ttl_offsets:
        if wire.U32.unpack_from(out, offset)[0] > limit:
            wire.U32.pack_into(out, offset, limit)
    return bytes(out)


def _failed(answer: Answer) -> bool:
    """Every upstream failed (the forwarder's own SERVFAIL, or one relayed)."""
    return answer.rcode == wire.SERVFAIL


class AnswerCache:
    """A bounded LRU map from question to relayed answer bytes.

    Expired entries stay (within the size bound) for ``max_stale`` seconds, for
    ``stale``; ``get`` never returns them.
    """

    def __init__(self, config: CacheConfig, metrics: Metrics, share: int = 1) -> None:
        """``share``: the number of workers the cache's bytes are split between."""
        self._config = config
        self._metrics = metrics
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self.max_bytes = config.max_bytes // max(share, 1)
        self.bytes = 0  # what the entries cost now (cost())

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def cost(message: bytes) -> int:
        """The bytes an entry for ``message`` is counted as: the message, the copy served
        with counted-down TTLs, and ENTRY_OVERHEAD."""
        return 2 * len(message) + ENTRY_OVERHEAD

    @property
    def config(self) -> CacheConfig:
        return self._config

    def _clamp(self, ttl: int) -> int:
        return min(max(ttl, self._config.min_ttl), self._config.max_ttl)

    def get(self, key: CacheKey, now: float) -> Answer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        message, offsets, rcode, cnames, stored, expires, served_age, served, recheck = entry
        if now >= expires:
            if now >= expires + self._config.max_stale:
                self._drop(key)
            return None
        self._entries.move_to_end(key)
        age = int(now - stored)
        if age != served_age:
            copy = bytearray(message)
            for offset in offsets:
                ttl = self._clamp(wire.U32.unpack_from(copy, offset)[0])
                wire.U32.pack_into(copy, offset, max(ttl - age, 0))
            served = bytes(copy)
            self._entries[key] = (
                message,
                offsets,
                rcode,
                cnames,
                stored,
                expires,
                age,
                served,
                recheck,
            )
        return Answer(
            message=served,
            outcome=Outcome.CACHED,
            rcode=rcode,
            cnames=cnames,
            # Reusable until expiry by whoever counts the TTLs down by the second from
            # ``stored`` (the fast path does; without that, until the next second).
            ttl_offsets=offsets,
            reuse_until=expires,
            countdown=(stored, age),
        )

    def _stale_entry(self, key: CacheKey, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if (
            entry is None
            or now < entry[_EXPIRES]
            or now >= entry[_EXPIRES] + self._config.max_stale
            # A failure is not an answer: it is never served again as if it were one.
            or entry[_RCODE] == wire.SERVFAIL
        ):
            return None
        return entry

    def stale(self, key: CacheKey, now: float) -> Answer | None:
        """The expired answer for ``key``, TTLs set to ``stale_ttl`` (RFC 8767 4), or None
        when there is none within ``max_stale``."""
        entry = self._stale_entry(key, now)
        if entry is None:
            return None
        message, offsets, rcode, cnames = entry[:4]
        copy = bytearray(message)
        for offset in offsets:
            wire.U32.pack_into(copy, offset, self._config.stale_ttl)
        if rcode == wire.NXDOMAIN:
            ede = (wire.EDE_STALE_NXDOMAIN_ANSWER, "no upstream answered; expired NXDOMAIN")
        else:
            ede = (wire.EDE_STALE_ANSWER, "no upstream answered; expired answer")
        return Answer(
            message=bytes(copy),
            outcome=Outcome.STALE,
            rcode=rcode,
            ede=ede,
            cnames=cnames,
        )

    def failed(self, key: CacheKey, now: float) -> None:
        """The upstreams failed for ``key``: serve its stale answer without asking them
        again for a while."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries[key] = (*entry[:_RECHECK], now + STALE_RECHECK_SECONDS)

    def recheck_pending(self, key: CacheKey, now: float) -> bool:
        entry = self._entries.get(key)
        return entry is not None and now < entry[_RECHECK]

    def _drop(self, key: CacheKey) -> None:
        entry = self._entries.pop(key)
        self.bytes -= self.cost(entry[0])

    def put(self, key: CacheKey, answer: Answer, now: float) -> None:
        if answer.cache_ttl is None or self.max_bytes == 0:
            return
        ttl = self._clamp(answer.cache_ttl)
        message = answer.message
        # NODATA (NOERROR with an empty answer section) is as negative as NXDOMAIN
        # (RFC 2308 2.2); its SOA makes ttl_offsets non-empty, so test ANCOUNT instead.
        if answer.rcode == wire.NXDOMAIN or wire.U16.unpack_from(message, 6)[0] == 0:
            ttl = min(ttl, self._config.max_negative_ttl)
            # Served from here, the SOA TTL tells downstream caches how long to keep the
            # negative answer (RFC 2308 5); it must not outlive our own entry.
            message = _capped_ttls(message, answer.ttl_offsets, ttl)
        if ttl <= 0 or self.cost(message) > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (
            message,
            answer.ttl_offsets,
            answer.rcode,
            answer.cnames,
            now,
            now + ttl,
            -1,
            b"",
            0.0,
        )
        self.bytes += self.cost(message)
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
            self._metrics.cache_evictions.inc()
        self._metrics.cache_entries.set(len(self._entries))
        self._metrics.cache_bytes.set(self.bytes)


class CacheHandler:
    name = "cache"

    def __init__(
        self,
        cache: AnswerCache,
        metrics: Metrics,
        next_handler: Handler,
        config: CacheConfig | None = None,
    ) -> None:
        self.cache = cache
        self._metrics = metrics
        self._next = next_handler
        config = config if config is not None else cache.config
        self._serve_stale = config.max_stale > 0 and config.max_bytes > 0
        self._client_timeout = config.stale_client_timeout
        # Upstream queries still running after their client got a stale answer: they
        # refresh the cache when they complete (held here: the loop keeps weak references).
        self._refreshing: set[asyncio.Future[Answer]] = set()

    def handle(self, query: Query) -> Resolution:
        # DO and CD change what upstream returns (signatures, unvalidated data): key on them.
        edns_do = 1 if query.edns is not None and query.edns.do else 0
        key = (query.qname, query.qtype, edns_do | (query.flags & wire.CD))
        now = time.monotonic()
        hit = self.cache.get(key, now)
        if hit is not None:
            self._metrics.cache_hits.inc()
            return hit
        self._metrics.cache_misses.inc()
        stale = self.cache.stale(key, now) if self._serve_stale else None
        if stale is not None and self.cache.recheck_pending(key, now):
            return stale
        result = self._next.handle(query)
        if isinstance(result, Answer):
            return self._settle(key, result, stale)
        if stale is None:
            return self._store_when_ready(key, result)
        return self._stale_if_slow(key, result, stale)

    def _settle(self, key: CacheKey, answer: Answer, stale: Answer | None) -> Answer:
        now = time.monotonic()
        if stale is not None and _failed(answer):
            self.cache.failed(key, now)
            return stale
        self.cache.put(key, answer, now)
        return answer

    async def _store_when_ready(self, key: CacheKey, pending: Awaitable[Answer]) -> Answer:
        answer = await pending
        self.cache.put(key, answer, time.monotonic())
        return answer

    async def _stale_if_slow(
        self, key: CacheKey, pending: Awaitable[Answer], stale: Answer
    ) -> Answer:
        """RFC 8767 5 "client response timer": the client gets the stale answer if no
        upstream has answered within ``stale_client_timeout``; the upstream query goes on
        and refreshes the cache when it completes."""
        upstream = asyncio.ensure_future(pending)
        try:
            answer = await asyncio.wait_for(asyncio.shield(upstream), self._client_timeout)
        except TimeoutError:
            self._refreshing.add(upstream)
            upstream.add_done_callback(lambda done: self._refreshed(key, done))
            return stale
        return self._settle(key, answer, stale)

    def _refreshed(self, key: CacheKey, done: asyncio.Future[Answer]) -> None:
        self._refreshing.discard(done)
        if done.cancelled():
            return
        error = done.exception()
        if error is not None:
            log.error("upstream refresh failed: %r", error)
            return
        self._settle(key, done.result(), stale=None)
        if _failed(done.result()):
            self.cache.failed(key, time.monotonic())
