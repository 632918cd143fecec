"""Answer repeated questions from memory, with TTLs counting down (RFC 1035, RFC 2308)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass

from resolver import wire
from resolver.config import CacheConfig
from resolver.metrics import Metrics
from resolver.model import Answer, Handler, Outcome, Query, Resolution

CacheKey = tuple[bytes, int, int]


@dataclass(slots=True)
class _Entry:
    message: bytes
    ttl_offsets: tuple[int, ...]
    rcode: int
    cnames: tuple[bytes, ...]
    stored: float
    expires: float
    # The copy last served and its age in whole seconds: every hit within the same
    # second reuses it instead of rewriting the TTLs again.
    served_age: int = -1
    served: bytes = b""


def _capped_ttls(message: bytes, ttl_offsets: tuple[int, ...], limit: int) -> bytes:
    out = bytearray(message)
    for offset in ttl_offsets:
        if wire.U32.unpack_from(out, offset)[0] > limit:
            wire.U32.pack_into(out, offset, limit)
    return bytes(out)


class AnswerCache:
    """A bounded LRU map from question to relayed answer bytes."""

    def __init__(self, config: CacheConfig, metrics: Metrics) -> None:
        self._config = config
        self._metrics = metrics
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _clamp(self, ttl: int) -> int:
        return min(max(ttl, self._config.min_ttl), self._config.max_ttl)

    def get(self, key: CacheKey, now: float) -> Answer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        age = int(now - entry.stored)
        if age != entry.served_age:
            message = bytearray(entry.message)
            for offset in entry.ttl_offsets:
                ttl = self._clamp(wire.U32.unpack_from(message, offset)[0])
                wire.U32.pack_into(message, offset, max(ttl - age, 0))
            entry.served, entry.served_age = bytes(message), age
        return Answer(
            message=entry.served,
            outcome=Outcome.CACHED,
            rcode=entry.rcode,
            cnames=entry.cnames,
        )

    def put(self, key: CacheKey, answer: Answer, now: float) -> None:
        if answer.cache_ttl is None or self._config.size == 0:
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
        if ttl <= 0:
            return
        self._entries[key] = _Entry(
            message, answer.ttl_offsets, answer.rcode, answer.cnames, now, now + ttl
        )
        self._entries.move_to_end(key)
        while len(self._entries) > self._config.size:
            self._entries.popitem(last=False)
            self._metrics.cache_evictions.inc()
        self._metrics.cache_entries.set(len(self._entries))


class CacheHandler:
    name = "cache"

    def __init__(self, cache: AnswerCache, metrics: Metrics, next_handler: Handler) -> None:
        self.cache = cache
        self._metrics = metrics
        self._next = next_handler

    def handle(self, query: Query) -> Resolution:
        # DO and CD change what upstream returns (signatures, unvalidated data): key on them.
        edns_do = 1 if query.edns is not None and query.edns.do else 0
        key = (query.qname, query.qtype, edns_do | (query.flags & wire.CD))
        hit = self.cache.get(key, time.monotonic())
        if hit is not None:
            self._metrics.cache_hits.inc()
            return hit
        self._metrics.cache_misses.inc()
        result = self._next.handle(query)
        if isinstance(result, Answer):
            self.cache.put(key, result, time.monotonic())
            return result
        return self._store_when_ready(key, result)

    async def _store_when_ready(self, key: CacheKey, pending: Awaitable[Answer]) -> Answer:
        answer = await pending
        self.cache.put(key, answer, time.monotonic())
        return answer
