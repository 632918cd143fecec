"""Serve only the organisation's own clients (BCP 140): everyone else gets REFUSED."""

from __future__ import annotations

from resolver.clients import NetworkMap
from resolver.config import ClientNetwork
from resolver.dns import responses, wire
from resolver.dns.model import Handler, Outcome, Query, Resolution
from resolver.metrics import Metrics


class AccessHandler:
    name = "access"

    def __init__(
        self,
        allowed: tuple[ClientNetwork, ...],
        next_handler: Handler,
        metrics: Metrics | None = None,
    ) -> None:
        self._allowed = NetworkMap(((n.network, True) for n in allowed), default=False)
        self._next = next_handler
        # Apart from the REFUSED of sanity (CHAOS, zone transfers): strangers knocking is
        # worth a panel of its own.
        self._refused = metrics.access_refused if metrics is not None else None

    def allows(self, client: str) -> bool:
        return self._allowed.lookup(client)

    def handle(self, query: Query) -> Resolution:
        if self._allowed.lookup(query.client):
            return self._next.handle(query)
        if self._refused is not None:
            self._refused.inc()
        return responses.error(
            query, wire.REFUSED, Outcome.REFUSED, (wire.EDE_PROHIBITED, "client not allowed")
        )
