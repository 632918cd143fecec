"""The one place where a matched rule becomes a decision.

The blocking handler (for every query) and ``aiwall check`` / ``/api/check`` (for an
explanation) both ask this function, so the two can never disagree.
"""

from __future__ import annotations

import enum

from resolver.policy.rules import Rule


class Verdict(enum.Enum):
    FORWARD = "forwarded"  # no entry covers the name
    ALLOW = "allowed"  # an exception (allow, a list's own @@, catalog.allow) covers it
    REPORT = "report"  # would be blocked: a report-only rule or group lets it through
    PAUSED = "paused"  # would be blocked: blocking is paused through the API
    BLOCK = "blocked"


def verdict(rule: Rule | None, mode: str, paused: bool) -> Verdict:
    """What happens to a name whose most specific entry is ``rule`` (None: no entry),
    for a group in ``mode`` ("enforce", "report"), with blocking ``paused`` or not."""
    if rule is None:
        return Verdict.FORWARD
    if rule.action == "allow":
        return Verdict.ALLOW
    if rule.action == "report" or mode == "report":
        return Verdict.REPORT
    if paused:
        return Verdict.PAUSED
    return Verdict.BLOCK
