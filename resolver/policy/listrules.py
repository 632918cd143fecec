"""AdGuard rules that change other rules of their list: ``$badfilter`` and ``$important``.

aiwall lets the most specific entry of a list decide; AdGuard Home ranks rules instead:
an ``@@...$important`` exception beats every rule, an ``...$important`` block beats
every plain exception, whatever their names. Both are read here into aiwall's terms by
taking entries back, within the one list (as ``@@`` exceptions stay in their list):

- ``rule$badfilter`` cancels ``rule``: the AdGuard rule with the same name, reach,
  ``@@`` and ``$important`` (a hosts line or a plain name of the same name stays);
- an ``@@...$important`` exception takes back the list's blocks at and below its name;
- an ``...$important`` block takes back the list's plain exceptions at and below it.

Which rules these are is known only once the whole list has been read, and a large list
is never held in memory, so a list that has any reads a second time (``listfile``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from resolver.policy.listformats import Entry, Outcome

# (name, subdomains only, exception): an entry as the policy keeps it.
Key = tuple[str, bool, bool]


@dataclass(slots=True)
class RuleNotes:
    """What the first reading saw of the rules that a second one must settle."""

    cancelled: set[tuple[str, bool, bool, bool]] = field(default_factory=set)
    important_allows: set[tuple[str, bool]] = field(default_factory=set)
    allows: set[tuple[str, bool]] = field(default_factory=set)
    important_blocks: bool = False

    def saw(self, found: Outcome) -> None:
        for entry in found.entries:
            if found.cancels:
                self.cancelled.add((entry.name, entry.below_only, entry.allow, entry.important))
            elif entry.allow:
                target = self.important_allows if entry.important else self.allows
                target.add((entry.name, entry.below_only))
            elif entry.important:
                self.important_blocks = True

    @property
    def settled(self) -> bool:
        mixed = self.important_blocks and bool(self.allows)
        return not (self.cancelled or self.important_allows or mixed)


def _suffixes(name: str) -> list[str]:
    labels = name.split(".")
    return [".".join(labels[index:]) for index in range(len(labels))]


def _covered(entry: Entry, exceptions: set[tuple[str, bool]]) -> bool:
    """Whether ``exceptions`` cover all that a block covers."""
    for index, suffix in enumerate(_suffixes(entry.name)):
        if (suffix, False) in exceptions:
            return True
        if (index > 0 or entry.below_only) and (suffix, True) in exceptions:
            return True
    return False


class _Settling:
    def __init__(self, notes: RuleNotes) -> None:
        cancelled = notes.cancelled
        self.cancelled = cancelled
        self.cancel_keys = {(n, b, a) for n, b, a, _ in cancelled}
        self.winners = {
            (n, b) for n, b in notes.important_allows if (n, b, True, True) not in cancelled
        }
        # Each plain exception under every name it is at or below.
        self.beaten: dict[str, list[tuple[str, bool]]] = {}
        for name, below in notes.allows:
            if (name, below, True, False) not in cancelled:
                for suffix in _suffixes(name):
                    self.beaten.setdefault(suffix, []).append((name, below))
        self.candidates: set[Key] = set()  # cancelled by a $badfilter rule
        self.kept: set[Key] = set()  # the same entry, from a line no rule cancels
        self.retracted: set[Key] = set()

    def cancels(self, entry: Entry, key: Key) -> bool:
        if key not in self.cancel_keys:
            return False
        if entry.rule and (*key, entry.important) in self.cancelled:
            self.candidates.add(key)
            return True
        self.kept.add(key)
        return False

    def overrides(self, entry: Entry, key: Key) -> None:
        if self.winners and _covered(entry, self.winners):
            self.retracted.add(key)
        elif entry.important and entry.name in self.beaten:
            self.retracted.update(
                (name, below, True)
                for name, below in self.beaten[entry.name]
                if name != entry.name or below or not entry.below_only
            )


def retractions(entries: Iterable[Entry], notes: RuleNotes) -> frozenset[Key]:
    """The entries of a list (read again) that its own rules take back."""
    settling = _Settling(notes)
    for entry in entries:
        key = (entry.name, entry.below_only, entry.allow)
        if not settling.cancels(entry, key) and not entry.allow:
            settling.overrides(entry, key)
    return frozenset(settling.retracted | (settling.candidates - settling.kept))
