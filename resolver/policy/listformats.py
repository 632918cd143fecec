"""What one line of a list means, in each format administrators have.

A line gives entries (a name to block, or an exception), is quiet (a comment, a header,
zone structure), or is skipped with a class saying why. ``listzones`` reads the formats
of other DNS servers' configs (dnsmasq, Unbound, RPZ); ``listfile`` runs a whole list
through these readers.

How each form reads (aiwall has no exact-name entry: a name always covers its
subdomains, as in hosts and plain lists, so a form that means one exact name blocks its
subdomains too; blocking more of what a list names never lets a banned name through):

  ``name``              the name and its subdomains (plain lists, AdGuard, Surge)
  ``*.name``            plain lists and AdGuard: its subdomains only; ``wildcard``
                        lists (hagezi, 1Hosts, Blocky): the name and its subdomains
  ``.name``             Surge: the name and its subdomains; AdGuard: its subdomains only
  ``addr name name``    hosts: every name (``#`` starts a comment anywhere)
  ``||name^``           AdGuard: the name and its subdomains; also ``||name``, ``|name^``,
                        ``name^``; ``||*.name^`` and ``.name^``: the subdomains only;
                        ``@@`` makes any of them an exception of this list;
                        ``$important`` and ``$badfilter`` are honoured (``listrules``)
  ``DOMAIN-SUFFIX,name`` Surge and Clash rule sets (``DOMAIN,name`` too)
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import NamedTuple, get_args

from resolver.config.blocking import ListFormat
from resolver.dns.names import normalise_name

LIST_FORMATS: tuple[str, ...] = get_args(ListFormat)

# Why a line gave no entry. The first six are lines of a list's own format that a DNS
# blocker cannot apply (a browser filter list is mostly cosmetic rules, and is not broken
# for it): they are counted and reported, never held against ``max_invalid``. The last
# three are lines nothing can read, and count against it.
NOT_FOR_DNS = ("regex", "cosmetic", "pattern", "modifier", "forward", "unsupported")
UNREADABLE = ("invalid_name", "other_format", "unreadable")
SKIP_CLASSES = NOT_FOR_DNS + UNREADABLE


class Entry(NamedTuple):
    # A tuple rather than a dataclass: a million of these are made per large list load.
    name: str  # lowercase ASCII (IDNA applied), no trailing dot
    below_only: bool = False  # subdomains only, not the name itself
    allow: bool = False  # an exception, which cancels only its own list's entries
    important: bool = False  # AdGuard ``$important``
    rule: bool = False  # from an AdGuard rule: what a ``$badfilter`` rule may cancel


class Outcome(NamedTuple):
    """What a line gave: entries, a skip class (for the whole line when there are no
    entries, else for some of its names), or the rules a ``$badfilter`` line cancels."""

    entries: tuple[Entry, ...] = ()
    skipped: str = ""
    cancels: bool = False


# A comment, a header, a zone's own structure: neither used nor skipped.
QUIET = Outcome()
SKIP = {kind: Outcome((), kind) for kind in SKIP_CLASSES}
# (line lowercased and stripped, the line as read) -> what it gives. The readers of one
# form answer None for a line not in that form.
Reader = Callable[[str, str], Outcome]


class Dialect(NamedTuple):
    """The meaning of the forms that differ between formats."""

    star_covers_apex: bool = False  # "*.name": the name too (wildcard lists)
    dot_covers_apex: bool = True  # ".name": the name too (Surge), or subdomains only


def is_address(token: str) -> bool:
    try:
        ipaddress.ip_address(token)
    except ValueError:
        return False
    return True


def quiet(line: str) -> bool:
    """Blank lines, comments (``#``, ``!``, ``;``) and AdBlock headers (``[Adblock]``)."""
    return not line or line[0] in "#!;["


def without_comment(line: str) -> str:
    """The line before a `` #`` comment (a ``#`` inside a word is not one: ``##``)."""
    if " #" in line or "\t#" in line:
        return line.split(" #", 1)[0].split("\t#", 1)[0].rstrip()
    return line


# --- names ----------------------------------------------------------------------------

# Characters of URL patterns, never of names.
_NOT_NAME = re.compile(r"[/:?=&%|^,;$@]")


def name_entry(
    text: str, below_only: bool, *, rule: bool = False, wide: bool = False, **flags: bool
) -> Outcome:
    """One name (``text`` as written, without ``*.`` or ``.``) as an entry. A ``*``
    inside it is a pattern; so is any character of a URL in an AdGuard rule (``rule``),
    while elsewhere such a line is not a name at all. ``wide``: written as a wildcard
    (``*.name``, ``.name``), which over a whole top-level domain is a mistake."""
    if not text or "*" in text or (rule and _NOT_NAME.search(text)):
        return SKIP["pattern"]
    name = normalise_name(text)
    if name is None or ((below_only or wide) and "." not in name):
        # "*.com": every name under a top-level domain is not a list entry but a mistake.
        return SKIP["invalid_name"]
    return Outcome((Entry(name, below_only, rule=rule, **flags),))


def foreign(token: str) -> bool:
    """A token with characters of URLs or of other formats' syntax, never of names."""
    return _NOT_NAME.search(token) is not None


def read_name(token: str, dialect: Dialect) -> Outcome:
    """A line that is one token: ``name``, ``*.name``, ``.name`` or ``+.name`` (Clash's
    name and subdomains)."""
    if token.startswith("+."):
        return name_entry(token[2:], False, wide=True)
    if token.startswith("*."):
        return name_entry(token[2:], not dialect.star_covers_apex, wide=True)
    if token.startswith("."):
        return name_entry(token[1:], not dialect.dot_covers_apex, wide=True)
    if is_address(token):
        # An address alone is a hosts line cut short, not a name to block.
        return SKIP["unreadable"]
    return name_entry(token, False)


# --- hosts ----------------------------------------------------------------------------

# Names hosts files map to themselves; they are not block entries.
HOSTS_NOISE = frozenset(
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


def read_hosts(line: str) -> Outcome | None:
    """``address name [name ...]``: every name; a bad name is skipped, not the line.
    None when the line does not start with an address."""
    tokens = line.split("#", 1)[0].split()
    if not tokens or not is_address(tokens[0]):
        return None
    found: list[Entry] = []
    bad = False
    for token in tokens[1:]:
        if token in HOSTS_NOISE:
            continue
        name = normalise_name(token)
        if name is None:
            bad = True
        else:
            found.append(Entry(name))
    if found:
        return Outcome(tuple(found), "invalid_name" if bad else "")
    if bad:
        return SKIP["invalid_name"]
    # Only the address, or only localhost and its kin: the latter is quiet.
    return SKIP["unreadable"] if len(tokens) == 1 else QUIET


# --- AdGuard --------------------------------------------------------------------------

_COSMETIC = ("##", "#@#", "#?#", "#@?#", "#$#", "#@$#", "#%#", "#@%#", "$$", "$@$")
_COSMETIC_SITES = re.compile(r"[a-z0-9.,~*_-]*")
_HONOURED = frozenset({"important", "badfilter"})


def looks_adblock(line: str) -> bool:
    """Whether a line (not a hosts line) is written in AdBlock syntax."""
    return line[0] in "|@/" or "^" in line or "$" in line or any(m in line for m in _COSMETIC)


def _cosmetic(line: str) -> bool:
    for marker in _COSMETIC:
        sites, found, selector = line.partition(marker)
        if found:
            return bool(selector) and _COSMETIC_SITES.fullmatch(sites) is not None
    return False


_MODIFIER = re.compile(r"~?[a-z][a-z0-9_-]*(=\S*)?")


def _modifiers(options: str) -> tuple[bool, bool] | str:
    """($important, $badfilter), or the skip class of a rule whose modifiers DNS rules
    do not honour (``unreadable`` when they are not modifiers at all)."""
    given = options.split(",")
    if not all(_MODIFIER.fullmatch(option) for option in given):
        return "unreadable"
    if not set(given) <= _HONOURED:
        return "modifier"
    return "important" in given, "badfilter" in given


def _target(pattern: str) -> tuple[str, bool, bool]:
    """(name as written, subdomains only, exact name only) of an AdBlock pattern."""
    exact = False
    if pattern.startswith("||*."):
        text, below = pattern[4:], True
    elif pattern.startswith("||"):
        text, below = pattern[2:], False
    elif pattern.startswith("|"):
        text, below, exact = pattern[1:], False, True
    elif pattern.startswith(("*.", ".")):
        text, below = pattern.removeprefix("*").removeprefix("."), True
    else:
        text, below = pattern, False
    return text.removesuffix("|").removesuffix("^"), below, exact


def _slashed(body: str) -> Outcome | None:
    """``/regex/`` (with or without modifiers) and ``/path`` rules."""
    if not body.startswith("/"):
        return None
    expression = body.rpartition("$")[0] if "$" in body else body
    if len(expression) > 2 and expression.endswith("/"):
        return SKIP["regex"]
    return SKIP["pattern"]


def read_adblock(line: str) -> Outcome:
    """One AdGuard rule, as AdGuard Home's DNS filtering reads it; what DNS cannot
    apply (regular expressions, cosmetic rules, paths, other modifiers) is skipped."""
    if _cosmetic(line):
        return SKIP["cosmetic"]
    allow = line.startswith("@@")
    body = line[2:] if allow else line
    if not body or " " in body or "\t" in body:
        return SKIP["unreadable"]  # rules have no blanks: this is prose, or a page
    slashed = _slashed(body)
    if slashed is not None:
        return slashed
    pattern, dollar, options = body.partition("$")
    important = badfilter = False
    if dollar:
        honoured = _modifiers(options)
        if isinstance(honoured, str):
            return SKIP[honoured]
        important, badfilter = honoured
    text, below, exact = _target(pattern)
    if exact and allow:
        # An exception for this one name: aiwall's exceptions cover subdomains, and
        # lifting the list's block of those is more than the rule asks.
        return SKIP["pattern"]
    outcome = name_entry(text, below, allow=allow, important=important, rule=True)
    if badfilter and outcome.entries:
        return Outcome(outcome.entries, cancels=True)
    return outcome


# --- Surge and Clash rule sets ---------------------------------------------------------

_RULE_SET_NAMES = {"domain": False, "domain-suffix": False}
_RULE_SET_SKIPS = {
    "domain-keyword": "pattern",
    "domain-wildcard": "pattern",
    "domain-regex": "regex",
    "url-regex": "regex",
}
_RULE_SET_OTHER = frozenset(
    [
        "ip-cidr",
        "ip-cidr6",
        "ip-asn",
        "geoip",
        "process-name",
        "process-path",
        "user-agent",
        "dest-port",
        "src-ip",
        "src-port",
        "in-port",
        "protocol",
        "and",
        "or",
        "not",
        "rule-set",
        "domain-set",
        "subnet",
    ]
)


def read_rule_set(line: str) -> Outcome | None:
    """``DOMAIN-SUFFIX,name[,policy]`` and its kin; None when not a rule-set line."""
    kind, comma, rest = line.partition(",")
    kind = kind.strip()
    if not comma:
        return None
    if kind in _RULE_SET_NAMES:
        return name_entry(rest.split(",", 1)[0].strip(), _RULE_SET_NAMES[kind])
    if kind in _RULE_SET_SKIPS:
        return SKIP[_RULE_SET_SKIPS[kind]]
    return SKIP["unsupported"] if kind in _RULE_SET_OTHER else None
