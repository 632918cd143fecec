"""Serve only the organisation's own clients (BCP 140): everyone else gets REFUSED."""

from __future__ import annotations

import ipaddress

from resolver.dns import responses, wire
from resolver.dns.model import Handler, Outcome, Query, Resolution
from resolver.metrics import Metrics

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Decisions are remembered per address; an office has a bounded number of clients, and a
# flood of spoofed sources only costs a cleared dict.
_MEMO_LIMIT = 65_536


class AccessHandler:
    name = "access"

    def __init__(
        self, allowed: tuple[str, ...], next_handler: Handler, metrics: Metrics | None = None
    ) -> None:
        self._networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(network, strict=False) for network in allowed
        )
        self._next = next_handler
        self._memo: dict[str, bool] = {}
        # Apart from the REFUSED of sanity (CHAOS, zone transfers): strangers knocking is
        # worth a panel of its own.
        self._refused = metrics.access_refused if metrics is not None else None

    def allows(self, client: str) -> bool:
        allowed = self._memo.get(client)
        if allowed is None:
            address = ipaddress.ip_address(client.split("%", 1)[0])
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            allowed = any(address in network for network in self._networks)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[client] = allowed
        return allowed

    def handle(self, query: Query) -> Resolution:
        if self.allows(query.client):
            return self._next.handle(query)
        if self._refused is not None:
            self._refused.inc()
        return responses.error(
            query, wire.REFUSED, Outcome.REFUSED, (wire.EDE_PROHIBITED, "client not allowed")
        )
