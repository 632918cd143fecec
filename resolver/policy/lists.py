"""List files and downloads, parsed once into the parts every group's policy shares.

Parsing streams the lines (a million-name list is never read into memory whole) into
the sorted table keys of its names (``nametable``), keeping a list's own exceptions
(``@@``) and subdomain-only wildcards apart, and the counts its guard needs (how many
lines were used and unreadable) with the lines skipped, by class (``listfile``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from resolver.policy.listfile import ScanReport, scan_names
from resolver.policy.listformats import NOT_FOR_DNS, UNREADABLE
from resolver.policy.nametable import KEY_MASK, table_key
from resolver.policy.rules import Rule

log = logging.getLogger(__name__)


class ListError(ValueError):
    """A list could not be loaded; the previous policy must stay in force."""


@dataclass(frozen=True, slots=True)
class ListText:
    """One list and the name it is known by ("list:<file>", "remote:<name>"): its text,
    or the file to stream it from (large lists are never read into memory whole).
    ``origin`` is the config key that brought it in, for explanations."""

    source: str
    text: str = ""
    path: Path | None = None
    origin: str = ""
    list_format: str = "auto"  # the list's ``format`` key

    def lines(self) -> Iterator[str]:
        if self.path is None:
            yield from io.StringIO(self.text)
            return
        try:
            with self.path.open(encoding="utf-8-sig", errors="replace") as stream:
                yield from stream
        except OSError as error:
            raise ListError(f"{self.path}: cannot read list: {error.strerror}") from None

    def digest(self) -> str:
        """SHA-256 of the list as stored (the file's bytes, or the text): the same on
        every machine, whatever the parse keeps of it (``resolver.policy.fingerprint``).
        A file is read a second time for it, from the page cache, in C."""
        hashed = hashlib.sha256()
        if self.path is None:
            hashed.update(self.text.encode("utf-8", "surrogatepass"))
            return hashed.hexdigest()
        try:
            with self.path.open("rb") as stream:
                while chunk := stream.read(1 << 20):
                    hashed.update(chunk)
        except OSError as error:
            raise ListError(f"{self.path}: cannot read list: {error.strerror}") from None
        return hashed.hexdigest()


def read_list_file(path: Path, origin: str = "", list_format: str = "auto") -> ListText:
    if not os.access(path, os.R_OK) or not path.is_file():
        raise ListError(f"{path}: cannot read list: not a readable file")
    origin = origin or f"blocking.lists: {path.name}"
    return ListText(f"list:{path.name}", path=path, origin=origin, list_format=list_format)


@dataclass(slots=True)
class ListPart:
    """One list, parsed once and shared by every group's policy (and every version of
    it: see ``resolver.policy.loading``)."""

    source: str
    rule: Rule
    keys: array[int] | None  # the table keys of its names (compact), or
    names: list[str]  # the names themselves (exports)
    wildcards: list[tuple[str, bool]]
    allows: list[tuple[str, bool]]  # the list's own exceptions (@@): they cancel only it
    origin: str = ""
    lines_used: int = 0  # lines that gave at least one entry
    lines_rejected: int = 0  # lines nothing could read (``listformats.UNREADABLE``)
    skipped: dict[str, int] = field(default_factory=dict)  # lines skipped, by class
    skip_summary: str = ""  # the unreadable classes, with their first line numbers
    digest: str = ""  # of the list as stored (ListText.digest)
    _names_set: frozenset[str] | None = None
    _sorted_keys: array[int] | None = None  # made on the first membership test

    @property
    def entries(self) -> int:
        """Block entries and exceptions: what a shrink is measured on."""
        hashed = len(self.keys) if self.keys is not None else 0
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
        if self.keys is not None:
            # Rare (a list's own exceptions and the config's allow entries are checked
            # against the other lists while a policy is built), so the sorted copy is
            # made only then, not for every list at every parse.
            if self._sorted_keys is None:
                self._sorted_keys = array("Q", sorted(self.keys))
            keys, key = self._sorted_keys, table_key(name.encode("ascii"))
            index = bisect_left(keys, key)
            if index < len(keys) and keys[index] == key:
                return True
        if self.names:
            if self._names_set is None:
                self._names_set = frozenset(self.names)
            return name in self._names_set
        return False


def _log_skips(listed: ListText, report: ScanReport) -> None:
    if not report.skipped:
        return
    level = logging.WARNING if report.unreadable else logging.INFO
    log.log(
        level,
        "list %s (read as %s): skipped %d lines: %s",
        listed.source,
        report.read_as,
        report.skipped,
        report.summary(),
    )


def _take_back(part: ListPart, retracted: frozenset[tuple[str, bool, bool]]) -> set[str]:
    """Drop what the list's own later rules took back ($badfilter, $important); the
    names of the plain blocks to drop are returned."""
    part.allows = [(n, b) for n, b in part.allows if (n, b, True) not in retracted]
    part.wildcards = [(n, b) for n, b in part.wildcards if (n, b, False) not in retracted]
    return {name for name, below, allow in retracted if not below and not allow}


def parse_list_text(listed: ListText, *, compact: bool = True) -> ListPart:
    """Parse one list; raises ListError when it is unusable (no entry at all)."""
    label = listed.source.split(":", 1)[1]
    origin = listed.origin or listed.source
    rule = Rule("block", listed.source, listed.source, "custom", f"list {label}", origin)
    report = ScanReport()
    part = ListPart(listed.source, rule, None, [], [], [], origin, digest=listed.digest())

    def plain_names() -> Iterator[str]:
        # A generator, so a large list goes straight into the keys, never into a list.
        for entry in scan_names(listed.lines, report, listed.list_format):
            if isinstance(entry, str):
                yield entry
            elif entry.allow:
                part.allows.append((entry.name, entry.below_only))
            elif entry.below_only:
                part.wildcards.append((entry.name, True))
            else:
                yield entry.name

    if compact:
        # table_key inlined: a call per name costs a tenth of a second per million.
        keys = {hash(name.encode("ascii")) & KEY_MASK or 1 for name in plain_names()}
        if report.retracted:
            keys -= {table_key(name.encode("ascii")) for name in _take_back(part, report.retracted)}
        part.keys = array("Q", keys)
        del keys
    else:
        part.names = list(plain_names())
        if report.retracted:
            dropped = _take_back(part, report.retracted)
            part.names = [name for name in part.names if name not in dropped]
    part.lines_used, part.lines_rejected = report.used, report.unreadable
    part.skipped = dict(report.counts)
    part.skip_summary = report.summary(UNREADABLE)
    _log_skips(listed, report)
    # An empty list is far more often a file caught mid-rewrite or a failed export than
    # a decision to block nothing: refuse it, and the last good policy stays.
    if not part.entries:
        found = report.summary(NOT_FOR_DNS + UNREADABLE)
        raise ListError(
            f"{listed.source}: no line is a list entry (read as {report.read_as}"
            + (f"; skipped: {found})" if found else ")")
        )
    return part
