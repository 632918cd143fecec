"""Blocklists written as other DNS servers' configs: dnsmasq, Unbound and RPZ zones.

What each statement means for aiwall, from the servers' own manuals:

dnsmasq
  ``address=/name/`` (NXDOMAIN), ``address=/name/#`` (0.0.0.0 and ::) and
  ``address=/name/ADDRESS``: blocks of the name and its subdomains (aiwall answers with
  its own response mode). ``server=/name/`` and ``local=/name/``, with no address,
  are blocks too: dnsmasq then never forwards the name and answers NXDOMAIN (its
  manual: ``--address=/example.com/`` is equivalent to ``--server=/example.com/``).
  ``server=/name/#`` ("use the standard servers") is an exception, as in aiwall's own
  dnsmasq export. ``server=/name/ADDRESS`` sends the name to a chosen upstream: that
  is routing, not a block, so it is skipped (``forward``). ``/*.name/`` is the
  subdomains only; ``/.name/`` is the name too (dnsmasq's historical reading);
  ``/#/`` (every name) and ``/*name/`` (any name ending so) are skipped (``pattern``).
Unbound
  ``local-zone: name TYPE``: a block of the name and its subdomains for the types that
  answer from the zone (static, deny, refuse, redirect, always_nxdomain, always_null,
  ...), an exception for those that resolve normally (transparent, typetransparent,
  always_transparent, inform). ``local-data:`` with an A, AAAA or CNAME record blocks
  its owner name, as a hosts line does; other records are the zone's own data.
RPZ
  A record under a trigger name: ``CNAME rpz-passthru.`` is an exception; ``CNAME .``
  (NXDOMAIN), ``CNAME *.`` (NODATA), ``CNAME rpz-drop.`` and local data (A, AAAA, a
  CNAME to another name) are blocks. ``*.name`` triggers on the subdomains only.
  IP, NSDNAME, NSIP and client-IP triggers and ``rpz-tcp-only.`` are skipped
  (``unsupported``).
"""

from __future__ import annotations

import re

from resolver.policy.listformats import QUIET, SKIP, Entry, Outcome, name_entry

# --- dnsmasq --------------------------------------------------------------------------

_DNSMASQ_KEYS = ("address", "server", "local")
_DNSMASQ_OPTION = re.compile(r"[a-z][a-z0-9-]*(=.*)?")


def _dnsmasq_domain(domain: str, allow: bool) -> Outcome:
    if domain in ("", "#") or (domain.startswith("*") and not domain.startswith("*.")):
        return SKIP["pattern"]
    below = domain.startswith("*.")
    return name_entry(domain.removeprefix("*").removeprefix("."), below, allow=allow)


def _dnsmasq_entries(key: str, domains: list[str], target: str) -> Outcome:
    if key != "address" and target not in ("", "#"):
        return SKIP["forward"]
    allow = key != "address" and target == "#"
    found: list[Entry] = []
    skipped = ""
    for domain in domains:
        outcome = _dnsmasq_domain(domain, allow)
        found.extend(outcome.entries)
        skipped = skipped or outcome.skipped
    return Outcome(tuple(found), skipped) if found else SKIP[skipped or "unreadable"]


def read_dnsmasq(line: str, *, options: bool) -> Outcome | None:
    """``address=``, ``server=`` and ``local=`` lines; with ``options`` (a list declared
    dnsmasq) any other option line is skipped as ``unsupported``. None: not dnsmasq."""
    key, equals, value = line.partition("=")
    key = key.strip()
    if key in _DNSMASQ_KEYS and equals:
        value = value.strip()
        if not value.startswith("/"):
            # server=ADDRESS: an upstream for every name.
            return SKIP["forward"] if key != "address" else SKIP["unreadable"]
        *domains, target = value[1:].split("/")
        if not domains:
            return SKIP["unreadable"]
        return _dnsmasq_entries(key, domains, target)
    if options and _DNSMASQ_OPTION.fullmatch(line):
        return SKIP["unsupported"]
    return None


# --- Unbound --------------------------------------------------------------------------

_ZONE_BLOCKS = frozenset(
    [
        "deny",
        "refuse",
        "static",
        "redirect",
        "inform_deny",
        "inform_redirect",
        "always_refuse",
        "always_nxdomain",
        "always_nodata",
        "always_deny",
        "always_null",
    ]
)
_ZONE_PASSES = frozenset(["transparent", "typetransparent", "always_transparent", "inform"])
_DATA_BLOCKS = frozenset({"a", "aaaa", "cname"})
_CLASSES = frozenset({"in", "ch", "hs", "cs"})
_TTL = re.compile(r"\d+[smhdw]?(\d+[smhdw])*")


def _local_zone(value: str) -> Outcome:
    fields = value.replace('"', " ").split()
    if len(fields) != 2:
        return SKIP["unreadable"]
    zone, kind = fields
    if kind in _ZONE_BLOCKS:
        return name_entry(zone, False)
    if kind in _ZONE_PASSES:
        return name_entry(zone, False, allow=True)
    return SKIP["unsupported"]  # nodefault, noview


def _record_type(fields: list[str]) -> str:
    """The type of ``owner [ttl] [class] TYPE data`` (fields after the owner)."""
    for field in fields:
        if field not in _CLASSES and not _TTL.fullmatch(field):
            return field
    return ""


def _local_data(value: str) -> Outcome:
    fields = value.strip().strip("'\"").split()
    if len(fields) < 3:
        return SKIP["unreadable"]
    if _record_type(fields[1:]) not in _DATA_BLOCKS:
        return QUIET  # SOA, NS, TXT, ...: the zone's own data
    return name_entry(fields[0], False)


def read_unbound(line: str, *, clauses: bool) -> Outcome | None:
    """``local-zone:`` and ``local-data:`` lines (``server:`` is quiet); with
    ``clauses`` (a list declared unbound) other ``name: value`` lines are skipped as
    ``unsupported``. None: not an Unbound line."""
    key, colon, value = line.partition(":")
    key = key.strip()
    if not colon or " " in key:
        return None
    if key == "local-zone":
        return _local_zone(value)
    if key == "local-data":
        return _local_data(value)
    if key == "server" and not value.strip():
        return QUIET
    if key == "local-data-ptr":
        return QUIET
    return SKIP["unsupported"] if clauses else None


# --- RPZ ------------------------------------------------------------------------------

_RPZ_TRIGGERS = ("rpz-ip", "rpz-nsdname", "rpz-nsip", "rpz-client-ip")
_RPZ_ACTIONS = {".": "block", "*.": "block", "rpz-drop.": "block", "rpz-passthru.": "allow"}


class RpzReader:
    """A Response Policy Zone, line by line (a zone file has state: ``$ORIGIN``,
    records spread over lines in parentheses, owners left blank for the one before)."""

    def __init__(self) -> None:
        self.origin = ""  # the zone's name when known, absolute owners end in it
        self.depth = 0  # parentheses still open
        self.owner = ""

    def __call__(self, line: str, raw: str) -> Outcome:
        text = line.split(";", 1)[0].strip()
        if self.depth:
            self.depth = max(self.depth + text.count("(") - text.count(")"), 0)
            return QUIET
        if not text or text[0] in "#!":
            return QUIET
        if text.startswith("$"):
            return self._directive(text)
        self.depth = max(text.count("(") - text.count(")"), 0)
        fields = text.replace("(", " ").replace(")", " ").split()
        if raw[:1] not in (" ", "\t"):
            self.owner = fields.pop(0)
        kind = _record_type(fields)
        if kind in ("soa", "ns") or self.owner == "@":
            if kind == "soa" and not self.origin and self.owner.endswith("."):
                self.origin = self.owner.rstrip(".")
            return QUIET
        if not kind:
            return SKIP["unreadable"]
        data = fields[fields.index(kind) + 1 :]
        return self._record(kind, data[0] if data else "")

    def _directive(self, text: str) -> Outcome:
        name, _, value = text.partition(" ")
        if name == "$origin":
            self.origin = value.strip().rstrip(".")
            return QUIET
        return QUIET if name == "$ttl" else SKIP["unsupported"]  # $include, $generate

    def _record(self, kind: str, target: str) -> Outcome:
        trigger = self._trigger()
        if trigger is None:
            return SKIP["unsupported"]
        action = _RPZ_ACTIONS.get(target, "block") if kind == "cname" else "block"
        if target == "rpz-tcp-only.":
            return SKIP["unsupported"]
        below = trigger.startswith("*.")
        return name_entry(trigger.removeprefix("*."), below, allow=action == "allow")

    def _trigger(self) -> str | None:
        """The name a record's owner triggers on, relative to the zone; None for
        triggers that are not names (IP addresses, name servers, clients)."""
        owner = self.owner
        if owner.endswith("."):
            owner = owner[:-1]
            if self.origin and owner.endswith("." + self.origin):
                owner = owner[: -len(self.origin) - 1]
        if owner.rsplit(".", 1)[-1] in _RPZ_TRIGGERS:
            return None
        return owner


def looks_like_zone(line: str) -> bool:
    """Whether a line (lowercased) is zone-file syntax: a directive or a record."""
    if line.startswith(("$ttl", "$origin")):
        return True
    fields = line.split(";", 1)[0].replace("(", " ").split()
    return len(fields) >= 3 and _record_type(fields[1:4]) in {"soa", "ns", "cname", "a", "aaaa"}


def zone_apex(line: str) -> bool:
    """A line that only a zone file has: a ``$`` directive or an SOA record."""
    return line.startswith(("$ttl", "$origin")) or " soa " in f" {line} "
