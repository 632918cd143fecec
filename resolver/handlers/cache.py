"""Answer repeated questions from memory, with TTLs counting down (RFC 1035, RFC 2308),
and keep answering known names when the upstreams fail (serve-stale, RFC 8767)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable
from typing import Final

from resolver.config import CacheConfig
from resolver.dns import wire
from resolver.dns.model import Answer, Handler, Outcome, Query, Resolution
from resolver.dns.pending import Pending
from resolver.handlers.cache_entry import (
    HEAD,
    Entry,
    cache_key,
    cnames_in,
    message_length,
    pack,
    pack_parts,
    served_anew,
    ttl_offsets,
    unpack,
)
from resolver.metrics import Metrics

log = logging.getLogger(__name__)

# ``cache_entry.cache_key``: bytes, as the entries, so the garbage collector never
# walks the cache.
CacheKey = bytes

# What an entry costs besides its message: the key, the entry object, its dict slot and
# the copy served with TTLs counted down (measured with sys.getsizeof, rounded up).
ENTRY_OVERHEAD: Final = 400

# The cache is split into slabs, each a least-recently-used map with its share of the
# bytes (as Unbound's msg-cache-slabs), so that no single dict holds it all. Measured on
# the development VM, for a full 64 MiB cache (about 130,000 answers):
# - a dict that grows, or that fills with the holes of evicted entries, copies itself
#   whole, in the callback that answers: 9 ms at 87,381 entries, 23 ms at 174,762;
# - one dict used as a queue (the oldest evicted from the front) leaves holes there that
#   every eviction steps over again until the next copy: up to 12 ms per answer stored;
# - an OrderedDict avoids that, but the garbage collector walks its linked entries
#   slowly: 18-55 ms per full collection, which ran every few seconds under misses
#   (plain dicts: 2 ms).
# So each slab is plain dicts, kept in least-recently-used order by taking a hit out
# and putting it back at the end. A slab gets at least SLAB_BYTES, so a small cache is
# one slab, least recently used first across all of it.
MAX_SLABS: Final = 64
SLAB_BYTES: Final = 512 * 1024
# A slab is two dicts, so that an eviction never steps over holes: ``young`` takes the
# new entries and the hits; ``old`` holds entries all less recently used than any in
# ``young``, least recently used *last*, so an eviction is ``old.popitem()``. When
# ``old`` is empty, ``young`` becomes it, reversed, in one copy; a hit on an entry in
# ``old`` moves it to ``young``. That is exact LRU order. Taking a slab's first key
# instead steps over the hole each eviction leaves in front of it: in a full 64 MiB
# cache (slabs of about 2,000 answers) a put with its eviction took 3.7-3.9 µs with the
# slab copied without its holes every 256 evictions, against 1.5 µs while the cache
# filled (development VM, 2026-12-01; the least of five runs of 60,000 puts); with the
# two dicts, 2.6-2.7 µs, and no copy but the one a generation makes as it grows old.

# RFC 8767 5 "failure recheck timer": after the upstreams failed for a name, its stale
# answer is served without asking them again for this long, so a dead upstream is not
# hammered with one query per client query.
STALE_RECHECK_SECONDS: Final = 30.0


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
        self.max_bytes = config.max_bytes // max(share, 1)
        slabs = 1
        while slabs < MAX_SLABS and self.max_bytes // (2 * slabs) >= SLAB_BYTES:
            slabs *= 2
        # Per slab: the young and the old generation (see SLAB_BYTES).
        self._young: list[dict[CacheKey, bytes]] = [{} for _ in range(slabs)]
        self._old: list[dict[CacheKey, bytes]] = [{} for _ in range(slabs)]
        self._slab_mask = slabs - 1
        self._slab_limit = self.max_bytes // slabs
        self._slab_bytes = [0] * slabs
        self.bytes = 0  # what the entries cost now (cost())
        # Read when scraped: exact, and nothing to do per answer stored (Gauge.set takes
        # a lock). The cache built last is the one the pipeline uses.
        metrics.cache_entries.set_function(self.__len__)
        metrics.cache_bytes.set_function(lambda: self.bytes)

    def __len__(self) -> int:
        return sum(map(len, self._young)) + sum(map(len, self._old))

    @property
    def slabs(self) -> int:
        return len(self._young)

    def _holder(self, key: CacheKey) -> dict[CacheKey, bytes] | None:
        """The dict of ``key``'s slab that holds it (None: not cached)."""
        index = hash(key) & self._slab_mask
        young = self._young[index]
        if key in young:
            return young
        old = self._old[index]
        return old if key in old else None

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
        index = hash(key) & self._slab_mask
        entries = self._young[index]
        data = entries.get(key)
        holder = entries
        if data is None:
            holder = self._old[index]
            data = holder.get(key)
            if data is None:
                return None
        # Only what a hit needs is read: the head, the offsets and names when there are
        # any, and the message only when the copy served last is not of this second.
        stored, expires, _, served_age, rcode, count, cnames_length, length = HEAD.unpack_from(data)
        if now >= expires:
            if now >= expires + self._config.max_stale:
                self._drop(key)
            return None
        del holder[key]  # back in at the young end: the most recently used
        offsets = ttl_offsets(data, count) if count else ()
        start = HEAD.size + 2 * count
        end = start + cnames_length
        age = int(now - stored)
        message_end = end + length
        if age == served_age:
            entries[key] = data
            served = data[message_end:]
        else:
            served = self._counted_down(data[end:message_end], offsets, age)
            entries[key] = served_anew(data, message_end, age, served)
        return Answer(
            message=served,
            outcome=Outcome.CACHED,
            rcode=rcode,
            cnames=cnames_in(data, start, end) if cnames_length else (),
            # Reusable until expiry by whoever counts the TTLs down by the second from
            # ``stored`` (the fast path does; without that, until the next second).
            ttl_offsets=offsets,
            reuse_until=expires,
            countdown=(stored, age),
        )

    def _counted_down(self, message: bytes, ttl_offsets: tuple[int, ...], age: int) -> bytes:
        """``message`` with each TTL clamped, then less ``age`` seconds, never below 0
        (RFC 1035 7.4, RFC 2181 8)."""
        copy = bytearray(message)
        for offset in ttl_offsets:
            ttl = self._clamp(wire.U32.unpack_from(copy, offset)[0])
            wire.U32.pack_into(copy, offset, max(ttl - age, 0))
        return bytes(copy)

    def _stale_entry(self, key: CacheKey, now: float) -> Entry | None:
        holder = self._holder(key)
        if holder is None:
            return None
        entry = unpack(holder[key])
        if (
            now < entry.expires
            or now >= entry.expires + self._config.max_stale
            # A failure is not an answer: it is never served again as if it were one.
            or entry.rcode == wire.SERVFAIL
        ):
            return None
        return entry

    def stale(self, key: CacheKey, now: float) -> Answer | None:
        """The expired answer for ``key``, TTLs set to ``stale_ttl`` (RFC 8767 4), or None
        when there is none within ``max_stale``."""
        entry = self._stale_entry(key, now)
        if entry is None:
            return None
        copy = bytearray(entry.message)
        for offset in entry.ttl_offsets:
            wire.U32.pack_into(copy, offset, self._config.stale_ttl)
        if entry.rcode == wire.NXDOMAIN:
            ede = (wire.EDE_STALE_NXDOMAIN_ANSWER, "no upstream answered; expired NXDOMAIN")
        else:
            ede = (wire.EDE_STALE_ANSWER, "no upstream answered; expired answer")
        return Answer(
            message=bytes(copy),
            outcome=Outcome.STALE,
            rcode=entry.rcode,
            ede=ede,
            cnames=entry.cnames,
        )

    def failed(self, key: CacheKey, now: float) -> None:
        """The upstreams failed for ``key``: serve its stale answer without asking them
        again for a while."""
        holder = self._holder(key)
        if holder is not None:
            recheck = now + STALE_RECHECK_SECONDS
            holder[key] = pack(unpack(holder[key])._replace(recheck_after=recheck))

    def recheck_pending(self, key: CacheKey, now: float) -> bool:
        holder = self._holder(key)
        return holder is not None and now < HEAD.unpack_from(holder[key])[2]  # recheck_after

    def _drop(self, key: CacheKey) -> None:
        holder = self._holder(key)
        if holder is not None:
            self._account(hash(key) & self._slab_mask, holder.pop(key))

    def _account(self, index: int, data: bytes) -> None:
        """An entry of slab ``index`` is gone: its bytes no longer count."""
        cost = 2 * message_length(data) + ENTRY_OVERHEAD
        self._slab_bytes[index] -= cost
        self.bytes -= cost

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
        cost = self.cost(message)
        if ttl <= 0 or cost > self._slab_limit:
            return
        index = hash(key) & self._slab_mask
        young = self._young[index]
        if key in young or key in self._old[index]:
            self._drop(key)
        young[key] = pack_parts(
            now, now + ttl, 0.0, -1, answer.rcode, answer.ttl_offsets, answer.cnames, message, b""
        )
        self.bytes += cost
        self._slab_bytes[index] += cost
        while self._slab_bytes[index] > self._slab_limit:
            old = self._old[index]
            if not old:
                # The young generation grows old, least recently used last; the new
                # entry, just put, is then the last to go.
                old = self._old[index] = dict(reversed(young.items()))
                young = self._young[index] = {}
            self._account(index, old.popitem()[1])
            self._metrics.cache_evictions.inc()


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
        key = cache_key(query.qname, query.qtype, edns_do | (query.flags & wire.CD))
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
            return Pending.of(result).then(functools.partial(self._store, key))
        return Pending.of(self._stale_if_slow(key, result, stale))

    def _settle(self, key: CacheKey, answer: Answer, stale: Answer | None) -> Answer:
        now = time.monotonic()
        if stale is not None and _failed(answer):
            self.cache.failed(key, now)
            return stale
        self.cache.put(key, answer, now)
        return answer

    def _store(self, key: CacheKey, answer: Answer) -> Answer:
        """The step a miss's answer takes: into the cache, before it is sent."""
        self.cache.put(key, answer, time.monotonic())
        return answer

    async def _stale_if_slow(
        self, key: CacheKey, pending: Awaitable[Answer], stale: Answer
    ) -> Answer:
        """RFC 8767 5 "client response timer": the client gets the stale answer if no
        upstream has answered within ``stale_client_timeout``; the upstream query goes on
        and refreshes the cache when it completes. (A task: only names whose entry
        expired within ``max_stale`` come here.)"""
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
