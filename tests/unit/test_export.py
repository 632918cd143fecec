"""Exports of the policy: every format, every response mode, read back where it is simple.

The adblock and RPZ texts are also read back with the precedence rules of AdGuard Home
and of RPZ, and compared with aiwall's own decision for many names: the nesting of
blocks and exceptions is where a plain translation goes wrong.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.dns import wire
from resolver.policy.blocklist import Blocklist
from resolver.policy.export import FORMATS, RESPONSES, ExportOptions, render
from resolver.policy.rules import PolicyEntry, Rule
from tests.unit.listing import parse_list

BLOCK = Rule(
    action="block", source="catalog", service="deepseek", category="chat", description="DeepSeek"
)
ALLOW = Rule(action="allow", source="config", service="allow", category="allow", description="a")
CANARY = Rule(
    action="canary", source="config", service="canary", category="bypass", description="c"
)


def entry(name: str, rule: Rule = BLOCK, below_only: bool = False) -> PolicyEntry:
    return PolicyEntry(name, below_only, rule)


def ordered(entries: list[PolicyEntry]) -> list[PolicyEntry]:
    return sorted(entries, key=lambda e: (e.name, e.below_only))


# deepseek.com blocked, platform.deepseek.com carved out of it, api.platform.deepseek.com
# blocked again inside the exception, subdomains of wild.example.net only, one canary.
ENTRIES = ordered(
    [
        entry("deepseek.com"),
        entry("platform.deepseek.com", ALLOW),
        entry("api.platform.deepseek.com"),
        entry("wild.example.net", below_only=True),
        entry("use-application-dns.net", CANARY),
    ]
)
BLOCKED = {
    ("deepseek.com", False),
    ("api.platform.deepseek.com", False),
    ("wild.example.net", True),
    ("use-application-dns.net", False),
}
SINKHOLE = ExportOptions(
    response="sinkhole", sinkhole_ipv4="192.0.2.53", sinkhole_ipv6="2001:db8::53"
)


COMMENT = {"adblock": "!", "rpz": ";", "bind": "//"} | {
    fmt: "#" for fmt in ("domains", "hosts", "dnsmasq", "unbound")
}


def lines(text: str, comment: str = "#") -> list[str]:
    """The non-comment, non-blank lines."""
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(comment)]


def comments(text: str, comment: str = "#") -> str:
    return "\n".join(ln for ln in text.splitlines() if ln.lstrip().startswith(comment))


def aiwall(entries: list[PolicyEntry]) -> Blocklist:
    """The server's own matcher loaded with the same entries: the reference decision."""
    blocklist = Blocklist()
    for item in entries:
        blocklist.names.add(wire.text_to_name(item.name), item.rule, below_only=item.below_only)
    return blocklist


def probes(entries: list[PolicyEntry]) -> set[str]:
    names = {"unrelated.example.org"}
    for item in entries:
        names |= {item.name, f"x.{item.name}", f"y.x.{item.name}"}
    return names


# --- all formats -----------------------------------------------------------------------


def test_formats_are_the_documented_ones():
    assert FORMATS == ("domains", "hosts", "adblock", "dnsmasq", "unbound", "rpz", "bind")


@pytest.mark.parametrize("response", RESPONSES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_output_is_deterministic_ends_with_a_newline_and_has_the_generated_line(fmt, response):
    options = ExportOptions(response=response, generated="aiwall 0.1.0, 2026-11-22, 5 entries")
    text = render(ENTRIES, fmt, options)
    assert text == render(list(ENTRIES), fmt, options)
    assert text.endswith("\n")
    assert not text.endswith("\n\n")
    prefix = COMMENT[fmt]
    assert f"{prefix} aiwall 0.1.0, 2026-11-22, 5 entries" in text.splitlines()[:3]


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_policy_still_renders(fmt):
    assert render([], fmt, ExportOptions()).endswith("\n")


def test_a_generated_line_cannot_break_out_of_its_comment():
    text = render(ENTRIES, "dnsmasq", ExportOptions(generated="x\naddress=/#/1.2.3.4"))
    assert "address=/#/" not in "\n".join(lines(text))


@pytest.mark.parametrize(
    ("fmt", "options", "message"),
    [
        ("bind9", ExportOptions(), "unknown export format"),
        ("rpz", ExportOptions(response="blackhole"), "unknown response"),
        ("hosts", ExportOptions(sinkhole_ipv4="::"), "sinkhole address"),
        ("hosts", ExportOptions(sinkhole_ipv6="0.0.0.0"), "sinkhole address"),
        ("dnsmasq", ExportOptions(sinkhole_ipv6="fe80::1%eth0"), "sinkhole address"),
        ("rpz", ExportOptions(ttl=-1), "ttl"),
        ("rpz", ExportOptions(serial=2**32), "serial"),
        ("bind", ExportOptions(rpz_zone="rpz aiwall"), "rpz_zone"),
        ("bind", ExportOptions(rpz_file='/etc/bind/x"; };'), "rpz_file"),
    ],
)
def test_bad_formats_and_options_are_refused(fmt, options, message):
    with pytest.raises(ValueError, match=message):
        render(ENTRIES, fmt, options)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_name_a_format_cannot_carry_is_left_out_and_counted(fmt):
    bad = entry('evil.com" always_transparent\nlocal-zone: "x')
    text = render(ordered([*ENTRIES, bad]), fmt, ExportOptions())
    assert "cannot carry, left out (1)" in text
    assert '"x' not in text
    assert "evil.com??always_transparent?local-zone???x" in text  # spelled harmlessly
    # Every line is still a comment or a line the format produced for the good names.
    assert "evil" not in "\n".join(lines(text, COMMENT[fmt]))


@pytest.mark.parametrize("fmt", ["rpz", "bind"])
def test_rpz_trigger_suffixes_are_not_written_as_query_names(fmt):
    text = render([entry("10.0.0.127.rpz-ip")], fmt, ExportOptions())
    assert "cannot carry, left out (1)" in text
    assert "10.0.0.127.rpz-ip" not in "\n".join(lines(text, COMMENT[fmt]))
    assert "left out" not in render([entry("10.0.0.127.rpz-ip")], "domains", ExportOptions())


@pytest.mark.parametrize("fmt", ["domains", "adblock", "dnsmasq", "rpz"])
def test_a_wildcard_beside_the_same_exact_name_is_dropped(fmt):
    # aiwall decides every name below example.com by the exact entry; the wildcard is dead.
    entries = [entry("example.com", ALLOW), entry("example.com", BLOCK, below_only=True)]
    text = render(entries, fmt, ExportOptions())
    assert "*.example.com" not in text.replace("*.example.com CNAME rpz-passthru.", "")


# --- domains ---------------------------------------------------------------------------


def test_domains_lists_every_blocked_name_and_reads_back_as_an_aiwall_list():
    text = render(ENTRIES, "domains", ExportOptions())
    parsed = parse_list(text)
    assert parsed.rejected == []
    assert {(e.name, e.below_only) for e in parsed.entries} == BLOCKED
    assert not any(e.allow for e in parsed.entries)
    assert lines(text) == [
        "api.platform.deepseek.com",
        "deepseek.com",
        "use-application-dns.net",
        "*.wild.example.net",
    ]
    # The exception it cannot carry is named in the header, for the administrator.
    assert "#   allow platform.deepseek.com" in text


# --- hosts -----------------------------------------------------------------------------


def test_hosts_lists_exact_names_with_both_addresses_and_says_subdomains_are_not_covered():
    text = render(ENTRIES, "hosts", SINKHOLE)
    parsed = parse_list(text)
    assert parsed.rejected == []
    names = {"deepseek.com", "api.platform.deepseek.com", "use-application-dns.net"}
    assert {e.name for e in parsed.entries} == names
    for name in names:
        assert f"192.0.2.53 {name}" in lines(text)
        assert f"2001:db8::53 {name}" in lines(text)
    assert len(lines(text)) == 2 * len(names)
    assert "platform.deepseek.com" not in {e.name for e in parsed.entries}
    assert "subdomains of these names are NOT blocked" in comments(text)
    assert "cannot express exactly (1)" in text
    assert "#   *.wild.example.net" in text


def test_hosts_defaults_to_the_null_addresses():
    assert lines(render([entry("deepseek.com")], "hosts", ExportOptions())) == [
        "0.0.0.0 deepseek.com",
        ":: deepseek.com",
    ]


# --- adblock ---------------------------------------------------------------------------

_ADBLOCK_RULE = re.compile(r"(@@)?\|\|(\*\.)?([a-z0-9._-]+)\^(\$important)?")


def adguard_blocks(text: str, name: str) -> bool:
    """AdGuard Home's choice among the matching rules: $important, then exceptions."""
    best: tuple[int, bool] | None = None
    for line in lines(text, "!"):
        match = _ADBLOCK_RULE.fullmatch(line)
        assert match, line
        exception, wildcard, target, important = match.groups()
        below = name.endswith("." + target)
        if not (below if wildcard else below or name == target):
            continue
        rank = (2 if important else 0) + (1 if exception else 0)
        if best is None or rank > best[0]:
            best = (rank, not exception)
    return best is not None and best[1]


def test_adblock_rules():
    text = render(ENTRIES, "adblock", ExportOptions())
    assert lines(text, "!") == [
        "||api.platform.deepseek.com^$important",
        "||deepseek.com^",
        "@@||platform.deepseek.com^",
        "||use-application-dns.net^",
        "||*.wild.example.net^",
    ]
    assert text.startswith("! Title: ")


def test_adblock_reads_back_to_the_same_decisions_as_aiwall():
    text = render(ENTRIES, "adblock", ExportOptions())
    reference = aiwall(ENTRIES)
    for name in probes(ENTRIES):
        assert adguard_blocks(text, name) == reference.decide(name).blocked, name


def test_adblock_counts_nesting_deeper_than_its_four_priorities():
    names = ["e.d.c.b.a", "d.c.b.a", "c.b.a", "b.a", "a"]
    rules = [BLOCK, ALLOW, BLOCK, ALLOW, BLOCK]
    entries = ordered([entry(n, r) for n, r in zip(names, rules[::-1], strict=True)])
    text = render(entries, "adblock", ExportOptions())
    assert "cannot express exactly (1)" in text
    assert "!   e.d.c.b.a" in text
    assert "||e.d.c.b.a^$important" in lines(text, "!")


# --- dnsmasq ---------------------------------------------------------------------------


def test_dnsmasq_nxdomain():
    text = render(ENTRIES, "dnsmasq", ExportOptions())
    assert lines(text) == [
        "address=/api.platform.deepseek.com/",
        "address=/deepseek.com/",
        "server=/platform.deepseek.com/#",
        "address=/use-application-dns.net/",
        "address=/*.wild.example.net/",
    ]


def test_dnsmasq_sinkhole_keeps_canaries_nxdomain_and_other_types_local():
    body = lines(render(ENTRIES, "dnsmasq", SINKHOLE))
    for domain in ("deepseek.com", "api.platform.deepseek.com", "*.wild.example.net"):
        assert f"address=/{domain}/192.0.2.53" in body
        assert f"address=/{domain}/2001:db8::53" in body
        assert f"local=/{domain}/" in body
    assert "address=/use-application-dns.net/" in body
    assert not [ln for ln in body if "use-application-dns.net/1" in ln or "local=/use" in ln]
    assert "server=/platform.deepseek.com/#" in body


@pytest.mark.parametrize("response", ["nodata", "refused"])
def test_dnsmasq_falls_back_to_nxdomain_where_it_has_no_such_answer(response):
    text = render(ENTRIES, "dnsmasq", ExportOptions(response=response))
    assert "address=/deepseek.com/" in lines(text)
    assert f"cannot answer {response.upper()}" in comments(text)


# --- unbound ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "zone_type"),
    [("nxdomain", "always_nxdomain"), ("nodata", "always_nodata"), ("refused", "always_refuse")],
)
def test_unbound_local_zones(response, zone_type):
    body = lines(render(ENTRIES, "unbound", ExportOptions(response=response)))
    assert body == [
        "server:",
        f'    local-zone: "api.platform.deepseek.com." {zone_type}',
        f'    local-zone: "deepseek.com." {zone_type}',
        '    local-zone: "platform.deepseek.com." always_transparent',
        '    local-zone: "use-application-dns.net." always_nxdomain',
    ]


def test_unbound_sinkhole_redirects_with_the_block_ttl_but_not_the_canaries():
    options = ExportOptions(response="sinkhole", sinkhole_ipv4="192.0.2.53", ttl=60)
    body = lines(render(ENTRIES, "unbound", options))
    assert '    local-zone: "deepseek.com." redirect' in body
    assert '    local-data: "deepseek.com. 60 IN A 192.0.2.53"' in body
    assert '    local-data: "deepseek.com. 60 IN AAAA ::"' in body
    assert '    local-zone: "use-application-dns.net." always_nxdomain' in body
    assert not [ln for ln in body if "local-data" in ln and "use-application" in ln]


def test_unbound_leaves_out_a_wildcard_whose_apex_is_answered_differently():
    text = render(ENTRIES, "unbound", ExportOptions())
    assert "wild.example.net." not in text
    assert "*.wild.example.net: subdomains only" in text
    assert "cannot express exactly (1)" in text


@pytest.mark.parametrize(
    ("parent", "wildcard", "zone"),
    [
        (BLOCK, BLOCK, '"sub.example.com." always_nxdomain'),
        (ALLOW, ALLOW, '"sub.example.com." always_transparent'),
    ],
)
def test_unbound_writes_a_wildcard_as_a_zone_when_its_apex_is_answered_the_same(
    parent, wildcard, zone
):
    entries = [entry("example.com", parent), entry("sub.example.com", wildcard, below_only=True)]
    text = render(entries, "unbound", ExportOptions())
    assert f"    local-zone: {zone}" in lines(text)
    assert "cannot express" not in text


# --- rpz -------------------------------------------------------------------------------


def rpz_records(text: str) -> list[str]:
    return [ln for ln in lines(text, ";") if not ln.startswith(("$", "@"))]


def test_rpz_nxdomain_zone():
    text = render(ENTRIES, "rpz", ExportOptions(ttl=120, serial=7))
    body = lines(text, ";")
    assert body[:3] == [
        "$TTL 120",
        "@ SOA localhost. hostmaster.localhost. 7 3600 600 86400 120",
        "@ NS localhost.",
    ]
    assert rpz_records(text) == [
        "api.platform.deepseek.com CNAME .",
        "*.api.platform.deepseek.com CNAME .",
        "deepseek.com CNAME .",
        "*.deepseek.com CNAME .",
        "platform.deepseek.com CNAME rpz-passthru.",
        "*.platform.deepseek.com CNAME rpz-passthru.",
        "use-application-dns.net CNAME .",
        "*.use-application-dns.net CNAME .",
        "*.wild.example.net CNAME .",
    ]


def test_rpz_sinkhole_keeps_canaries_nxdomain():
    records = rpz_records(render(ENTRIES, "rpz", SINKHOLE))
    for owner in ("deepseek.com", "*.deepseek.com", "*.wild.example.net"):
        assert f"{owner} A 192.0.2.53" in records
        assert f"{owner} AAAA 2001:db8::53" in records
    assert "use-application-dns.net CNAME ." in records
    assert "*.use-application-dns.net CNAME ." in records
    assert "platform.deepseek.com CNAME rpz-passthru." in records


@pytest.mark.parametrize(("response", "target"), [("nodata", "*."), ("refused", ".")])
def test_rpz_nodata_and_refused(response, target):
    text = render(ENTRIES, "rpz", ExportOptions(response=response))
    assert f"deepseek.com CNAME {target}" in rpz_records(text)
    assert "use-application-dns.net CNAME ." in rpz_records(text)
    assert ("RPZ has no REFUSED action" in text) == (response == "refused")


def rpz_blocks(text: str, name: str) -> bool:
    """RPZ precedence: an exact owner first, then the longest matching wildcard."""
    policy: dict[str, bool] = {}
    for record in rpz_records(text):
        owner, rtype, target = record.split(" ", 2)
        policy[owner] = not (rtype == "CNAME" and target == "rpz-passthru.")
    if name in policy:
        return policy[name]
    labels = name.split(".")
    for start in range(1, len(labels)):
        wildcard = "*." + ".".join(labels[start:])
        if wildcard in policy:
            return policy[wildcard]
    return False


def test_rpz_reads_back_to_the_same_decisions_as_aiwall():
    text = render(ENTRIES, "rpz", ExportOptions())
    reference = aiwall(ENTRIES)
    for name in probes(ENTRIES):
        assert rpz_blocks(text, name) == reference.decide(name).blocked, name


# --- bind ------------------------------------------------------------------------------


def test_bind_snippet_declares_the_policy_zone_and_tells_where_response_policy_goes():
    options = ExportOptions(rpz_zone="rpz.corp.example.", rpz_file="/var/lib/bind/db.rpz")
    text = render(ENTRIES, "bind", options)
    assert lines(text, "//") == [
        'zone "rpz.corp.example" {',
        "    type master;",
        '    file "/var/lib/bind/db.rpz";',
        "    allow-query { localhost; };",
        "    allow-transfer { none; };",
        "};",
    ]
    assert 'response-policy { zone "rpz.corp.example"; }' in comments(text, "//")


# --- nesting, at random ----------------------------------------------------------------

_NAMES = st.lists(st.sampled_from("abc"), min_size=0, max_size=3).map(
    lambda labels: ".".join([*labels, "t"])
)
_ENTRIES = st.dictionaries(
    st.tuples(_NAMES, st.booleans()),
    st.sampled_from([BLOCK, ALLOW, CANARY]),
    max_size=8,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ENTRIES)
def test_adblock_and_rpz_decide_like_aiwall_for_any_nesting(table):
    entries = ordered(
        [
            entry(name, rule, below)
            for (name, below), rule in table.items()
            if name != "t" or not below
        ]
    )
    reference = aiwall(entries)
    names = probes(entries) | {"t", "a.t", "z.a.t"}
    adblock = render(entries, "adblock", ExportOptions())
    rpz = render(entries, "rpz", ExportOptions())
    for name in names:
        expected = reference.decide(name).blocked
        assert rpz_blocks(rpz, name) == expected, (name, rpz)
        if "cannot express" not in adblock:
            assert adguard_blocks(adblock, name) == expected, (name, adblock)
