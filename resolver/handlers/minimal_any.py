"""Answer ANY with one small synthesized record (RFC 8482), as Cloudflare's resolvers do.

ANY is the classic amplification query: a few dozen bytes in, kilobytes out. No stub
resolver needs it (mail servers and browsers ask for the types they want), so it never
goes upstream: the answer is a single HINFO "RFC8482" "" record for the name asked,
not much bigger than the query whatever the name holds.
"""

from __future__ import annotations

from typing import Final

from resolver.dns import wire
from resolver.dns.model import Answer, Handler, Outcome, Query, Resolution

TYPE_HINFO: Final = 13
# Long enough that a stub asking again is rare; RFC 8482 4.2 leaves the choice to us.
HINFO_TTL: Final = 3600
# CPU "RFC8482", OS "" (two character-strings), as RFC 8482 4.2 suggests.
_HINFO_RDATA: Final = b"\x07RFC8482\x00"
# The owner is the question name, always at offset 12.
_RECORD: Final = (
    wire.U16.pack(0xC00C)
    + wire.RR_FIXED.pack(TYPE_HINFO, wire.CLASS_IN, HINFO_TTL, len(_HINFO_RDATA))
    + _HINFO_RDATA
)


class MinimalAnyHandler:
    name = "minimal_any"

    def __init__(self, next_handler: Handler) -> None:
        self._next = next_handler

    def handle(self, query: Query) -> Resolution:
        if query.qtype != wire.TYPE_ANY:
            return self._next.handle(query)
        message = (
            wire.HEADER.pack(0, wire.QR, 1, 1, 0, 0) + query.raw[12 : query.question_end] + _RECORD
        )
        return Answer(message=message, outcome=Outcome.SYNTHESIZED, rcode=wire.NOERROR)
