"""The last stage: hand the question to the upstream resolvers responsible for it."""

from __future__ import annotations

from typing import Protocol

from resolver.dns.model import Query, Resolution
from resolver.policy.domainset import DomainSet


class Upstreams(Protocol):
    """What answers a question from upstream (``resolver.upstream.forwarder.Forwarder``)."""

    def ask(self, query: Query) -> Resolution: ...


class ForwardingHandler:
    name = "forwarding"

    def __init__(self, default: Upstreams, conditional: DomainSet[Upstreams]) -> None:
        self.default = default
        # Internal zones (an AD domain, say) go to their own servers; most specific wins.
        self._conditional = conditional

    def handle(self, query: Query) -> Resolution:
        found = (
            self._conditional.match(query.qname, query.labels) if len(self._conditional) else None
        )
        forwarder = found.value if found is not None else self.default
        return forwarder.ask(query)
