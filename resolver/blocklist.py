"""The compiled blocking policy: every active catalog domain, list entry and allow entry.

Built once per (re)load from the config, the catalog and the list files, then only read:
a reload builds a new one and swaps it in whole, so a query never sees half a list.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from resolver import wire
from resolver.catalog import Catalog
from resolver.config import BlockingConfig
from resolver.domainset import DomainSet, Match, hashed_chunks
from resolver.listfile import normalise_name, scan_list
from resolver.policy import select_services

log = logging.getLogger(__name__)

# "report": answered normally, but counted and logged as if it had been blocked.
Action = Literal["block", "allow", "canary", "report"]


@dataclass(frozen=True, slots=True)
class Rule:
    """Why a name is decided: one shared object per service or list, not per name."""

    action: Action
    source: str  # where the entry comes from: "catalog", "list:<file>", "config"
    service: str  # catalog service id or list name: the bounded metric label
    category: str
    description: str  # for explanations and the EDE text
    policy: str = ""  # the config rule that decided, e.g. "blocking.catalog.block.countries: CN"


@dataclass(frozen=True, slots=True)
class Decision:
    """What ``aiwall check`` and the blocking handler learn about one name."""

    name: str
    rule: Rule | None
    entry: str  # the list entry that matched ("" when none)

    @property
    def blocked(self) -> bool:
        return self.rule is not None and self.rule.action in ("block", "canary")


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """One entry of the compiled policy in text form, for exports."""

    name: str  # lowercase ASCII, no trailing dot
    below_only: bool  # "*.name": subdomains only
    rule: Rule


class ListError(ValueError):
    """A list could not be loaded; the previous policy must stay in force."""


@dataclass(slots=True)
class Blocklist:
    names: DomainSet[Rule] = field(default_factory=DomainSet)
    entries_by_source: dict[str, int] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.time)

    def match(self, qname: bytes, labels: tuple[int, ...]) -> Match[Rule] | None:
        return self.names.match(qname, labels)

    def entries(self) -> list[PolicyEntry]:
        """Every entry, sorted by name, so exports are stable from run to run."""
        found = [
            PolicyEntry(wire.name_to_text(key), below_only, rule)
            for key, rule, below_only in self.names.items()
        ]
        return sorted(found, key=lambda e: (e.name, e.below_only))

    def decide(self, name: str) -> Decision:
        normalised = normalise_name(name)
        if normalised is None:
            raise ValueError(f"{name!r} is not a domain name")
        wire_name = wire.text_to_name(normalised)
        labels = wire.label_starts(wire_name)
        found = self.match(wire_name, labels)
        if found is None:
            return Decision(normalised, None, "")
        entry = wire.name_to_text(wire_name[labels[found.label] :])
        return Decision(normalised, found.value, entry)


def _add_names(
    target: DomainSet[Rule], names: list[tuple[str, bool]], rule: Rule, *, override: bool
) -> int:
    added = 0
    for name, below_only in names:
        key = wire.text_to_name(name)
        if override or below_only:
            target.add(key, rule, below_only=below_only)
        elif target.setdefault(key, rule) is not rule:
            continue
        added += 1
    return added


@dataclass(frozen=True, slots=True)
class ListText:
    """One list and the name it is known by ("list:<file>", "remote:<name>"): its text,
    or the file to stream it from (large lists are never read into memory whole)."""

    source: str
    text: str = ""
    path: Path | None = None

    def lines(self) -> Iterator[str]:
        if self.path is None:
            yield from io.StringIO(self.text)
            return
        try:
            with self.path.open(encoding="utf-8-sig", errors="replace") as stream:
                yield from stream
        except OSError as error:
            raise ListError(f"{self.path}: cannot read list: {error.strerror}") from None


def read_list_file(path: Path) -> ListText:
    if not os.access(path, os.R_OK) or not path.is_file():
        raise ListError(f"{path}: cannot read list: not a readable file")
    return ListText(f"list:{path.name}", path=path)


@dataclass(slots=True)
class ListPart:
    """One list, parsed once and shared by every group's policy."""

    source: str
    rule: Rule
    chunks: list[set[int]] | None  # the hashed names (compact), or
    names: list[str]  # the names themselves (exports)
    wildcards: list[tuple[str, bool]]
    allows: list[tuple[str, bool]]


def parse_list_text(listed: ListText, *, compact: bool = True) -> ListPart:
    """Parse one list; raises ListError when it is unusable."""
    label = listed.source.split(":", 1)[1]
    rule = Rule("block", listed.source, listed.source, "custom", f"list {label}")
    rejected: list[tuple[int, str]] = []
    part = ListPart(listed.source, rule, None, [], [], [])

    def plain_names() -> Iterator[str]:
        # A generator, so a large list goes straight into the set, never into a list.
        for entry in scan_list(listed.lines(), rejected):
            if entry.allow:
                part.allows.append((entry.name, entry.below_only))
            elif entry.below_only:
                part.wildcards.append((entry.name, True))
            else:
                yield entry.name

    if compact:
        part.chunks = hashed_chunks(plain_names())
    else:
        part.names = list(plain_names())
    if rejected:
        number, line = rejected[0]
        log.warning(
            "list %s: ignored %d lines it could not read (first: line %d %r)",
            listed.source,
            len(rejected),
            number,
            line,
        )
    # An empty list is far more often a file caught mid-rewrite or a failed export than
    # a decision to block nothing: refuse it, and the last good policy stays.
    if not (part.names or any(part.chunks or ()) or part.wildcards or part.allows):
        raise ListError(f"{listed.source}: no line is a domain, hosts or AdBlock entry")
    return part


def _apply_list(names: DomainSet[Rule], part: ListPart) -> int:
    if part.chunks is not None:
        added = names.add_bulk_chunks(part.chunks, part.rule)
    else:
        added = _add_names(names, [(n, False) for n in part.names], part.rule, override=False)
    return added + _add_names(names, part.wildcards, part.rule, override=False)


def build_blocklist(
    config: BlockingConfig,
    catalog: Catalog | None,
    lists: Sequence[ListPart],
    *,
    now: float | None = None,
) -> Blocklist:
    """Compile the policy. Order matters: blocks first (the catalog claims its names so
    they keep their service label), then canaries, then allows, which override both.

    ``lists`` come parsed (``parse_list_text``) so groups share them."""
    blocklist = Blocklist()
    names = blocklist.names
    counts = blocklist.entries_by_source
    excepted: list[tuple[list[tuple[str, bool]], Rule]] = []
    if catalog is not None:
        counts["catalog"] = 0
        for verdict in select_services(config.catalog, catalog, now=now):
            service = verdict.service
            rule = Rule(
                verdict.action,
                "catalog",
                service.id,
                service.categories[0] if service.categories else "uncategorised",
                f"{service.name} ({service.vendor}, {service.vendor_country})",
                verdict.reason,
            )
            domains = [(d.name, False) for d in service.domains]
            if verdict.action == "allow":
                excepted.append((domains, rule))
            else:
                counts["catalog"] += _add_names(names, domains, rule, override=False)
    allow_entries: list[tuple[str, bool]] = []
    for part in lists:
        counts[part.source] = _apply_list(names, part)
        allow_entries.extend(part.allows)
    canary = Rule("canary", "config", "canary", "bypass", "browser DNS-over-HTTPS canary")
    counts["canaries"] = _add_names(
        names, [(n, False) for n in config.canaries], canary, override=True
    )
    allow = Rule("allow", "config", "allow", "allowlist", "allow list")
    allow_entries.extend((n, False) for n in config.allow)
    counts["allow"] = _add_names(
        names, [(normalise_name(n) or n, b) for n, b in allow_entries], allow, override=True
    )
    for domains, rule in excepted:
        counts["allow"] += _add_names(names, domains, rule, override=True)
    return blocklist
