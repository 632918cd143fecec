"""Limit UDP answers per client prefix (RRL style), so a flood or a reflection attack
spoofed in a victim's name gets a trickle, not the server's whole capacity.

A token bucket per /24 (IPv4) or /56 (IPv6) prefix: ``rate`` answers a second, up to
``burst`` saved up. Over the limit, every ``slip``-th answer goes out truncated (TC=1,
question only, never bigger than the query) so a real client behind the prefix retries
over TCP, where it is not limited; the rest are dropped (``Outcome.DROPPED``: the
transport sends nothing).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from resolver.clients import MEMO_LIMIT, client_ip
from resolver.config import RateLimitConfig
from resolver.dns import responses
from resolver.dns.model import Answer, Handler, Outcome, Query, Resolution
from resolver.metrics import Metrics

# Keeps IPv6 prefixes apart from IPv4 ones in the same table.
_IPV6_TAG = 1 << 128


class RateLimitHandler:
    name = "ratelimit"

    def __init__(
        self,
        config: RateLimitConfig,
        metrics: Metrics,
        next_handler: Handler,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = config.rate
        self._burst = float(config.burst)
        self._slip = config.slip
        self._limit = config.max_prefixes
        self._v4_shift = 32 - config.ipv4_prefix
        self._v6_shift = 128 - config.ipv6_prefix
        self._next = next_handler
        self._clock = clock
        self._dropped_key = ("dropped",)
        self._truncated_key = ("truncated",)
        self._counter = metrics.ratelimited
        # prefix -> [tokens, last refill, answers limited so far]. Oldest inserted first:
        # when full, the prefix tracked the longest is forgotten (O(1), unlike an LRU
        # reorder on every query).
        self._buckets: OrderedDict[int, list[float]] = OrderedDict()
        self._prefixes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def prefix(self, client: str) -> int | None:
        """The bucket key of a client's prefix (None: not an address, an internal probe)."""
        key = self._prefixes.get(client)
        if key is None:
            address = client_ip(client)
            if address is None:
                return None
            if address.version == 4:
                key = int(address) >> self._v4_shift
            else:
                key = _IPV6_TAG | (int(address) >> self._v6_shift)
            if len(self._prefixes) >= MEMO_LIMIT:
                self._prefixes.clear()
            self._prefixes[client] = key
        return key

    def handle(self, query: Query) -> Resolution:
        if query.protocol != "udp":
            return self._next.handle(query)
        key = self.prefix(query.client)
        if key is None:
            # Not an address (an internal probe): nothing to account it to.
            return self._next.handle(query)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._limit:
                self._buckets.popitem(last=False)
            bucket = [self._burst, now, 0.0]
            self._buckets[key] = bucket
        else:
            bucket[0] = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return self._next.handle(query)
        return self._limited(query, bucket)

    def _limited(self, query: Query, bucket: list[float]) -> Answer:
        bucket[2] += 1
        if self._slip and bucket[2] % self._slip == 0:
            self._counter.inc(self._truncated_key)
            return responses.truncated(query, Outcome.TRUNCATED)
        self._counter.inc(self._dropped_key)
        return responses.error(query, 0, Outcome.DROPPED)
