"""List file formats: plain names, hosts files, AdBlock rules, wildcards, comments."""

from __future__ import annotations

import pytest

from resolver.dns.names import normalise_name
from resolver.policy.listfile import Entry
from tests.unit.listing import parse_list


def entries(text: str) -> list[Entry]:
    parsed = parse_list(text)
    assert parsed.rejected == []
    return parsed.entries


def test_plain_names():
    assert entries("deepseek.com\nchat.openai.com\n") == [
        Entry("deepseek.com"),
        Entry("chat.openai.com"),
    ]


def test_uppercase_and_trailing_dot_and_whitespace():
    assert entries("  DeepSeek.COM.  \n\tClaude.AI\t") == [
        Entry("deepseek.com"),
        Entry("claude.ai"),
    ]


def test_single_label_name():
    assert entries("localdomain") == [Entry("localdomain")]


def test_idna_names_become_punycode():
    assert entries("bücher.example\nBÜCHER.example.") == [
        Entry("xn--bcher-kva.example"),
        Entry("xn--bcher-kva.example"),
    ]


def test_hosts_lines_with_several_names():
    text = (
        "0.0.0.0 deepseek.com chat.deepseek.com\n127.0.0.1\tapi.deepseek.com\n:: gemini.google.com"
    )
    assert entries(text) == [
        Entry("deepseek.com"),
        Entry("chat.deepseek.com"),
        Entry("api.deepseek.com"),
        Entry("gemini.google.com"),
    ]


def test_hosts_localhost_noise_is_skipped():
    text = """\
127.0.0.1 localhost
127.0.0.1 localhost.localdomain Localhost
::1 localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
255.255.255.255 broadcasthost
0.0.0.0 0.0.0.0
0.0.0.0 claude.ai localhost
"""
    assert entries(text) == [Entry("claude.ai")]


def rule(name: str, **flags: bool) -> Entry:
    return Entry(name, rule=True, **flags)


def test_adblock_rules():
    text = "||deepseek.com^\n||Claude.AI^|\n||chat.openai.com.^"
    assert entries(text) == [rule("deepseek.com"), rule("claude.ai"), rule("chat.openai.com")]


def test_adblock_exception_is_an_allow_entry():
    assert entries("@@||docs.example.com^") == [rule("docs.example.com", allow=True)]
    assert entries("@@||docs.example.com^|") == [rule("docs.example.com", allow=True)]


def test_wildcard_is_below_only_in_a_list_of_mostly_names():
    # In a list written mostly as names (aiwall's own "domains" export), "*.name" is
    # the subdomains only; a list of mostly "*.name" is a wildcard list (test_list_formats).
    assert entries("*.deepseek.com\n*.Example.ORG.\nclaude.ai\nmistral.ai\nkimi.com") == [
        Entry("deepseek.com", below_only=True),
        Entry("example.org", below_only=True),
        Entry("claude.ai"),
        Entry("mistral.ai"),
        Entry("kimi.com"),
    ]


def test_comments_headers_and_blank_lines():
    text = """\
[Adblock Plus 2.0]
! Title: AI services
# a hosts-style comment
   # indented comment

!
deepseek.com # the main site
0.0.0.0 claude.ai\t# tab comment
||mistral.ai^ # rule comment
"""
    assert entries(text) == [Entry("deepseek.com"), Entry("claude.ai"), rule("mistral.ai")]


def test_windows_line_endings():
    assert entries("deepseek.com\r\nclaude.ai\r\n") == [Entry("deepseek.com"), Entry("claude.ai")]


def test_skipped_lines_keep_their_numbers_text_and_class():
    text = """\
! header
deepseek.com
/deepseek\\.(com|ai)/
||claude.ai^$third-party
example.com##.ad-banner
||mistral.ai
@@plain.example.com
two words here
0.0.0.0 good.example bad..example
*.com
not_a-valid-!name
claude.ai
"""
    parsed = parse_list(text)
    assert [(e.name, e.allow) for e in parsed.entries] == [
        ("deepseek.com", False),
        ("mistral.ai", False),  # "||x" without "^": the name and its subdomains
        ("plain.example.com", True),  # an unanchored exception, read as the name
        ("good.example", False),  # the good name of a line with a bad one
        ("claude.ai", False),
    ]
    assert parsed.rejected == [
        (3, "/deepseek\\.(com|ai)/"),
        (4, "||claude.ai^$third-party"),
        (5, "example.com##.ad-banner"),
        (8, "two words here"),
        (9, "0.0.0.0 good.example bad..example"),
        (10, "*.com"),
        (11, "not_a-valid-!name"),
    ]
    assert parsed.skipped("regex") == [3]
    assert parsed.skipped("modifier") == [4]
    assert parsed.skipped("cosmetic") == [5]
    assert parsed.skipped("unreadable") == [8]
    assert parsed.skipped("invalid_name") == [9, 10, 11]
    # The regex, modifier and cosmetic lines are not for DNS, not unreadable; the line
    # with one good name is used; "two words", "*.com" and the bad name are unreadable.
    assert (parsed.report.used, parsed.report.unreadable) == (5, 3)


def test_rejected_line_text_is_capped():
    parsed = parse_list("x" * 500 + "!")
    ((number, line),) = parsed.rejected
    assert number == 1
    assert len(line) == 200


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.COM.", "example.com"),
        ("_dmarc.example.com", "_dmarc.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
    ],
)
def test_normalise_name_accepts(text, expected):
    assert normalise_name(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        ".",
        "a..b",
        "-lead.example",
        "trail-.example",
        "a" * 64 + ".com",
        "has space.example",
        "semi;colon.example",
        ".".join(["abc"] * 64),
    ],
)
def test_normalise_name_rejects(text):
    assert normalise_name(text) is None


def test_normalise_name_limits_length_after_idna():
    # Short as Unicode (249 characters) but far over 253 once each label is punycoded.
    unicode_name = ".".join(["üüüüüüüüü"] * 25)
    assert len(unicode_name) <= 253
    assert normalise_name(unicode_name) is None
    # The longest name that still fits is accepted.
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(longest) == 253
    assert normalise_name(longest) == longest
    assert normalise_name(longest + "b") is None
