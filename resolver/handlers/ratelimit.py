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
from collections.abc import Callable

from resolver.clients import MEMO_LIMIT, client_ip
from resolver.config import RateLimitConfig
from resolver.dns import responses
from resolver.dns.model import Handler, Outcome, Query, Resolution
from resolver.metrics import Metrics
from resolver.shared import BucketTable

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
        buckets: BucketTable | None = None,
    ) -> None:
        """``buckets``: the table the workers of a server share (resolver.shared); a
        single process makes its own."""
        self._rate = config.rate
        self._burst = float(config.burst)
        self._slip = config.slip
        self._v4_shift = 32 - config.ipv4_prefix
        self._v6_shift = 128 - config.ipv6_prefix
        self._next = next_handler
        self._clock = clock
        self._dropped_key = ("dropped",)
        self._truncated_key = ("truncated",)
        self._counter = metrics.ratelimited
        self._buckets = buckets if buckets is not None else BucketTable(config.max_prefixes)
        self._prefixes: dict[str, int] = {}

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
        limited = self._buckets.take(key, self._clock(), self._rate, self._burst)
        if not limited:
            return self._next.handle(query)
        if self._slip and limited % self._slip == 0:
            self._counter.inc(self._truncated_key)
            return responses.truncated(query, Outcome.TRUNCATED)
        self._counter.inc(self._dropped_key)
        return responses.error(query, 0, Outcome.DROPPED)
