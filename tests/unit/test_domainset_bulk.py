"""Large lists kept as hashes: same answers as exact entries, most specific still wins."""

from resolver.dns import wire
from resolver.policy.domainset import DomainSet, hashed_chunks


def match(domains: DomainSet, name: str):
    key = wire.text_to_name(name)
    return domains.match(key, wire.label_starts(key))


def test_bulk_names_cover_their_subdomains_only():
    domains: DomainSet[str] = DomainSet()
    assert (
        domains.add_bulk_chunks(
            hashed_chunks(["deepseek.com", "x.y.example", "deepseek.com"]), "list"
        )
        == 2
    )
    assert match(domains, "deepseek.com").value == "list"
    assert match(domains, "a.b.deepseek.com").label == 2
    assert match(domains, "notdeepseek.com") is None
    assert match(domains, "y.example") is None
    assert match(domains, "com") is None
    assert len(domains) == 2


def test_exact_entries_win_at_the_same_label_and_deeper_entries_win_over_bulk():
    domains: DomainSet[str] = DomainSet()
    domains.add_bulk_chunks(hashed_chunks(["deepseek.com", "platform.deepseek.com"]), "list")
    domains.add(wire.text_to_name("deepseek.com"), "catalog")
    domains.add(wire.text_to_name("api.platform.deepseek.com"), "allow")
    assert match(domains, "chat.deepseek.com").value == "catalog"
    assert match(domains, "x.platform.deepseek.com").value == "list"
    assert match(domains, "v1.api.platform.deepseek.com").value == "allow"


def test_lists_are_checked_in_the_order_added():
    domains: DomainSet[str] = DomainSet()
    domains.add_bulk_chunks(hashed_chunks(["shared.example"]), "first")
    domains.add_bulk_chunks(hashed_chunks(["shared.example", "other.example"]), "second")
    assert match(domains, "a.shared.example").value == "first"
    assert match(domains, "other.example").value == "second"
