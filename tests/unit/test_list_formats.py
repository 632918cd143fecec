"""Every list format admins already have: what each form blocks, what it lets through,
what is skipped and why, and how the guards count it.

Decisions are checked through the compiled policy (``build_blocklist``), the way the
server answers, not through the parser's internals.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from resolver.config import BlockingConfig, ConfigError, LocalListConfig, config_from_mapping
from resolver.config.blocking import ListFormat
from resolver.dns.names import normalise_name
from resolver.policy.blocklist import Blocklist, build_blocklist
from resolver.policy.export import ExportOptions, render
from resolver.policy.listformats import LIST_FORMATS, NOT_FOR_DNS, SKIP_CLASSES, UNREADABLE
from resolver.policy.lists import ListError, ListText, parse_list_text
from resolver.policy.loading import load_local_list
from resolver.policy.rules import PolicyEntry, Rule
from tests.unit.listing import parse_list

BLOCK = Rule("block", "catalog", "svc", "chat", "a service")
ALLOW = Rule("allow", "config", "allow", "allowlist", "an exception")


def policy(text: str, list_format: str = "auto", *, compact: bool = True) -> Blocklist:
    listed = ListText("list:test.txt", text, list_format=list_format)
    part = parse_list_text(listed, compact=compact)
    return build_blocklist(BlockingConfig(canaries=()), None, (part,))


def blocked(text: str, list_format: str = "auto") -> set[str]:
    """Which of the names a test asks about the list blocks."""
    compiled = policy(text, list_format)
    return {name for name in PROBES if compiled.decide(name).blocked}


PROBES = [
    f"{prefix}{base}"
    for base in ("a.test", "b.test", "c.test", "d.test", "e.test", "f.test", "g.test")
    for prefix in ("", "x.", "y.x.")
]


def family(*bases: str, apex: bool = True) -> set[str]:
    """The probes at (when ``apex``) or below each base name."""
    return {
        probe
        for base in bases
        for probe in PROBES
        if probe.endswith(f".{base}") or (apex and probe == base)
    }


# --- the format key -------------------------------------------------------------------


def test_the_format_key_takes_each_format_and_nothing_else():
    documented = ["auto", "plain", "wildcard", "hosts", "adblock", "dnsmasq", "unbound", "rpz"]
    assert list(LIST_FORMATS) == [*documented, "surge"]
    for name in LIST_FORMATS:
        config = config_from_mapping(
            {
                "blocking": {
                    "lists": [{"path": "a.txt", "format": name}],
                    "remote_lists": [{"url": "https://lists.test/a", "format": name}],
                }
            }
        )
        assert config.blocking.lists[0].format == name
        assert config.blocking.remote_lists[0].format == name
    assert LocalListConfig(path="a.txt").format == "auto"
    with pytest.raises(ConfigError, match=r"blocking.lists\[0\].format: expected one of"):
        config_from_mapping({"blocking": {"lists": [{"path": "a.txt", "format": "pihole"}]}})


def test_skip_classes_are_a_fixed_set_split_by_whether_they_count_as_unreadable():
    assert set(NOT_FOR_DNS) | set(UNREADABLE) == set(SKIP_CLASSES)
    assert not set(NOT_FOR_DNS) & set(UNREADABLE)


# --- wildcard lists: "*.name" -----------------------------------------------------------

WILDCARD_LIST = "# Title: a wildcard list\n*.a.test\n*.b.test\n*.c.test\n"


def test_a_wildcard_list_blocks_the_apex_too_as_blocky_reads_it():
    expected = family("a.test", "b.test", "c.test")
    assert blocked(WILDCARD_LIST) == expected  # detected from the file
    assert blocked(WILDCARD_LIST, "wildcard") == expected
    assert parse_list(WILDCARD_LIST).report.read_as == "auto (wildcard)"


def test_in_a_plain_list_star_dot_is_the_subdomains_only():
    assert blocked(WILDCARD_LIST, "plain") == family("a.test", "b.test", "c.test", apex=False)
    # Mostly names with a few "*.name" (aiwall's own domains export): subdomains only.
    mixed = "a.test\nb.test\nc.test\n*.d.test\n"
    assert blocked(mixed) == family("a.test", "b.test", "c.test") | family("d.test", apex=False)


def test_a_wildcard_over_a_top_level_domain_is_refused():
    parsed = parse_list("*.test\n*.a.test\n", "wildcard")
    assert parsed.skipped("invalid_name") == [1]


# --- Surge and Clash --------------------------------------------------------------------


def test_surge_dot_lines_cover_the_name_and_its_subdomains():
    text = "# Surge DOMAIN-SET\n.a.test\n.b.test\nc.test\n"
    expected = family("a.test", "b.test", "c.test")
    assert blocked(text) == expected
    assert blocked(text, "surge") == expected
    # In AdGuard syntax the same ".name" is the subdomains only.
    assert blocked(".a.test\n||b.test^\n||c.test^\n") == family("a.test", apex=False) | family(
        "b.test", "c.test"
    )
    assert blocked(".a.test\n", "adblock") == family("a.test", apex=False)


def test_surge_and_clash_rule_sets():
    text = (
        "DOMAIN-SUFFIX,a.test\nDOMAIN,b.test,REJECT\nDOMAIN-KEYWORD,openai\n"
        "DOMAIN-REGEX,^c\\.test$\nIP-CIDR,192.0.2.0/24,no-resolve\n+.d.test\n"
    )
    assert blocked(text, "surge") == family("a.test", "b.test", "d.test")
    assert blocked(text) == family("a.test", "b.test", "d.test")
    parsed = parse_list(text, "surge")
    assert (parsed.skipped("pattern"), parsed.skipped("regex")) == ([3], [4])
    assert parsed.skipped("unsupported") == [5]


# --- hosts ------------------------------------------------------------------------------


def test_hosts_comment_glued_to_a_name_and_a_bad_name_beside_good_ones():
    text = (
        "0.0.0.0 a.test#tracker\n"
        "0.0.0.0 b.test bad..test c.test # two good, one bad\n"
        "::\td.test\n"
        "127.0.0.1 localhost\n"
    )
    for list_format in ("auto", "hosts", "adblock"):
        assert blocked(text, list_format) == family("a.test", "b.test", "c.test", "d.test")
    parsed = parse_list(text, "hosts")
    assert parsed.skipped("invalid_name") == [2]
    # The line still gave names: used, and not held against max_invalid.
    assert (parsed.report.used, parsed.report.unreadable) == (3, 0)


# --- AdGuard ------------------------------------------------------------------------------


def test_adguard_forms_dns_blockers_honour():
    text = (
        "[Adblock Plus 2.0]\n"
        "||a.test\n"  # no "^": the name and its subdomains
        ".b.test^\n"  # subdomains only
        "|c.test^\n"  # the exact name (aiwall also blocks its subdomains)
        "||*.d.test^\n"  # subdomains only
        "||e.test^$important\n"
        "f.test^\n"
    )
    expected = family("a.test", "c.test", "e.test", "f.test") | family(
        "b.test", "d.test", apex=False
    )
    assert blocked(text) == expected
    assert blocked(text, "adblock") == expected


def test_rules_dns_cannot_apply_are_skipped_and_counted_by_class():
    text = (
        "! comment\n"
        "||a.test^\n"
        "/ads[0-9]+\\.test/\n"
        "/^tracker\\./$important\n"
        "a.test##.banner\n"
        "b.test#@#.banner\n"
        "c.test#$#body { padding: 0; }\n"
        "||a.test/ads/*\n"
        "|https://c.test/x\n"
        "||ad*.test^\n"
        "||b.test^$third-party\n"
        "||c.test^$dnstype=AAAA\n"
        "||d.test^$client=192.0.2.1\n"
    )
    parsed = parse_list(text)
    assert parsed.skipped("regex") == [3, 4]
    assert parsed.skipped("cosmetic") == [5, 6, 7]
    assert parsed.skipped("pattern") == [8, 9, 10]
    assert parsed.skipped("modifier") == [11, 12, 13]
    assert parsed.report.unreadable == 0
    assert "regex 2 (lines 3, 4), cosmetic 3 (lines 5, 6, 7)" in parsed.report.summary()
    # The rule with a modifier is not read without it: b.test stays open.
    assert blocked(text) == family("a.test")


def test_badfilter_cancels_exactly_the_rule_it_names():
    text = (
        "||a.test^\n"
        "||a.test^$badfilter\n"  # cancels the line above
        "||b.test^$important\n"
        "||b.test^$badfilter\n"  # not the same rule: $important differs
        "||c.test^\n"
        "0.0.0.0 c.test\n"  # a hosts line is not an AdGuard rule
        "||c.test^$badfilter\n"
        "@@||x.e.test^\n"
        "||e.test^\n"
        "@@||x.e.test^$badfilter\n"  # cancels the exception
        "||f.test^$important,badfilter\n"  # cancels a rule that comes later
        "||f.test^$important\n"
    )
    for list_format in ("auto", "adblock"):
        assert blocked(text, list_format) == family("b.test", "c.test", "e.test")
    assert parse_list(text).report.unreadable == 0


def test_important_beats_exceptions_of_its_list_and_important_exceptions_beat_all():
    text = (
        "||a.test^$important\n"
        "@@||x.a.test^\n"  # beaten: the block above is $important
        "@@||b.test^$important\n"
        "||x.b.test^\n"  # beaten by the important exception
        "||y.x.b.test^$important\n"  # so is an important block
        "||c.test^\n"
        "@@||x.c.test^\n"  # a plain exception still carves out its own names
    )
    assert blocked(text) == family("a.test", "c.test") - family("x.c.test")
    # Read without the second pass (one line per rule, no $important): the same exceptions.
    assert blocked("||c.test^\n@@||x.c.test^\n") == family("c.test") - family("x.c.test")


def test_taken_back_entries_leave_an_uncompact_list_too():
    text = "||a.test^\n||a.test^$badfilter\n||b.test^\n"
    compiled = policy(text, compact=False)
    assert {n for n in PROBES if compiled.decide(n).blocked} == family("b.test")


def test_an_exception_stays_scoped_to_its_own_list():
    exceptions = parse_list_text(ListText("list:ads.txt", "@@||a.test^$important\n"))
    blocks = parse_list_text(ListText("list:ai.txt", "a.test\n"))
    compiled = build_blocklist(BlockingConfig(canaries=()), None, (exceptions, blocks))
    assert compiled.decide("x.a.test").blocked


# --- dnsmasq ----------------------------------------------------------------------------

DNSMASQ = """\
# dnsmasq blocklist
address=/a.test/
address=/b.test/#
address=/c.test/0.0.0.0
server=/d.test/
local=/e.test/
server=/x.a.test/#
server=/f.test/192.0.2.53
address=/*.g.test/
address=/#/
cache-size=1000
"""


def test_dnsmasq_statements():
    expected = family("a.test", "b.test", "c.test", "d.test", "e.test") | family(
        "g.test", apex=False
    )
    expected -= family("x.a.test")  # server=/name/#: forwarded as usual
    assert blocked(DNSMASQ) == expected
    assert blocked(DNSMASQ, "dnsmasq") == expected
    parsed = parse_list(DNSMASQ, "dnsmasq")
    assert parsed.skipped("forward") == [8]  # routing to another server is not a block
    assert parsed.skipped("pattern") == [10]  # every name
    assert parsed.skipped("unsupported") == [11]
    assert parsed.report.unreadable == 0


def test_dnsmasq_several_domains_on_one_line():
    assert blocked("address=/a.test/b.test/\nlocal=/c.test/\n") == family(
        "a.test", "b.test", "c.test"
    )


# --- Unbound ------------------------------------------------------------------------------

UNBOUND = """\
server:
    local-zone: "a.test." always_nxdomain
    local-zone: "b.test" static
    local-zone: "c.test." redirect
    local-data: "c.test. 300 IN A 0.0.0.0"
    local-zone: "x.a.test." always_transparent
    local-data: "d.test. A 127.0.0.1"
    local-data: "e.test. TXT \\"v=spf1\\""
    local-zone: "f.test." nodefault
    verbosity: 1
"""


def test_unbound_local_zones_and_local_data():
    expected = family("a.test", "b.test", "c.test", "d.test") - family("x.a.test")
    assert blocked(UNBOUND) == expected
    assert blocked(UNBOUND, "unbound") == expected
    parsed = parse_list(UNBOUND, "unbound")
    assert parsed.skipped("unsupported") == [9, 10]
    assert parsed.report.unreadable == 0


# --- RPZ ------------------------------------------------------------------------------------

RPZ = """\
; a response policy zone
$TTL 300
$ORIGIN rpz.example.
@ IN SOA localhost. hostmaster.localhost. (
        2026112201 ; serial
        3600 600 86400 300 )
@ IN NS localhost.
a.test CNAME .
*.a.test CNAME .
*.b.test 300 IN CNAME *.
c.test.rpz.example. CNAME rpz-drop.
x.a.test CNAME rpz-passthru.
*.x.a.test CNAME rpz-passthru.
d.test A 0.0.0.0
       AAAA ::
32.1.2.0.192.rpz-ip CNAME .
e.test CNAME rpz-tcp-only.
"""


def test_rpz_zones():
    expected = family("a.test", "c.test", "d.test") | family("b.test", apex=False)
    expected -= family("x.a.test")
    assert blocked(RPZ) == expected
    assert blocked(RPZ, "rpz") == expected
    parsed = parse_list(RPZ)
    assert parsed.report.read_as == "auto (rpz)"
    assert parsed.skipped("unsupported") == [16, 17]
    assert parsed.report.unreadable == 0


def test_rpz_absolute_names_take_the_zone_from_the_soa():
    text = "rpz.local. SOA ns. admin. 1 2 3 4 5\na.test.rpz.local. CNAME .\n"
    assert blocked(text) == family("a.test")


# --- our own exports read back --------------------------------------------------------------

ENTRIES = [
    PolicyEntry("a.test", False, BLOCK),
    PolicyEntry("x.a.test", False, ALLOW),
    PolicyEntry("y.x.a.test", False, BLOCK),
    PolicyEntry("b.test", True, BLOCK),
    PolicyEntry("c.test", False, BLOCK),
]
REFERENCE = (
    family("a.test", "c.test") - family("x.a.test") | {"y.x.a.test"} | family("b.test", apex=False)
)


@pytest.mark.parametrize(
    ("export", "list_format"),
    [("domains", "plain"), ("adblock", "adblock"), ("dnsmasq", "dnsmasq"), ("rpz", "rpz")],
)
@pytest.mark.parametrize("response", ["nxdomain", "sinkhole"])
def test_an_aiwall_export_reads_back_to_the_same_decisions(export, list_format, response):
    text = render(ENTRIES, export, ExportOptions(response=response))
    expected = REFERENCE if export != "domains" else REFERENCE | family("x.a.test")
    assert blocked(text, list_format) == expected
    assert blocked(text) == expected  # and detected as such


def test_the_unbound_export_reads_back_but_for_the_wildcard_it_cannot_carry():
    text = render(ENTRIES, "unbound", ExportOptions(response="sinkhole"))
    assert blocked(text, "unbound") == REFERENCE - family("b.test")
    assert blocked(text) == REFERENCE - family("b.test")


# --- a named format reads only its own lines -----------------------------------------------


def test_a_named_format_skips_other_formats_lines_as_unreadable():
    text = "0.0.0.0 a.test\n||b.test^\nc.test\naddress=/d.test/\n"
    parsed = parse_list(text, "hosts")
    assert parsed.skipped("other_format") == [2, 3, 4]
    assert parsed.report.unreadable == 3
    assert blocked(text, "hosts") == family("a.test")
    assert parse_list(text, "plain").skipped("other_format") == [1, 2, 4]


# --- internationalised names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "looked_up"),
    [
        ("faß.de", "xn--fa-hia.de"),  # IDNA 2008: ß is a letter (IDNA 2003 made it "ss")
        ("ς.gr", "xn--3xa.gr"),  # final sigma kept, not mapped to the medial one
        ("BÜCHER.example", "xn--bcher-kva.example"),  # case folded
        ("bücher。example", "xn--bcher-kva.example"),  # ideographic full stop
        ("☃.net", "xn--n3h.net"),  # UTS 46 allows what browsers look up
        ("ΑΣ.gr", "xn--mxa0b.gr"),  # capital sigma mapped as UTS 46 does, not as str.lower
        ("_dmarc.bücher.example", "_dmarc.xn--bcher-kva.example"),
    ],
)
def test_names_follow_uts46_as_browsers_do(written, looked_up):
    assert normalise_name(written) == looked_up
    for line in (written, f"0.0.0.0 {written}", f"||{written}^"):
        assert [e.name for e in parse_list(line).entries] == [looked_up]


@pytest.mark.parametrize("written", ["a\u200db.example", "\u0301a.example", "b\u00fc!.example"])
def test_names_browsers_refuse_are_skipped(written):
    assert normalise_name(written) is None
    assert parse_list(f"0.0.0.0 {written} ok.example").skipped("invalid_name") == [1]


# --- the guards ---------------------------------------------------------------------------------


def load(path: Path, state: Path, list_format: str = "auto", previous: bool = True):
    rejected: list[tuple[str, str]] = []
    local = LocalListConfig(path=str(path), format=typing.cast(ListFormat, list_format))
    part = load_local_list(
        local,
        path,
        0,
        state,
        compact=True,
        rejected=lambda source, reason: rejected.append((source, reason)),
        warnings=[],
        remember=True,
        fallback=previous,
    )
    return part, rejected


def test_an_adguard_list_full_of_browser_rules_is_not_judged_unreadable(tmp_path):
    listed = tmp_path / "filter.txt"
    cosmetic = "".join(f"site{i}.test##.ad-{i}\n/ads{i}/\n||x{i}.test^$script\n" for i in range(50))
    listed.write_text("||a.test^\n||b.test^\n" + cosmetic)
    part, rejected = load(listed, tmp_path / "state")
    assert rejected == []
    assert part.invalid_share == 0
    assert part.skipped["cosmetic"] == 50
    assert part.skipped["modifier"] == 50


def test_junk_is_still_junk_whatever_the_new_classes(tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text("".join(f"n{i}.test\n" for i in range(100)))
    state = tmp_path / "state"
    load(listed, state)
    # An error page, some of whose lines contain "/", "$" and "#": none is a rule.
    listed.write_text(
        "<html><head><title>503</title></head>\n<body>\n"
        "<p>Price: $10 # now</p>\n</body>\n</html>\n/var/log is full\nn1.test\n"
    )
    part, rejected = load(listed, state)
    assert rejected == [("list:list.txt", "parse")]
    assert part.entries == 100  # the last good copy


def test_a_list_that_changed_format_under_a_named_format_keeps_its_last_good_copy(tmp_path):
    listed = tmp_path / "hosts.txt"
    listed.write_text("".join(f"0.0.0.0 n{i}.test\n" for i in range(100)))
    state = tmp_path / "state"
    load(listed, state, "hosts")
    listed.write_text("".join(f"||n{i}.test^\n" for i in range(100)))
    part, rejected = load(listed, state, "hosts")
    assert rejected == [("list:hosts.txt", "parse")]
    assert part.entries == 100
    with pytest.raises(ListError, match=r"other_format 100 \(lines 1, 2, 3, 4, 5, ...\)"):
        load(listed, state, "hosts", previous=False)


def test_a_list_nothing_can_be_read_from_is_refused_with_what_was_found(tmp_path):
    with pytest.raises(ListError, match=r"no line is a list entry \(read as auto"):
        parse_list_text(ListText("list:x.txt", "<html>\n<p>gone</p>\n"))
    with pytest.raises(ListError, match="cosmetic 1"):
        parse_list_text(ListText("list:x.txt", "a.test##.ad\n"))
