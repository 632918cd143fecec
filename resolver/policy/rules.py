"""The rules a policy is made of: why a name is decided, by which source and config key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
