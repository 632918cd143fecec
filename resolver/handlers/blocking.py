"""Answer blocked names ourselves, and block answers whose CNAME chain leads to one.

The client's group decides which policy applies. A report-only rule (or group, or a
paused server) lets the query through but reports what would have been blocked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from resolver.dns import wire
from resolver.dns.model import Answer, Handler, Query, Resolution
from resolver.dns.pending import Pending
from resolver.policy.groups import ClientGroups, Group
from resolver.policy.rules import Rule
from resolver.policy.verdict import Verdict, verdict

# (query, group, service, category, action) for every attempt on a banned name, with
# action "blocked", "report" (a report-only rule) or "paused": the audit trail's input.
Attempts = Callable[[Query, str, str, str, str], None]


# A name's most specific entry in a group's list: (rule, index of the label where the
# entry starts), ``DomainSet.find``; None: not listed.
Found: TypeAlias = tuple[Rule, int] | None
# What the fast path needs to block a plain query itself: group, rule, matched label.
Blocked: TypeAlias = tuple[Group, Rule, int]


def answer_mode(group: Group, rule: Rule) -> str:
    """How a blocked name is answered: the group's response mode, but canaries must be
    NXDOMAIN: only that switches browser DNS-over-HTTPS off."""
    return "nxdomain" if rule.action == "canary" else group.answers.mode


def _ignore(query: Query, group: str, service: str, category: str, action: str) -> None:
    """No audit trail configured."""


def _monotonic_deadline(wall_clock: float | None) -> float:
    """A wall-clock deadline (a temporary rule's end) on the monotonic clock."""
    if wall_clock is None:
        return math.inf
    return time.monotonic() + (wall_clock - time.time())


def _once(result: Resolution) -> Resolution:
    """An answer that must not be given again without the pipeline."""
    if isinstance(result, Answer):
        result.reuse_until = 0.0
    return result


class BlockingHandler:
    name = "blocking"

    def __init__(
        self,
        groups: ClientGroups,
        next_handler: Handler,
        *,
        cname_inspection: bool = True,
        attempts: Attempts = _ignore,
    ) -> None:
        self.groups = groups
        # Called with the new version when a temporary rule runs out (logs, metrics).
        self.on_expiry: Callable[[ClientGroups], None] | None = None
        self._next = next_handler
        self._inspect = cname_inspection
        self._attempts = attempts
        self.paused_until = 0.0  # monotonic time; blocking is off before it
        # No answer decided under this policy may be reused past its next change.
        self._reuse_cap = _monotonic_deadline(groups.valid_until)
        # (datagram, client, group, entry): the lookup ``blocks`` made for a datagram it
        # left to the pipeline; taken by ``handle`` of that datagram, dropped by anything
        # else that changes the policy.
        self._looked_up: tuple[bytes, str, Group, Found] | None = None

    def replace_groups(self, groups: ClientGroups) -> None:
        """Swap in a freshly built policy; one assignment, so no query sees a mix."""
        self.groups = groups.in_force(time.time())
        self._reuse_cap = _monotonic_deadline(self.groups.valid_until)
        self._looked_up = None

    def current(self) -> ClientGroups:
        """The policy in force now: past a temporary rule's end, the next version."""
        groups = self.groups
        if groups.valid_until is not None and time.time() >= groups.valid_until:
            groups = self._advance()
        return groups

    def _advance(self) -> ClientGroups:
        groups = self.groups = self.groups.in_force(time.time())
        self._reuse_cap = _monotonic_deadline(groups.valid_until)
        self._looked_up = None
        if self.on_expiry is not None:
            self.on_expiry(groups)
        return groups

    def pause(self, seconds: float) -> None:
        self.paused_until = time.monotonic() + seconds
        self._looked_up = None

    def _lookup(
        self, client: str, qname: bytes, labels: tuple[int, ...], group: Group | None = None
    ) -> tuple[Group, Found]:
        """The client's group under the policy in force, and the name's entry in it.
        ``group``: the client's group under ``self.groups``, when the caller knows it."""
        groups = self.groups
        if groups.valid_until is not None and time.time() >= groups.valid_until:
            # A temporary rule ran out: the next version was built with this one.
            groups = self._advance()
            group = None
        if group is None:
            group = groups.group_for(client)
        return group, group.blocklist.names.find(qname, labels)

    def blocks(
        self,
        data: bytes,
        client: str,
        qname: bytes,
        labels: tuple[int, ...],
        group: Group | None = None,
    ) -> Blocked | None:
        """For the fast path's plain query ``data``: (group, rule, label of the matched
        entry) when ``handle`` would block this name for this client now, with nothing
        else to do than answer and record the attempt; None when the pipeline must
        decide. Then the lookup is kept for ``handle`` of this very datagram (``data``,
        the same object), which the pipeline runs next, in the same callback.
        ``group``: the client's group under ``self.groups``, when the caller knows it
        (the fast path, which forgets every client's group when the policy changes)."""
        group, found = self._lookup(client, qname, labels, group)
        paused = self.paused if self.paused_until else False
        if found is None or verdict(found[0], group.mode, paused) is not Verdict.BLOCK:
            self._looked_up = (data, client, group, found)
            return None
        return group, found[0], found[1]

    @property
    def reuse_cap(self) -> float:
        """Until when (monotonic) an answer decided under the policy in force may be reused."""
        return self._reuse_cap

    def _lookup_for(self, query: Query) -> tuple[Group, Found]:
        """``_lookup``, or the one ``blocks`` just made for this datagram."""
        looked_up, self._looked_up = self._looked_up, None
        if looked_up is not None and looked_up[0] is query.raw and looked_up[1] == query.client:
            return looked_up[2], looked_up[3]
        return self._lookup(query.client, query.qname, query.labels)

    def handle(self, query: Query) -> Resolution:
        group, found = self._lookup_for(query)
        if found is None:
            return self._forward(query, group)
        rule, label = found
        decided = verdict(rule, group.mode, self.paused)
        if decided is Verdict.ALLOW:
            # An explicitly allowed name stays allowed wherever its CNAMEs lead.
            return self._capped(self._next.handle(query))
        if decided is not Verdict.BLOCK:
            # Reported or paused: every attempt is recorded, so no answer is reused.
            self._attempts(query, group.name, rule.service, rule.category, decided.value)
            return _once(self._next.handle(query))
        answer = self._block(query, group, rule, label, rule.description)
        if not self.paused_until:
            answer.reuse_until = self._reuse_cap
        self._attempts(query, group.name, rule.service, rule.category, "blocked")
        return answer

    def _capped(self, result: Resolution) -> Resolution:
        if isinstance(result, Answer) and result.reuse_until > self._reuse_cap:
            result.reuse_until = self._reuse_cap
        return result

    @property
    def paused(self) -> bool:
        """Blocking is paused through the API (and the pause has not run out)."""
        if self.paused_until:
            if time.monotonic() < self.paused_until:
                return True
            self.paused_until = 0.0
        return False

    def _forward(self, query: Query, group: Group) -> Resolution:
        result = self._capped(self._next.handle(query))
        if not self._inspect:
            return result
        if isinstance(result, Answer):
            return self._inspect_cnames(query, group, result)
        return self._inspect_when_ready(query, group, result)

    def _block(
        self, query: Query, group: Group, rule: Rule, zone_label: int, reason: str
    ) -> Answer:
        answer = group.answers.build(query, zone_label, answer_mode(group, rule), reason)
        answer.service = rule.service
        answer.category = rule.category
        answer.group = group.name
        return answer

    def _inspect_cnames(self, query: Query, group: Group, answer: Answer) -> Answer:
        for target in answer.cnames:
            found = group.blocklist.match(target, wire.label_starts(target))
            if found is None or found.value.action == "allow":
                continue
            rule = found.value
            decided = verdict(rule, group.mode, self.paused)
            self._attempts(query, group.name, rule.service, rule.category, decided.value)
            if decided is not Verdict.BLOCK:
                answer.reuse_until = 0.0  # every attempt is recorded
                return answer
            reason = f"{rule.description} (via CNAME {wire.name_to_text(target)})"
            # The SOA is owned by the question name: the blocked target is not its parent.
            return self._block(query, group, rule, 0, reason)
        return answer

    def _inspect_when_ready(
        self, query: Query, group: Group, pending: Awaitable[Answer]
    ) -> Pending:
        # A step of the answer to come: it runs before the answer can be sent.
        return Pending.of(pending).then(lambda answer: self._inspect_cnames(query, group, answer))
