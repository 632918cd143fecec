"""Block and allow list files in the formats administrators already have.

One parser accepts, line by line and mixed in one file:
  plain names        ``deepseek.com``          (the name and every subdomain)
  hosts files        ``0.0.0.0 deepseek.com``  (every name after the address)
  AdBlock rules      ``||deepseek.com^``       (name and subdomains, as plain names)
  wildcards          ``*.deepseek.com``        (subdomains only, not the name itself)
  comments           ``# ...``, ``! ...``, and text after `` #``
AdBlock exceptions (``@@||name^``) become allow entries. Lines that are none of these
(regular expressions, cosmetic rules, rules with $modifiers we cannot honour) are
rejected and counted, never guessed at.
"""

from __future__ import annotations

import io
import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
# Names hosts files map to themselves; they are not block entries.
_HOSTS_NOISE = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
        "0.0.0.0",
    }
)


class Entry(NamedTuple):
    # A tuple rather than a dataclass: a million of these are made per large list load.
    name: str  # lowercase ASCII (IDNA applied), no trailing dot
    below_only: bool = False  # "*.name": subdomains only
    allow: bool = False  # an AdBlock exception rule


@dataclass(slots=True)
class ParsedList:
    entries: list[Entry] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, line)


def normalise_name(text: str) -> str | None:
    """Lowercase ASCII form of a hostname, or None when it is not one."""
    name = text.strip().rstrip(".").lower()
    if not name:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    # Checked after IDNA, which lengthens names: a longer one does not fit the wire format.
    if len(name) > 253:
        return None
    labels = name.split(".")
    if len(labels) < 1 or not all(_LABEL.match(label) for label in labels):
        return None
    return name


def _is_address(token: str) -> bool:
    try:
        ipaddress.ip_address(token)
    except ValueError:
        return False
    return True


def _parse_line(line: str) -> list[Entry] | None:
    """Entries on one line ([] for blank/comment lines), None when the line is not understood."""
    line = line.strip()
    if not line or line[0] in "#![":
        return []
    if " #" in line or "\t#" in line:
        line = line.split("#", 1)[0].strip()
    allow = False
    if line.startswith("@@"):
        allow, line = True, line[2:]
    if line.startswith("||"):
        body = line[2:]
        if body.endswith("^|"):
            body = body[:-1]
        if not body.endswith("^"):
            return None
        name = normalise_name(body[:-1])
        return [Entry(name, allow=allow)] if name else None
    if allow:
        return None
    tokens = line.split()
    if len(tokens) > 1 and _is_address(tokens[0]):
        entries: list[Entry] = []
        for token in tokens[1:]:
            if token.lower() in _HOSTS_NOISE:
                continue
            name = normalise_name(token)
            if name is None:
                return None
            entries.append(Entry(name))
        return entries
    if len(tokens) != 1:
        return None
    token = tokens[0]
    if _is_address(token):
        # An address alone is a hosts line cut short, not a name to block.
        return None
    below_only = token.startswith("*.")
    name = normalise_name(token[2:] if below_only else token)
    if name is None or ("." not in name and below_only):
        return None
    return [Entry(name, below_only=below_only)]


# A whole line that is already a plain lowercase hostname: most lines of most lists.
_PLAIN_NAME = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*"
)


def scan_list(
    lines: Iterable[str], rejected: list[tuple[int, str]], used: list[int] | None = None
) -> Iterator[Entry]:
    """Entries one by one from lines read one by one, so a million-line list is never
    held in memory whole; lines not understood go to ``rejected`` as (number, line).
    ``used``, when given, receives the number of lines that gave entries (blank lines and
    comments are neither used nor rejected), so a mostly unreadable file can be told."""
    plain = _PLAIN_NAME.fullmatch
    number = quiet = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.strip().lower()
        # A name ending in a digit may be an address: the full parser decides those.
        if plain(line) and len(line) <= 253 and not line[-1].isdigit():
            yield Entry(line)
            continue
        entries = _parse_line(raw)
        if entries is None:
            rejected.append((number, raw.strip()[:200]))
        elif entries:
            yield from entries
        else:
            quiet += 1
    if used is not None:
        used[0] = number - quiet - len(rejected)


def parse_list(text: str) -> ParsedList:
    parsed = ParsedList()
    parsed.entries.extend(scan_list(io.StringIO(text), parsed.rejected))
    return parsed
