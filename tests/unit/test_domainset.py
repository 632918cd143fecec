"""Suffix matching: most specific entry wins, label boundaries only, wildcards below only."""

from __future__ import annotations

import pytest

from resolver.dns import wire
from resolver.policy.domainset import DomainSet, Match


def build(*names: str, wildcards: tuple[str, ...] = ()) -> DomainSet[str]:
    domains: DomainSet[str] = DomainSet()
    for name in names:
        domains.add(wire.text_to_name(name), name)
    for name in wildcards:
        domains.add(wire.text_to_name(name), "*." + name, below_only=True)
    return domains


def lookup(domains: DomainSet[str], name: str) -> Match[str] | None:
    encoded = wire.text_to_name(name)
    return domains.match(encoded, wire.label_starts(encoded))


@pytest.mark.parametrize(
    ("name", "value", "label"),
    [
        ("deepseek.com", "deepseek.com", 0),
        ("chat.deepseek.com", "deepseek.com", 1),
        ("a.b.c.deepseek.com", "deepseek.com", 3),
        ("api.deepseek.com", "api.deepseek.com", 0),
        ("v1.api.deepseek.com", "api.deepseek.com", 1),
    ],
)
def test_subdomains_covered_and_most_specific_wins(name, value, label):
    domains = build("deepseek.com", "api.deepseek.com")
    assert lookup(domains, name) == Match(value, label)


def test_most_specific_wins_whatever_the_insertion_order():
    forward = build("deepseek.com", "api.deepseek.com")
    backward = build("api.deepseek.com", "deepseek.com")
    for domains in (forward, backward):
        assert lookup(domains, "x.api.deepseek.com") == Match("api.deepseek.com", 1)


@pytest.mark.parametrize(
    "name", ["notdeepseek.com", "deepseek.co", "deepseek.com.evil", "com", "eepseek.com", "x.org"]
)
def test_siblings_and_parents_are_not_covered(name):
    assert lookup(build("deepseek.com"), name) is None


def test_label_index_points_at_the_entry_in_the_query():
    domains = build("openai.com")
    encoded = wire.text_to_name("chat.api.openai.com")
    labels = wire.label_starts(encoded)
    found = domains.match(encoded, labels)
    assert found is not None
    assert wire.name_to_text(encoded[labels[found.label] :]) == "openai.com"


def test_match_works_on_a_query_name_with_offsets_from_the_question():
    domains = build("deepseek.com")
    data = b"\x00" * 12 + wire.text_to_name("chat.deepseek.com") + b"\x00\x01\x00\x01"
    end, labels = wire.read_question_name(data, 12)
    assert domains.match(data[12:end], labels) == Match("deepseek.com", 1)


def test_below_only_does_not_match_the_name_itself():
    domains = build(wildcards=("example.org",))
    assert lookup(domains, "example.org") is None
    assert lookup(domains, "www.example.org") == Match("*.example.org", 1)
    assert lookup(domains, "a.b.example.org") == Match("*.example.org", 2)
    assert lookup(domains, "notexample.org") is None


def test_plain_entry_and_wildcard_together():
    domains = build("example.org", wildcards=("example.org",))
    assert lookup(domains, "example.org") == Match("example.org", 0)
    # At the same label the plain entry is looked at first.
    assert lookup(domains, "www.example.org") == Match("example.org", 1)


def test_wildcard_more_specific_than_a_plain_parent_wins():
    domains = build("example.org", wildcards=("cdn.example.org",))
    assert lookup(domains, "img.cdn.example.org") == Match("*.cdn.example.org", 1)
    assert lookup(domains, "cdn.example.org") == Match("example.org", 1)


def test_later_add_replaces_and_setdefault_keeps_the_first():
    domains: DomainSet[str] = DomainSet()
    key = wire.text_to_name("example.com")
    domains.add(key, "first")
    domains.add(key, "second")
    assert lookup(domains, "example.com") == Match("second", 0)
    assert domains.setdefault(key, "third") == "second"
    other = wire.text_to_name("other.com")
    assert domains.setdefault(other, "fresh") == "fresh"
    assert lookup(domains, "www.other.com") == Match("fresh", 1)
    assert len(domains) == 2


def test_update_adds_plain_entries():
    domains: DomainSet[int] = DomainSet()
    domains.add(wire.text_to_name("a.example"), 1)
    domains.add(wire.text_to_name("b.example"), 2)
    assert len(domains) == 2
    encoded = wire.text_to_name("x.b.example")
    assert domains.match(encoded, wire.label_starts(encoded)) == Match(2, 1)


def test_root_and_empty_label_lists_match_nothing():
    domains = build("example.com")
    assert domains.match(b"\x00", ()) is None


class CountingDict(dict):
    """Counts lookups, so the test shows the cost does not grow with the set's size."""

    probes = 0

    def get(self, key, default=None):
        CountingDict.probes += 1
        return super().get(key, default)


def test_large_set_matches_with_a_few_probes_per_label():
    domains: DomainSet[int] = DomainSet()
    for index in range(200_000):
        domains.add(wire.text_to_name(f"host{index}.example{index % 97}.net"), index)
    domains.add(wire.text_to_name("wild.example"), -1, below_only=True)
    counting = CountingDict(domains._entries)
    domains._entries = counting
    assert len(domains) == 200_001

    CountingDict.probes = 0
    assert lookup(domains, "deep.host123456.example72.net") == Match(123456, 1)
    # The exact name misses, its parent hits: two probes, not a scan of 200k entries.
    assert CountingDict.probes <= 2

    CountingDict.probes = 0
    assert lookup(domains, "a.b.c.not-listed.example72.net") is None
    # A miss costs at most a plain and a wildcard probe per label (six labels).
    assert 0 < CountingDict.probes <= 2 * 6

    CountingDict.probes = 0
    assert lookup(domains, "a.b.c.not-listed.org") is None
    # No entry ends with "not-listed.org": ruled out without a probe.
    assert CountingDict.probes == 0

    assert lookup(domains, "x.wild.example") == Match(-1, 1)
    assert lookup(domains, "host5.example5.net") == Match(5, 0)
    assert lookup(domains, "host5.example6.net") is None


@pytest.mark.parametrize(
    ("name", "value", "label"),
    [
        ("aiwall", "aiwall", 0),
        ("x.aiwall", "aiwall", 1),
        ("a.b.example", "*.example", 2),
        ("example", None, 0),
        ("deep.api.openai.com", "api.openai.com", 1),
        ("a.b.c.d.example.org", None, 0),
    ],
)
def test_names_of_one_label_and_their_wildcards_are_found_under_any_name(name, value, label):
    """Entries of one label (and wildcards below one) end with no name's last two labels:
    the test that rules names out by their last two labels must not miss them."""
    domains = build("aiwall", "api.openai.com", wildcards=("example",))
    found = lookup(domains, name)
    assert (found is None) if value is None else found == Match(value, label)


def test_entries_added_after_a_lookup_are_found():
    domains = build("openai.com")
    assert lookup(domains, "chat.deepseek.com") is None
    domains.add(wire.text_to_name("deepseek.com"), "later")
    domains.setdefault(wire.text_to_name("kimi.ai"), "kimi")
    assert lookup(domains, "chat.deepseek.com") == Match("later", 1)
    assert lookup(domains, "www.kimi.ai") == Match("kimi", 1)


def test_a_name_of_two_labels_is_not_taken_for_one_of_one(monkeypatch):
    """Only entries of one label make every name's last label worth a look-up."""
    domains = build("deepseek.com", "a.b.example")
    seen: list[bytes] = []
    tails = domains._tails

    class Seen(set):
        def __contains__(self, key: object) -> bool:
            seen.append(bytes(key))  # type: ignore[arg-type]
            return key in tails

    domains._tails = Seen()
    assert lookup(domains, "x.y.other.org") is None
    assert seen == [wire.text_to_name("other.org")]
