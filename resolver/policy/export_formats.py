"""Each export format's writer; ``export`` picks one and adds the common header.

``domains``
    One name per line, ``*.name`` for subdomains-only entries; ``#`` comments. This is
    aiwall's own list format, where a name covers its subdomains; consumers that read
    plain names as exact names (Pi-hole does) should get ``adblock`` instead.
    Cannot express: allow exceptions (they are listed in the header, to be allowed in the
    consuming tool), the answer (the consumer's blocking mode decides).

``hosts``
    ``<sinkhole_ipv4> name`` and ``<sinkhole_ipv6> name`` lines, the configured sinkhole
    addresses whatever the response mode. Cannot express: subdomains (a hosts file
    matches exact names, so ``x.chat.deepseek.com`` is not blocked by a hosts file that
    lists ``chat.deepseek.com``), ``*.name`` entries (left out and counted), NXDOMAIN
    (so the browser canaries do not switch DNS-over-HTTPS off). Allow exceptions need
    nothing: an exact-name list never covers the names they protect.

``adblock``
    ``||name^`` (name and subdomains), ``||*.name^`` (subdomains only, as AdGuard Home
    reads it), ``@@||name^`` for allow exceptions; ``!`` comments. AdGuard Home lets any
    exception beat any block whatever their specificity, while aiwall lets the most
    specific entry win; so a block nested under an exception gets ``$important``, and an
    exception nested under such a block gets ``@@...$important``. Four levels of priority
    exist, so a fifth alternation (block, allow, block, allow, block, one inside the
    other) cannot be expressed: such entries are counted in the header. Cannot express:
    the answer (AdGuard Home's blocking mode decides, also for the canaries).

``dnsmasq``
    ``address=/name/`` (NXDOMAIN for the name and its subdomains), ``/*.name/`` for
    subdomains only, ``server=/name/#`` for allow exceptions (dnsmasq, like aiwall, lets
    the most specific domain win). Sinkhole mode answers A and AAAA with the sinkhole
    addresses and adds ``local=/name/`` so that other types get NODATA instead of being
    forwarded (dnsmasq 2.86 and later forward them otherwise). Cannot express: the
    ``nodata`` and ``refused`` modes (written as NXDOMAIN, which still blocks), the block
    TTL (dnsmasq's own ``local-ttl`` applies).

``unbound``
    A ``server:`` clause of ``local-zone`` statements: ``always_nxdomain``,
    ``always_nodata``, ``always_refuse``, or ``redirect`` with A and AAAA ``local-data``
    for sinkhole mode; ``always_transparent`` for allow exceptions (Unbound uses the
    closest enclosing local zone, as aiwall uses the most specific entry). Usable on its
    own or through ``include:``. Cannot express: ``*.name`` entries, because a local zone
    always covers its apex. One is written as a zone for the whole name when the name
    itself already gets the same answer from a parent entry; otherwise it is left out
    and counted (the ``rpz`` export carries it). The TTL of negative answers is
    Unbound's own.

``rpz``
    A Response Policy Zone, as BIND, Unbound and PowerDNS Recursor load them: for
    every entry ``name`` and ``*.name`` (only the latter for subdomains-only entries),
    with ``CNAME .`` (NXDOMAIN), ``CNAME *.`` (NODATA), A and AAAA records (sinkhole) or
    ``CNAME rpz-passthru.`` (allow). Owner names are relative, so the zone loads under
    any origin. RPZ prefers an exact trigger to a wildcard and the longest wildcard to a
    shorter one, which is aiwall's most-specific-wins. Cannot express: ``refused`` mode
    (written as NXDOMAIN). The SOA serial is ``ExportOptions.serial``: raise it when the
    zone is transferred to secondaries.

``bind``
    named.conf statements for the ``rpz`` export, the way BIND administrators block
    names: a ``zone`` statement for the policy zone (include the file at the top level)
    and, in a comment, the ``response-policy`` statement that belongs inside the
    ``options`` block, which an included snippet cannot reopen. A zone per blocked
    domain would lose the subdomains-only entries, the allow exceptions and the canaries;
    the policy zone keeps all of them.
"""

from __future__ import annotations

from collections.abc import Callable

from resolver.policy.export_model import (
    ADBLOCK_LEVELS,
    ExportOptions,
    ExportPolicy,
    blocks,
    comment,
    header,
    spelled,
)
from resolver.policy.rules import PolicyEntry


def _domains(policy: ExportPolicy, options: ExportOptions) -> list[str]:
    allows = [e for e in policy.entries if not blocks(e)]
    notes = ["each name covers its subdomains; *.name covers the subdomains only"]
    if allows:
        notes.append("allow exceptions cannot be written in this format; allow these yourself:")
        notes.extend(f"  allow {spelled(e)}" for e in allows)
    body = [spelled(e) for e in policy.entries if blocks(e)]
    return [*comment("#", header("domains", options, policy, notes)), *body]


def _hosts(policy: ExportPolicy, options: ExportOptions) -> list[str]:
    body: list[str] = []
    for entry in policy.entries:
        if not blocks(entry):
            continue  # an exact-name list never covers the name an exception protects
        if entry.below_only:
            policy.dropped.append(entry)
            continue
        body.append(f"{options.sinkhole_ipv4} {entry.name}")
        body.append(f"{options.sinkhole_ipv6} {entry.name}")
    notes = [
        "hosts files match exact names only: subdomains of these names are NOT blocked",
        "and no name gets NXDOMAIN (the browser canaries need it to turn DoH off);",
        "use the adblock, dnsmasq, unbound or rpz export where subdomains matter",
    ]
    return [*comment("#", header("hosts", options, policy, notes)), *body]


def _adblock(policy: ExportPolicy, options: ExportOptions) -> list[str]:
    rank: dict[str, int] = {}
    # Parents first: a rule's rank depends on the ranks of the rules around it.
    for entry in sorted(policy.entries, key=lambda e: e.name.count(".")):
        allow = not blocks(entry)
        to_beat = max(
            (rank[p.name] for p in policy.parents(entry.name) if blocks(p) == allow),
            default=-1,
        )
        fitting = [r for r in range(to_beat + 1, len(ADBLOCK_LEVELS)) if r % 2 == int(allow)]
        if fitting:
            rank[entry.name] = fitting[0]
        else:
            rank[entry.name] = len(ADBLOCK_LEVELS) - 2 + allow
            policy.dropped.append(entry)
    body = []
    for entry in policy.entries:
        prefix, modifier = ADBLOCK_LEVELS[rank[entry.name]]
        wildcard = "*." if entry.below_only else ""
        body.append(f"{prefix}||{wildcard}{entry.name}^{modifier}")
    notes = [
        "||name^ blocks the name and its subdomains, ||*.name^ the subdomains only,",
        "@@ marks an exception; $important keeps a more specific rule ahead of a wider one",
        "the answer (NXDOMAIN, 0.0.0.0, ...) is the consumer's blocking mode; the browser",
        "canaries switch DNS-over-HTTPS off only if that mode answers NXDOMAIN",
    ]
    lines = ["Title: aiwall generative-AI policy", *header("adblock", options, policy, notes)]
    return [*comment("!", lines), *body]


def _block_response(entry: PolicyEntry, options: ExportOptions) -> str:
    return "nxdomain" if entry.rule.action == "canary" else options.response


def _dnsmasq(policy: ExportPolicy, options: ExportOptions) -> list[str]:
    body = []
    for entry in policy.entries:
        domain = f"*.{entry.name}" if entry.below_only else entry.name
        if not blocks(entry):
            body.append(f"server=/{domain}/#")
        elif _block_response(entry, options) == "sinkhole":
            body.append(f"address=/{domain}/{options.sinkhole_ipv4}")
            body.append(f"address=/{domain}/{options.sinkhole_ipv6}")
            body.append(f"local=/{domain}/")
        else:
            body.append(f"address=/{domain}/")
    notes = [
        "address=/name/ answers NXDOMAIN for the name and its subdomains, /*.name/ for the",
        "subdomains only; server=/name/#: an exception, forwarded as usual",
    ]
    if options.response in ("nodata", "refused"):
        notes.append(
            f"dnsmasq cannot answer {options.response.upper()} per domain: NXDOMAIN instead"
        )
    notes.append("answer TTLs are dnsmasq's local-ttl, not the block TTL")
    return [*comment("#", header("dnsmasq", options, policy, notes)), *body]


_UNBOUND_TYPES = {
    "nxdomain": "always_nxdomain",
    "nodata": "always_nodata",
    "refused": "always_refuse",
    "sinkhole": "redirect",
}


def _answer(entry: PolicyEntry | None, options: ExportOptions) -> str:
    """What aiwall answers for a name decided by ``entry``: a response mode or "forward"."""
    if entry is None or not blocks(entry):
        return "forward"
    return _block_response(entry, options)


def _unbound(policy: ExportPolicy, options: ExportOptions) -> list[str]:
    body: list[str] = []
    for entry in policy.entries:
        answer = _answer(entry, options)
        if entry.below_only:
            # A local zone covers its apex: only right when the apex is answered the same.
            apex = _answer(next(policy.parents(entry.name), None), options)
            if apex != answer:
                policy.dropped.append(entry)
                body.append(f"    # *.{entry.name}: subdomains only, see the rpz export")
                continue
        zone = f'"{entry.name}."'
        if answer == "forward":
            body.append(f"    local-zone: {zone} always_transparent")
            continue
        body.append(f"    local-zone: {zone} {_UNBOUND_TYPES[answer]}")
        if answer == "sinkhole":
            owner = f"{entry.name}. {options.ttl} IN"
            body.append(f'    local-data: "{owner} A {options.sinkhole_ipv4}"')
            body.append(f'    local-data: "{owner} AAAA {options.sinkhole_ipv6}"')
    notes = [
        "a local-zone covers the name and its subdomains; always_transparent: an exception",
        "use it as it is (unbound.conf) or from a config with include: this-file",
    ]
    return [*comment("#", header("unbound", options, policy, notes)), "server:", *body]


def _rpz_records(entry: PolicyEntry, options: ExportOptions) -> list[str]:
    answer = _answer(entry, options)
    if answer == "forward":
        data = ["CNAME rpz-passthru."]
    elif answer == "sinkhole":
        data = [f"A {options.sinkhole_ipv4}", f"AAAA {options.sinkhole_ipv6}"]
    elif answer == "nodata":
        data = ["CNAME *."]
    else:  # nxdomain, and refused, which RPZ has no action for
        data = ["CNAME ."]
    owners = [f"*.{entry.name}"] if entry.below_only else [entry.name, f"*.{entry.name}"]
    return [f"{owner} {record}" for owner in owners for record in data]


def _rpz(policy: ExportPolicy, options: ExportOptions) -> list[str]:
    notes = [
        "a Response Policy Zone: load it under any zone name (named-checkzone rpz.aiwall FILE)",
        "name and *.name: the name and its subdomains; CNAME rpz-passthru.: an exception",
    ]
    if options.response == "refused":
        notes.append("RPZ has no REFUSED action: NXDOMAIN instead")
    ttl = options.ttl
    zone = [
        f"$TTL {ttl}",
        # MINIMUM is the negative-caching TTL of the NXDOMAIN and NODATA answers.
        f"@ SOA localhost. hostmaster.localhost. {options.serial} 3600 600 86400 {ttl}",
        "@ NS localhost.",
    ]
    for entry in policy.entries:
        zone.extend(_rpz_records(entry, options))
    return [*comment(";", header("rpz", options, policy, notes)), *zone]


def _bind(policy: ExportPolicy, options: ExportOptions) -> list[str]:
    zone = options.rpz_zone.rstrip(".").lower()
    notes = [
        f"1. save `aiwall export --format rpz` as {options.rpz_file}",
        "2. include this file at the top level of named.conf",
        "3. add this statement to the options { } block (or to a view):",
        f'   response-policy {{ zone "{zone}"; }} break-dnssec yes qname-wait-recurse no;',
        "   (break-dnssec: rewrite signed answers for DNSSEC clients too; qname-wait-recurse",
        "   no: decide before recursing, so a blocked name is never sent upstream)",
        "4. named-checkconf -z, then rndc reload",
    ]
    body = [
        f'zone "{zone}" {{',
        "    type master;",
        f'    file "{options.rpz_file}";',
        # The policy is internal: clients see its effect, not the zone itself.
        "    allow-query { localhost; };",
        "    allow-transfer { none; };",
        "};",
    ]
    return [*comment("//", header("bind", options, policy, notes)), *body]


RENDERERS: dict[str, Callable[[ExportPolicy, ExportOptions], list[str]]] = {
    "domains": _domains,
    "hosts": _hosts,
    "adblock": _adblock,
    "dnsmasq": _dnsmasq,
    "unbound": _unbound,
    "rpz": _rpz,
    "bind": _bind,
}
