"""The compiled blocking policy: every active catalog domain, list entry and allow entry.

Built once per (re)load from the config, the catalog and the list files, then only read:
a reload builds a new one and swaps it in whole, so a query never sees half a list.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from resolver.config import BlockingConfig
from resolver.dns import wire
from resolver.dns.names import normalise_name
from resolver.policy.catalog import Catalog
from resolver.policy.domainset import DomainSet, Match
from resolver.policy.lists import ListError, ListPart
from resolver.policy.nametable import NameTable, build_table
from resolver.policy.rules import Decision, PolicyEntry, Rule
from resolver.policy.selectors import select_services

log = logging.getLogger(__name__)


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


def _apply_list(names: DomainSet[Rule], part: ListPart) -> int:
    if part.keys is not None:
        added = len(part.keys)  # in the shared table (``build_blocklist``'s ``table``)
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


_CANARY = Rule(
    "canary",
    "config",
    "canary",
    "bypass",
    "browser DNS-over-HTTPS canary",
    "blocking.canaries (always NXDOMAIN, so browsers keep DNS-over-HTTPS off)",
)


@dataclass(slots=True)
class _CatalogPart:
    """What the catalog policy contributes: its claimed names (block or report), its
    DNS-bypass names, and the exceptions of ``catalog.allow`` to apply last."""

    claimed: set[str] = field(default_factory=set)
    bypass: dict[str, str] = field(default_factory=dict)
    excepted: list[tuple[list[tuple[str, bool]], Rule]] = field(default_factory=list)


def _add_catalog(
    blocklist: Blocklist, config: BlockingConfig, catalog: Catalog, path: str, now: float | None
) -> _CatalogPart:
    part = _CatalogPart()
    blocklist.entries_by_source["catalog"] = 0
    for verdict in select_services(config.catalog, catalog, path, now=now):
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
            part.excepted.append((domains, rule))
            continue
        added = _add_names(blocklist.names, domains, rule, override=False)
        blocklist.entries_by_source["catalog"] += added
        part.claimed.update(d.name for d in service.domains)
        if verdict.action == "block" and "bypass" in service.categories:
            part.bypass.update((d.name, service.id) for d in service.domains)
    return part


def _add_list_exceptions(names: DomainSet[Rule], part: ListPart, claims: _Claims) -> None:
    """A list's own exceptions, each where no other source blocks the name."""
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


def build_blocklist(
    config: BlockingConfig,
    catalog: Catalog | None,
    lists: Sequence[ListPart],
    *,
    now: float | None = None,
    catalog_path: str = "blocking.catalog",
    allow_path: str = "blocking.allow",
    table: NameTable | None = None,
) -> Blocklist:
    """Compile the policy. Order matters: blocks first (the catalog claims its names so
    they keep their service label), then canaries, then the exceptions:
    - a list's own exceptions (``@@``) cancel only that list's entries: each applies
      only where no other source (the catalog, another list, a canary) blocks the name;
    - ``allow`` (from the config) and the catalog's ``allow`` lift any block but a
      DNS-bypass service or a canary.

    ``lists`` come parsed (``parse_list_text``) so groups share them, with ``table``
    (``list_table``) holding the names of the compact ones; the paths are the config
    keys the catalog policy and the allow list come from ("groups[1].catalog"), for
    errors and explanations."""
    blocklist = Blocklist()
    names = blocklist.names
    counts = blocklist.entries_by_source
    from_catalog = (
        _add_catalog(blocklist, config, catalog, catalog_path, now)
        if catalog is not None
        else _CatalogPart()
    )
    if table is None:
        table = list_table(lists)  # a single build; loading shares one table instead
    if table is not None:
        names.attach_table(table, [part.rule for part in lists if part.keys is not None])
    for part in lists:
        counts[part.source] = _apply_list(names, part)
    canaries = [normalise_name(n) or n for n in config.canaries]
    counts["canaries"] = _add_names(names, [(n, False) for n in canaries], _CANARY, override=True)
    claims = _Claims(
        frozenset(from_catalog.claimed), from_catalog.bypass, frozenset(canaries), lists
    )
    for part in lists:
        _add_list_exceptions(names, part, claims)
    _check_config_allow(allow_path, config.allow, claims, catalog_path)
    allow = Rule("allow", "config", "allow", "allowlist", "allow list", allow_path)
    counts["allow"] = _add_names(
        names, [(normalise_name(n) or n, False) for n in config.allow], allow, override=True
    )
    for domains, rule in from_catalog.excepted:
        counts["allow"] += _add_names(names, domains, rule, override=True)
    return blocklist


def list_table(lists: Sequence[ListPart]) -> NameTable | None:
    """One table of the names of every compact list, each key tagged with the first list
    that has it (its index among the compact lists, as ``build_blocklist`` attaches
    their rules); None when no list is compact."""
    compact = [part for part in lists if part.keys is not None]
    if not compact:
        return None
    hint = sum(len(part.keys or ()) for part in compact)
    return NameTable(build_table(((part.keys or (), i) for i, part in enumerate(compact)), hint))
