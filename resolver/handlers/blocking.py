"""Answer blocked names ourselves, and block answers whose CNAME chain leads to one."""

from __future__ import annotations

from collections.abc import Awaitable

from resolver import wire
from resolver.blocklist import Blocklist, Rule
from resolver.model import Answer, Handler, Query, Resolution
from resolver.responses import BlockAnswers

# Enough for every banned name an office asks for in a day; a flood of random names only
# costs a cleared dict.
BUILT_ANSWERS_LIMIT = 16_384


class BlockingHandler:
    name = "blocking"

    def __init__(
        self,
        blocklist: Blocklist,
        answers: BlockAnswers,
        next_handler: Handler,
        *,
        cname_inspection: bool = True,
    ) -> None:
        self.blocklist = blocklist
        self._answers = answers
        self._next = next_handler
        self._inspect = cname_inspection
        # Block answers already built, by (name, type): the same few banned names are asked
        # over and over, and an answer depends on nothing else (the codec puts in each
        # client's ID, flags and question case). Cleared with every policy swap.
        self._built: dict[tuple[bytes, int], Answer] = {}

    def replace_blocklist(self, blocklist: Blocklist) -> None:
        """Swap in a freshly built policy; one assignment, so no query sees a mix."""
        self.blocklist = blocklist
        self._built = {}

    def handle(self, query: Query) -> Resolution:
        built = self._built.get((query.qname, query.qtype))
        if built is not None:
            return built
        found = self.blocklist.match(query.qname, query.labels)
        if found is not None:
            if found.value.action != "allow":
                answer = self._block(query, found.value, found.label, found.value.description)
                if len(self._built) >= BUILT_ANSWERS_LIMIT:
                    self._built = {}
                self._built[query.qname, query.qtype] = answer
                return answer
            # An explicitly allowed name stays allowed wherever its CNAMEs lead.
            return self._next.handle(query)
        result = self._next.handle(query)
        if not self._inspect:
            return result
        if isinstance(result, Answer):
            return self._inspect_cnames(query, result)
        return self._inspect_when_ready(query, result)

    def _block(self, query: Query, rule: Rule, zone_label: int, reason: str) -> Answer:
        # Canaries must be NXDOMAIN: only that switches browser DNS-over-HTTPS off.
        mode = "nxdomain" if rule.action == "canary" else self._answers.mode
        answer = self._answers.build(query, zone_label, mode, reason)
        answer.service = rule.service
        answer.category = rule.category
        return answer

    def _inspect_cnames(self, query: Query, answer: Answer) -> Answer:
        for target in answer.cnames:
            found = self.blocklist.match(target, wire.label_starts(target))
            if found is not None and found.value.action != "allow":
                reason = f"{found.value.description} (via CNAME {wire.name_to_text(target)})"
                # The SOA is owned by the question name: the blocked target is not its parent.
                return self._block(query, found.value, 0, reason)
        return answer

    async def _inspect_when_ready(self, query: Query, pending: Awaitable[Answer]) -> Answer:
        return self._inspect_cnames(query, await pending)
