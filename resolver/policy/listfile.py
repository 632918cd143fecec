"""Reading a whole list file in the format its ``format`` key names, or the one detected.

``auto`` (the default) reads every form of ``listformats`` and ``listzones`` on any
line, so a file may mix them, except RPZ zones, which are told from their ``$TTL`` or
SOA and read as zones. The forms that mean different things in different formats are
decided per file from its first lines: ``*.name`` covers the name too when most lines
are written so (a wildcard list, as hagezi and 1Hosts publish them), and ``.name``
covers the name too unless the file is written in AdBlock syntax. A named format reads
only its own forms: another format's line is skipped as ``other_format``, which counts
against ``max_invalid``, so a list that changes format is not quietly read anew.

Lines are read one by one, so a million-line list is never held in memory whole; the
common forms (plain names, ``0.0.0.0 name``, ``||name^``, ``*.name``) take a fast path.
A list whose AdGuard rules need more than one reading (``$badfilter``, ``$important``)
is read a second time to find the entries those rules take back (``ScanReport.retracted``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain

from resolver.policy.listformats import (
    HOSTS_NOISE,
    QUIET,
    SKIP,
    SKIP_CLASSES,
    UNREADABLE,
    Dialect,
    Entry,
    Outcome,
    Reader,
    foreign,
    is_address,
    looks_adblock,
    quiet,
    read_adblock,
    read_hosts,
    read_name,
    read_rule_set,
    without_comment,
)
from resolver.policy.listrules import Key, RuleNotes, retractions
from resolver.policy.listzones import (
    RpzReader,
    looks_like_zone,
    read_dnsmasq,
    read_unbound,
    zone_apex,
)

__all__ = ["Entry", "ScanReport", "count_entries", "scan_list", "scan_names"]

HEAD_LINES = 1000  # non-comment lines an ``auto`` list's dialect is told from
EXAMPLES = 5  # line numbers kept per skip class, for the log and the guard's message


@dataclass(slots=True)
class ScanReport:
    """What a reading of one list found besides its entries."""

    keep: int = EXAMPLES
    used: int = 0  # lines that gave entries (or cancelled some)
    unreadable: int = 0  # lines skipped whole in a class that counts against max_invalid
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_CLASSES, 0))
    examples: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    read_as: str = ""  # the format, and for ``auto`` what it was detected as
    retracted: frozenset[Key] = frozenset()  # entries later rules took back

    def skip(self, kind: str, number: int, line: str, *, whole: bool) -> None:
        self.counts[kind] += 1
        if whole and kind in UNREADABLE:
            self.unreadable += 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < self.keep:
            shown.append((number, line.strip()[:200]))

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def summary(self, kinds: Iterable[str] = SKIP_CLASSES) -> str:
        """``regex 12 (lines 3, 8, 9, ...), invalid_name 1 (line 40)``."""
        parts = []
        for kind in kinds:
            count = self.counts[kind]
            if not count:
                continue
            numbers = [str(number) for number, _ in self.examples.get(kind, [])]
            more = ", ..." if count > len(numbers) else ""
            word = "line" if len(numbers) == 1 and not more else "lines"
            parts.append(f"{kind} {count} ({word} {', '.join(numbers)}{more})")
        return ", ".join(parts)


# --- readers per format ---------------------------------------------------------------

_CONFIG_PREFIXES = ("address=", "server=", "local=", "local-zone:", "local-data", "server:")


def _read_config_line(line: str) -> Outcome | None:
    """dnsmasq, Unbound and rule-set lines met in an ``auto`` list."""
    if line.startswith(_CONFIG_PREFIXES):
        found = read_dnsmasq(line, options=False)
        return found if found is not None else read_unbound(line, clauses=False)
    if "," in line and line.startswith(("domain", "ip-", "url-", "geoip")):
        return read_rule_set(line)
    return None


def _mixed(dialect: Dialect) -> Reader:
    def read(line: str, raw: str) -> Outcome:
        if quiet(line):
            return QUIET
        line = without_comment(line)
        found = _read_config_line(line)
        if found is None and looks_adblock(line):
            found = read_adblock(line)
        if found is None:
            found = read_hosts(line)
        if found is not None:
            return found
        tokens = line.split()
        return read_name(tokens[0], dialect) if len(tokens) == 1 else SKIP["unreadable"]

    return read


def _names(dialect: Dialect, *, dots: bool, adblock: bool = False, rules: bool = False) -> Reader:
    """plain, wildcard, adblock and surge lists: one name a line, and the format's own
    other forms (AdGuard rules and hosts lines; rule-set lines); ``dots``: whether
    ``.name`` is a form of the format."""

    def read(line: str, raw: str) -> Outcome:
        if quiet(line):
            return QUIET
        line = without_comment(line)
        found = None
        if adblock:
            found = read_adblock(line) if looks_adblock(line) else read_hosts(line)
        elif rules:
            found = read_rule_set(line)
        if found is not None:
            return found
        tokens = line.split()
        if len(tokens) != 1 or foreign(tokens[0]) or (tokens[0][0] == "." and not dots):
            return SKIP["other_format"]
        return read_name(tokens[0], dialect)

    return read


def _only(read_line: Callable[[str], Outcome | None]) -> Reader:
    """hosts, dnsmasq and unbound lists: their own lines, anything else skipped."""

    def read(line: str, raw: str) -> Outcome:
        if quiet(line):
            return QUIET
        found = read_line(without_comment(line))
        return found if found is not None else SKIP["other_format"]

    return read


_DIALECTS = {
    "plain": Dialect(star_covers_apex=False, dot_covers_apex=False),
    "wildcard": Dialect(star_covers_apex=True, dot_covers_apex=False),
    "adblock": Dialect(star_covers_apex=False, dot_covers_apex=False),
    "surge": Dialect(star_covers_apex=False, dot_covers_apex=True),
}
# The common forms each format may read without its full reader, by what comes before
# the name (its first character) and after it: "" a plain name, "0" or "1" a
# "0.0.0.0 name" or "127.0.0.1 name" hosts line, "|" and "|^" a "||name" or "||name^"
# rule, "*" a "*.name" line. "name^" alone is left to the AdGuard reader.
_NAME, _HOSTS, _RULE, _STAR = "name", "hosts", "rule", "star"
_ALL_FORMS = {"": _NAME, "0": _HOSTS, "1": _HOSTS, "|": _RULE, "|^": _RULE, "*": _STAR}
_FORMS = {
    "auto": _ALL_FORMS,
    "adblock": _ALL_FORMS,
    "plain": {"": _NAME, "*": _STAR},
    "wildcard": {"": _NAME, "*": _STAR},
    "surge": {"": _NAME},
    "hosts": {"0": _HOSTS, "1": _HOSTS},
}


def _reader(list_format: str, dialect: Dialect) -> Reader:
    readers: dict[str, Callable[[], Reader]] = {
        "auto": lambda: _mixed(dialect),
        "plain": lambda: _names(dialect, dots=False),
        "wildcard": lambda: _names(dialect, dots=False),
        "adblock": lambda: _names(dialect, dots=True, adblock=True),
        "surge": lambda: _names(dialect, dots=True, rules=True),
        "hosts": lambda: _only(read_hosts),
        "dnsmasq": lambda: _only(lambda line: read_dnsmasq(line, options=True)),
        "unbound": lambda: _only(lambda line: read_unbound(line, clauses=True)),
    }
    return readers.get(list_format, RpzReader)()


# --- telling an ``auto`` list's dialect ------------------------------------------------


def _kind(line: str) -> str:
    if line.startswith("*.") and " " not in line:
        return "star"
    if line.startswith(".") and " " not in line and not looks_adblock(line):
        return "dot"
    if looks_adblock(line):
        return "adblock"
    if is_address(line.split(maxsplit=1)[0]):
        return "other"  # a hosts line, whatever names follow the address
    return "zone" if looks_like_zone(line) else "other"


def detect(head: Iterable[str]) -> tuple[str, Dialect, str]:
    """(format to read, dialect, what it was taken for) of an ``auto`` list."""
    counts = dict.fromkeys(("star", "dot", "adblock", "zone", "other"), 0)
    for raw in head:
        line = raw.strip().lower()
        if line.startswith("[adblock"):
            counts["adblock"] += 1
        if quiet(line):
            continue
        if zone_apex(line):
            return "rpz", Dialect(), "rpz"
        counts[_kind(without_comment(line))] += 1
    total = sum(counts.values())
    if counts["zone"] * 2 > total:
        return "rpz", Dialect(), "rpz"
    star = counts["star"] * 2 > total
    adblock = counts["adblock"] > 0 and counts["adblock"] >= counts["dot"]
    dialect = Dialect(star_covers_apex=star, dot_covers_apex=not adblock)
    label = "wildcard" if star else "adblock" if adblock else "surge" if counts["dot"] else "mixed"
    return "auto", dialect, label


def _head(lines: Iterator[str]) -> list[str]:
    head: list[str] = []
    meaningful = 0
    for raw in lines:
        head.append(raw)
        meaningful += not quiet(raw.strip())
        if meaningful >= HEAD_LINES:
            break
    return head


# --- the reading loop -----------------------------------------------------------------

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_PLAIN_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# A line in one of the common forms (most lines of most lists): prefix, name, "^".
_COMMON = re.compile(
    rf"(0\.0\.0\.0[ \t]+|127\.0\.0\.1[ \t]+|\|\||\*\.)?({_LABEL}(?:\.{_LABEL})*)(\^)?"
)


def _never(line: str) -> None:
    return None


def _common(
    line: str, forms: dict[str, str], star_covers_apex: bool, *, bare: bool
) -> Entry | str | None:
    """The entry of a line in one of the common forms (a plain block as its bare name
    when ``bare``), or None for the full reader to decide."""
    match = _COMMON.fullmatch(line)
    if match is None:
        return None
    prefix, name, caret = match.groups()
    form = forms.get((prefix[0] if prefix else "") + (caret or ""))
    # A name ending in a digit may be an address, "*.com" and "0.0.0.0 localhost" are
    # the readers' to refuse.
    if form is None or name[-1].isdigit() or len(name) > 253:
        return None
    if form == _STAR:
        below = not star_covers_apex
        return None if "." not in name else name if bare and not below else Entry(name, below)
    if form == _HOSTS and name in HOSTS_NOISE:
        return None
    return name if bare else Entry(name, rule=form == _RULE)


def _given(found: Outcome, number: int, raw: str, report: ScanReport, notes: RuleNotes) -> bool:
    """Count what the full reader found on a line; whether its entries are to be given."""
    if found.skipped:
        report.skip(found.skipped, number, raw, whole=not found.entries)
    if not found.entries:
        return False
    report.used += 1
    if found.cancels or any(e.allow or e.important for e in found.entries):
        notes.saw(found)
    return not found.cancels


def _scan(
    lines: Iterable[str],
    reader: Reader,
    forms: dict[str, str],
    star_covers_apex: bool,
    report: ScanReport,
    notes: RuleNotes,
    *,
    bare: bool,
) -> Iterator[Entry | str]:
    plain = _PLAIN_NAME.fullmatch if "" in forms else _never
    used = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.strip().lower()
        # The commonest line of all first, as cheaply as can be: a plain name.
        if plain(line) and len(line) <= 253 and not line[-1].isdigit():
            used += 1
            yield line if bare else Entry(line)
            continue
        if not line.isascii():
            # Letters beyond ASCII are case-mapped by UTS 46 (normalise_name), not by
            # Python, whose lower() turns a final capital sigma into a final sigma
            # where browsers look up the medial one.
            line = raw.strip().translate(_ASCII_LOWER)
        common = _common(line, forms, star_covers_apex, bare=bare)
        if common is not None:
            used += 1
            yield common
            continue
        found = reader(line, raw)
        if _given(found, number, raw, report, notes):
            yield from found.entries
    report.used += used


def _read(
    open_lines: Callable[[], Iterable[str]], report: ScanReport, list_format: str, *, bare: bool
) -> Iterator[Entry | str]:
    lines = iter(open_lines())
    if list_format == "auto":
        head = _head(lines)
        read_format, dialect, label = detect(head)
        report.read_as = f"auto ({label})"
        lines = chain(head, lines)
    else:
        read_format, dialect = list_format, _DIALECTS.get(list_format, Dialect())
        report.read_as = list_format
    forms = _FORMS.get(read_format, {})
    star = dialect.star_covers_apex
    notes = RuleNotes()
    reader = _reader(read_format, dialect)
    yield from _scan(lines, reader, forms, star, report, notes, bare=bare)
    if not notes.settled:
        reader = _reader(read_format, dialect)
        again = _scan(open_lines(), reader, forms, star, ScanReport(), RuleNotes(), bare=False)
        report.retracted = retractions((e for e in again if isinstance(e, Entry)), notes)


def scan_list(
    open_lines: Callable[[], Iterable[str]], report: ScanReport, list_format: str = "auto"
) -> Iterator[Entry]:
    """Every entry of a list, from lines read one by one (``open_lines`` gives them
    anew: AdGuard rules that take entries back are settled by a second reading, whose
    result is ``report.retracted``). Skipped lines and counts go to ``report``."""
    for entry in _read(open_lines, report, list_format, bare=False):
        assert isinstance(entry, Entry)
        yield entry


def scan_names(
    open_lines: Callable[[], Iterable[str]], report: ScanReport, list_format: str = "auto"
) -> Iterator[Entry | str]:
    """``scan_list`` for large lists: a block of a name and its subdomains comes as the
    bare name (a million entries are made and dropped per large list otherwise)."""
    return _read(open_lines, report, list_format, bare=True)


def count_entries(text: str, list_format: str = "auto") -> tuple[int, ScanReport]:
    """The entries of a list held as text, as its shrink guard counts them, and what
    the reading found."""
    report = ScanReport()
    found = sum(1 for _ in scan_names(lambda: io.StringIO(text), report, list_format))
    return max(found - len(report.retracted), 0), report
