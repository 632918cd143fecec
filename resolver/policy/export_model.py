"""What an export is made of: its options, the entries one format will write (and what
it had to leave out or bend), and the helpers every format shares."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from resolver.policy.rules import PolicyEntry

# What every format can carry: the characters of a hostname and the underscore, in
# labels of 1 to 63, 253 in all. Quotes, slashes, '#', ';' and spaces would break
# out of a config statement or a zone file field.
LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
NAME = re.compile(rf"{LABEL}(?:\.{LABEL})*")
MAX_NAME = 253
UNSAFE = re.compile(r"[^a-z0-9_.*-]")

# BIND and Unbound read owner names ending in these labels as IP or nameserver
# triggers, not as query names; a blocked name with such a TLD would become one.
RPZ_TRIGGER_LABELS = frozenset({"rpz-ip", "rpz-nsip", "rpz-nsdname", "rpz-client-ip"})

# Four AdGuard priority levels, lowest first; the index is the rank.
ADBLOCK_LEVELS = (("", ""), ("@@", ""), ("", "$important"), ("@@", "$important"))


@dataclass(frozen=True)
class ExportOptions:
    response: str = "nxdomain"  # nxdomain | sinkhole | nodata | refused (blocking.response)
    sinkhole_ipv4: str = "0.0.0.0"
    sinkhole_ipv6: str = "::"
    ttl: int = 300
    generated: str = ""  # a header comment line, e.g. "aiwall 0.1.0, 2026-11-22, 410 entries"
    rpz_zone: str = "rpz.aiwall"  # the policy zone's name (bind)
    rpz_file: str = "/etc/bind/db.rpz.aiwall"  # where the rpz export is installed (bind)
    serial: int = 1  # the RPZ SOA serial


@dataclass
class ExportPolicy:
    """The entries one format will write, and what it had to leave out or bend."""

    entries: list[PolicyEntry]
    skipped: list[PolicyEntry] = field(default_factory=list)  # names it cannot carry
    dropped: list[PolicyEntry] = field(default_factory=list)  # semantics it cannot express
    by_name: dict[str, PolicyEntry] = field(default_factory=dict)

    def parents(self, name: str) -> Iterator[PolicyEntry]:
        """Entries on proper parent names, nearest first: those whose scope holds ``name``."""
        while "." in name:
            name = name.split(".", 1)[1]
            found = self.by_name.get(name)
            if found is not None:
                yield found


def blocks(entry: PolicyEntry) -> bool:
    # Report-only names resolve in aiwall, so elsewhere they are exceptions like allows.
    return entry.rule.action in ("block", "canary")


def spelled(entry: PolicyEntry) -> str:
    name = f"*.{entry.name}" if entry.below_only else entry.name
    # A name left out for its characters goes on a comment line all the same: nothing in
    # it may end the comment or open a quote that a config parser would look for.
    return UNSAFE.sub("?", name)


def comment(prefix: str, lines: Sequence[str]) -> list[str]:
    return [f"{prefix} {line}".rstrip() for line in lines]


def header(
    fmt: str, options: ExportOptions, policy: ExportPolicy, notes: Sequence[str]
) -> list[str]:
    entries = policy.entries
    allows = sum(1 for e in entries if not blocks(e))
    canaries = sum(1 for e in entries if e.rule.action == "canary")
    lines = [f"aiwall blocking policy, {fmt} format"]
    if options.generated:
        # One line, whatever the caller passed: a newline would end the comment.
        lines.append(" ".join(options.generated.split()))
    lines.append(
        f"{len(entries) - allows} blocked names ({canaries} browser canaries), "
        f"{allows} allow exceptions"
    )
    lines.extend(notes)
    if policy.skipped:
        lines.append(f"names this format cannot carry, left out ({len(policy.skipped)}):")
        lines.extend(f"  {spelled(e)}" for e in policy.skipped)
    if policy.dropped:
        lines.append(f"entries this format cannot express exactly ({len(policy.dropped)}):")
        lines.extend(f"  {spelled(e)}" for e in policy.dropped)
    return lines
