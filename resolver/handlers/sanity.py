"""Refuse what is not a well-formed, supported query before any other stage sees it."""

from __future__ import annotations

from typing import Final

from resolver.dns import responses, wire
from resolver.dns.model import Handler, Outcome, Query, Resolution

# Zone transfers are for authoritative servers; a forwarder has no zones to give.
_REFUSED_TYPES: Final = frozenset({wire.TYPE_AXFR, wire.TYPE_IXFR})


class SanityHandler:
    name = "sanity"

    def __init__(self, next_handler: Handler) -> None:
        self._next = next_handler

    def handle(self, query: Query) -> Resolution:
        if query.flags & wire.OPCODE_MASK:
            # NOTIFY, UPDATE, IQUERY...: RFC 1035 4.1.1 gives NOTIMP for unsupported kinds.
            return responses.error(query, wire.NOTIMP, Outcome.NOTIMP)
        if query.problem:
            return responses.error(query, wire.FORMERR, Outcome.FORMERR)
        if query.edns is not None and query.edns.version > 0:
            # RFC 6891 6.1.3: we speak EDNS version 0 only.
            return responses.error(query, wire.BADVERS, Outcome.BADVERS)
        if query.qtype == wire.TYPE_OPT:
            return responses.error(query, wire.FORMERR, Outcome.FORMERR)
        if query.qclass != wire.CLASS_IN or query.qtype in _REFUSED_TYPES:
            # CHAOS "version.bind" included: we do not tell strangers what we run.
            return responses.error(query, wire.REFUSED, Outcome.REFUSED)
        return self._next.handle(query)
