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

import ipaddress
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from resolver.dns.names import normalise_name

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
    if line.startswith(("||", "@@")):
        return _adblock(line)
    tokens = line.split()
    if len(tokens) > 1 and _is_address(tokens[0]):
        return _hosts(tokens[1:])
    if len(tokens) != 1 or _is_address(tokens[0]):
        # An address alone is a hosts line cut short, not a name to block.
        return None
    return _plain(tokens[0])


def _adblock(line: str) -> list[Entry] | None:
    """``||name^`` (and its exception ``@@||name^``): the name and its subdomains."""
    allow = line.startswith("@@")
    body = line[2:] if allow else line
    if not body.startswith("||"):
        return None
    body = body[2:].removesuffix("|")
    if not body.endswith("^"):
        return None
    name = normalise_name(body[:-1])
    return [Entry(name, allow=allow)] if name else None


def _hosts(names: list[str]) -> list[Entry] | None:
    """The names after the address of a hosts-file line."""
    entries: list[Entry] = []
    for token in names:
        if token.lower() in _HOSTS_NOISE:
            continue
        name = normalise_name(token)
        if name is None:
            return None
        entries.append(Entry(name))
    return entries


def _plain(token: str) -> list[Entry] | None:
    """``name`` (with its subdomains) or ``*.name`` (subdomains only)."""
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
