"""Building blocks for handler unit tests: queries from dnspython, a fake next stage."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field

import dns.message
import dns.rdatatype

from resolver.dns import responses, wire
from resolver.dns.codec import encode_answer, parse_query
from resolver.dns.model import Answer, Outcome, Query, Resolution


def make_query(
    name: str, rdtype: str = "A", *, edns: bool = True, client: str = "127.0.0.1", **kw: object
) -> Query:
    message = dns.message.make_query(
        name, dns.rdatatype.from_text(rdtype), use_edns=0 if edns else False, **kw
    )
    query = parse_query(message.to_wire(), "udp", client)
    assert query is not None
    return query


def decode(query: Query, answer: Answer, udp: bool = True) -> dns.message.Message:
    return dns.message.from_wire(encode_answer(query, answer, udp=udp))


@dataclass
class FakeNext:
    """Records what reaches it; answers NOERROR at once, or later when ``delayed``."""

    delayed: bool = False
    answer: Answer | None = None
    seen: list[Query] = field(default_factory=list)
    name: str = "fake"

    def handle(self, query: Query) -> Resolution:
        self.seen.append(query)
        answer = self.answer or responses.error(query, wire.NOERROR, Outcome.FORWARDED)
        if self.delayed:
            return self._later(answer)
        return answer

    async def _later(self, answer: Answer) -> Answer:
        await asyncio.sleep(0)
        return answer


def resolve(result: Resolution) -> Answer:
    if isinstance(result, Answer):
        return result
    assert isinstance(result, Awaitable)

    async def wait() -> Answer:
        return await result

    return asyncio.run(wait())
