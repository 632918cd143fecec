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

from resolver.config import BlockingConfig
from resolver.dns import wire
from resolver.policy.catalog import Catalog
from resolver.policy.domainset import BULK_MASK, DomainSet, Match, hashed_chunks
from resolver.policy.listfile import normalise_name, scan_list
from resolver.policy.selectors import select_services

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
    or the file to stream it from (large lists are never read into memory whole).
    ``origin`` is the config key that brought it in, for explanations."""

    source: str
    text: str = ""
    path: Path | None = None
    origin: str = ""

    def lines(self) -> Iterator[str]:
        if self.path is None:
            yield from io.StringIO(self.text)
            return
        try:
            with self.path.open(encoding="utf-8-sig", errors="replace") as stream:
                yield from stream
        except OSError as error:
            raise ListError(f"{self.path}: cannot read list: {error.strerror}") from None


def read_list_file(path: Path, origin: str = "") -> ListText:
    if not os.access(path, os.R_OK) or not path.is_file():
        raise ListError(f"{path}: cannot read list: not a readable file")
    return ListText(f"list:{path.name}", path=path, origin=origin or f"blocking.lists: {path.name}")


@dataclass(slots=True)
class ListPart:
    """One list, parsed once and shared by every group's policy (and every version of
    it: see ``resolver.policy.loading``)."""

    source: str
    rule: Rule
    chunks: list[set[int]] | None  # the hashed names (compact), or
    names: list[str]  # the names themselves (exports)
    wildcards: list[tuple[str, bool]]
    allows: list[tuple[str, bool]]  # the list's own exceptions (@@): they cancel only it
    origin: str = ""
    lines_used: int = 0  # lines that gave at least one entry
    lines_rejected: int = 0
    _names_set: frozenset[str] | None = None

    @property
    def entries(self) -> int:
        """Block entries and exceptions: what a shrink is measured on."""
        hashed = sum(len(chunk) for chunk in self.chunks) if self.chunks is not None else 0
        return hashed + len(self.names) + len(self.wildcards) + len(self.allows)

    @property
    def invalid_share(self) -> float:
        total = self.lines_used + self.lines_rejected
        return self.lines_rejected / total if total else 0.0

    def blocks(self, name: str) -> bool:
        """Whether this list alone, its own exceptions applied, blocks ``name``
        (lowercase dotted): the most specific of its entries covering the name decides."""
        exceptions = {n for n, _ in self.allows}
        wildcards = {n for n, _ in self.wildcards}
        labels = name.split(".")
        for index in range(len(labels)):
            suffix = ".".join(labels[index:])
            if suffix in exceptions:
                return False
            if self._lists(suffix) or (index > 0 and suffix in wildcards):
                return True
        return False

    def _lists(self, name: str) -> bool:
        if self.chunks is not None:
            key = hash(name.encode("ascii"))
            if key in self.chunks[key & BULK_MASK]:
                return True
        if self.names:
            if self._names_set is None:
                self._names_set = frozenset(self.names)
            return name in self._names_set
        return False


def parse_list_text(listed: ListText, *, compact: bool = True) -> ListPart:
    """Parse one list; raises ListError when it is unusable (no entry at all)."""
    label = listed.source.split(":", 1)[1]
    origin = listed.origin or listed.source
    rule = Rule("block", listed.source, listed.source, "custom", f"list {label}", origin)
    rejected: list[tuple[int, str]] = []
    part = ListPart(listed.source, rule, None, [], [], [], origin)
    used = [0]

    def plain_names() -> Iterator[str]:
        # A generator, so a large list goes straight into the set, never into a list.
        for entry in scan_list(listed.lines(), rejected, used):
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
    part.lines_used, part.lines_rejected = used[0], len(rejected)
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
    if not part.entries:
        raise ListError(f"{listed.source}: no line is a domain, hosts or AdBlock entry")
    return part


def _apply_list(names: DomainSet[Rule], part: ListPart) -> int:
    if part.chunks is not None:
        added = names.add_bulk_chunks(part.chunks, part.rule)
    else:
        added = _add_names(names, [(n, False) for n in part.names], part.rule, override=False)
    return added + _add_names(names, part.wildcards, part.rule, override=False)


def _covered(name: str, names: frozenset[str]) -> str | None:
    """The entry of ``names`` that is ``name`` or one of its parents, if any."""
    labels = name.split(".")
    for index in range(len(labels)):
        suffix = ".".join(labels[index:])
        if suffix in names:
            return suffix
    return None


@dataclass(slots=True)
class _Claims:
    """What each source blocks before any exception: the test a list's own exception
    must pass before it may apply (it must not lift another source's block)."""

    catalog: frozenset[str]  # catalog names blocked or reported
    bypass: dict[str, str]  # catalog names of DNS-bypass services -> service id
    canaries: frozenset[str]
    parts: Sequence[ListPart]

    def blocked_elsewhere(self, name: str, part: ListPart) -> bool:
        if _covered(name, self.catalog) or _covered(name, self.canaries):
            return True
        return any(other is not part and other.blocks(name) for other in self.parts)


def _check_config_allow(
    path: str, allow: Sequence[str], claims: _Claims, catalog_path: str
) -> None:
    """``allow`` lifts catalog bans and list entries, never a DNS-bypass service (only
    ``catalog.allow.services`` may) nor a browser canary (remove it from canaries)."""
    for index, entry in enumerate(allow):
        name = normalise_name(entry) or entry
        bypass = _covered(name, frozenset(claims.bypass))
        if bypass is not None:
            raise PolicyConflict(
                f"{path}[{index}]: {entry!r} would reopen the DNS-bypass service "
                f"{claims.bypass[bypass]!r}; only {catalog_path}.allow.services can"
            )
        canary = _covered(name, claims.canaries)
        if canary is not None:
            raise PolicyConflict(
                f"{path}[{index}]: {entry!r} is a browser canary; remove {canary!r} "
                "from blocking.canaries instead"
            )


class PolicyConflict(ListError):
    """The config asks for something the policy's rules forbid (a bypass reopened)."""


def build_blocklist(
    config: BlockingConfig,
    catalog: Catalog | None,
    lists: Sequence[ListPart],
    *,
    now: float | None = None,
    catalog_path: str = "blocking.catalog",
    allow_path: str = "blocking.allow",
) -> Blocklist:
    """Compile the policy. Order matters: blocks first (the catalog claims its names so
    they keep their service label), then canaries, then the exceptions:
    - a list's own exceptions (``@@``) cancel only that list's entries: each applies
      only where no other source (the catalog, another list, a canary) blocks the name;
    - ``allow`` (from the config) and the catalog's ``allow`` lift any block but a
      DNS-bypass service or a canary.

    ``lists`` come parsed (``parse_list_text``) so groups share them; the paths are the
    config keys the catalog policy and the allow list come from ("groups[1].catalog"),
    for errors and explanations."""
    blocklist = Blocklist()
    names = blocklist.names
    counts = blocklist.entries_by_source
    excepted: list[tuple[list[tuple[str, bool]], Rule]] = []
    claimed: set[str] = set()
    bypass: dict[str, str] = {}
    if catalog is not None:
        counts["catalog"] = 0
        for verdict in select_services(config.catalog, catalog, catalog_path, now=now):
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
                continue
            counts["catalog"] += _add_names(names, domains, rule, override=False)
            claimed.update(d.name for d in service.domains)
            if verdict.action == "block" and "bypass" in service.categories:
                bypass.update((d.name, service.id) for d in service.domains)
    for part in lists:
        counts[part.source] = _apply_list(names, part)
    canary = Rule(
        "canary",
        "config",
        "canary",
        "bypass",
        "browser DNS-over-HTTPS canary",
        "blocking.canaries (always NXDOMAIN, so browsers keep DNS-over-HTTPS off)",
    )
    canaries = [normalise_name(n) or n for n in config.canaries]
    counts["canaries"] = _add_names(names, [(n, False) for n in canaries], canary, override=True)
    claims = _Claims(frozenset(claimed), bypass, frozenset(canaries), lists)
    for part in lists:
        exception = Rule(
            "allow",
            part.source,
            part.source,
            "allowlist",
            f"exception in {part.source}",
            f"{part.origin}: its own exception (@@), which cancels only its own entries",
        )
        effective = [
            (name, below) for name, below in part.allows if not claims.blocked_elsewhere(name, part)
        ]
        if len(effective) < len(part.allows):
            log.info(
                "list %s: %d of its exceptions are ignored: another source blocks those names",
                part.source,
                len(part.allows) - len(effective),
            )
        _add_names(names, effective, exception, override=True)
    _check_config_allow(allow_path, config.allow, claims, catalog_path)
    allow = Rule("allow", "config", "allow", "allowlist", "allow list", allow_path)
    counts["allow"] = _add_names(
        names, [(normalise_name(n) or n, False) for n in config.allow], allow, override=True
    )
    for domains, rule in excepted:
        counts["allow"] += _add_names(names, domains, rule, override=True)
    return blocklist
