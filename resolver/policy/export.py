"""The compiled blocking policy written in the formats of other DNS software.

``aiwall export`` lets a site that already runs dnsmasq, Unbound, BIND, AdGuard Home or
Pi-hole enforce the same catalog without running aiwall itself. ``render`` turns the
entries of ``Blocklist.entries()`` into one of these texts:

The formats, and what each cannot express, are described in ``export_formats``.

In every format "canary" entries (the browser DNS-over-HTTPS canaries) are NXDOMAIN
whatever the response mode, where the format can choose the answer at all.

Names reach this module validated (letters, digits, hyphens, underscores), but a config
file is no place to find out otherwise: any name with other characters is left out of
the text and counted in its header, as is any name a format reserves (RPZ trigger
suffixes such as ``.rpz-ip``). Output is deterministic for the same entries and options
and ends with a newline.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from resolver.policy.export_formats import RENDERERS
from resolver.policy.export_model import (
    MAX_NAME,
    NAME,
    RPZ_TRIGGER_LABELS,
    ExportOptions,
    ExportPolicy,
)
from resolver.policy.rules import PolicyEntry

__all__ = ["FORMATS", "RESPONSES", "ExportOptions", "render"]

FORMATS: tuple[str, ...] = ("domains", "hosts", "adblock", "dnsmasq", "unbound", "rpz", "bind")
RESPONSES: tuple[str, ...] = ("nxdomain", "sinkhole", "nodata", "refused")


def _carryable(name: str, fmt: str) -> bool:
    if len(name) > MAX_NAME or NAME.fullmatch(name) is None:
        return False
    return not (fmt in ("rpz", "bind") and name.rsplit(".", 1)[-1] in RPZ_TRIGGER_LABELS)


def _prepare(entries: Sequence[PolicyEntry], fmt: str) -> ExportPolicy:
    policy = ExportPolicy([])
    exact = {e.name for e in entries if not e.below_only}
    seen: set[tuple[str, bool]] = set()
    for entry in entries:
        key = (entry.name, entry.below_only)
        if key in seen:
            continue
        seen.add(key)
        if not _carryable(entry.name, fmt):
            policy.skipped.append(entry)
        # aiwall tries the exact entry before the wildcard of the same name for every
        # name below it, so a "*.name" beside "name" never decides anything; writing it
        # would give formats that rank the two differently a rule aiwall never applies.
        elif not (entry.below_only and entry.name in exact):
            policy.entries.append(entry)
            policy.by_name[entry.name] = entry
    return policy


def _check(fmt: str, options: ExportOptions) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if options.response not in RESPONSES:
        raise ValueError(
            f"unknown response {options.response!r}; expected one of {', '.join(RESPONSES)}"
        )
    try:
        ipaddress.IPv4Address(options.sinkhole_ipv4)
        if ipaddress.IPv6Address(options.sinkhole_ipv6).scope_id is not None:
            # "%eth0" means nothing to a client, and '%' is not record data anywhere.
            raise ValueError(f"{options.sinkhole_ipv6!r} has a scope")
    except ValueError as error:
        raise ValueError(f"sinkhole address: {error}") from None
    if not 0 <= options.ttl <= 2**31 - 1:
        raise ValueError(f"ttl: expected 0 to {2**31 - 1}, got {options.ttl}")
    if not 0 <= options.serial <= 2**32 - 1:
        raise ValueError(f"serial: expected 0 to {2**32 - 1}, got {options.serial}")
    if not _carryable(options.rpz_zone.rstrip(".").lower(), "domains"):
        raise ValueError(f"rpz_zone: {options.rpz_zone!r} is not a domain name")
    if any(c in options.rpz_file for c in '"\\\n\r') or not options.rpz_file:
        raise ValueError(f"rpz_file: {options.rpz_file!r} cannot be written in named.conf")


def render(entries: Sequence[PolicyEntry], fmt: str, options: ExportOptions) -> str:
    """The policy as a text in format ``fmt``; raises ValueError for a bad format or option."""
    _check(fmt, options)
    policy = _prepare(entries, fmt)
    return "\n".join(RENDERERS[fmt](policy, options)) + "\n"
