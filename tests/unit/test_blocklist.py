import datetime

import pytest

from resolver.blocklist import ListError, build_blocklist, parse_list_text, read_list_file
from resolver.catalog import Catalog, DataLocation, Domain, Service
from resolver.config import BlockingConfig, CatalogPolicy


def service(service_id: str, *domains: str, category: str = "chat_assistant") -> Service:
    return Service(
        id=service_id,
        name=service_id.title(),
        vendor=f"{service_id} Inc.",
        vendor_country="CN",
        data_location=DataLocation("CN", "https://example.test/privacy"),
        categories=(category,),
        domains=tuple(Domain(d, None) for d in domains),
        shared=(),
        sources=("https://example.test",),
        reviewed=datetime.date(2026, 11, 22),
        notes="",
    )


CATALOG = Catalog(services=(service("deepseek", "deepseek.com"), service("kimi", "kimi.ai")))


def test_catalog_entries_carry_their_service(tmp_path):
    policy = build_blocklist(BlockingConfig(), CATALOG, ())
    decision = policy.decide("chat.DeepSeek.com.")
    assert decision.blocked
    assert decision.rule.service == "deepseek"
    assert decision.entry == "deepseek.com"
    assert policy.entries_by_source["catalog"] == 2


def test_catalog_none_blocks_only_the_lists(tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("kimi.ai\n")
    policy = build_blocklist(
        BlockingConfig(catalog=CatalogPolicy.from_scalar("none", "blocking.catalog")),
        CATALOG,
        (parse_list_text(read_list_file(extra)),),
    )
    assert not policy.decide("deepseek.com").blocked
    assert policy.decide("www.kimi.ai").rule.service == "list:extra.txt"


def test_a_name_in_both_catalog_and_list_keeps_its_catalog_service(tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("deepseek.com\nother.test\n")
    policy = build_blocklist(BlockingConfig(), CATALOG, (parse_list_text(read_list_file(extra)),))
    assert policy.decide("deepseek.com").rule.service == "deepseek"
    assert policy.decide("other.test").rule.service == "list:extra.txt"


def test_allow_overrides_blocks_for_the_name_and_below_only(tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("@@||api.kimi.ai^\n")
    policy = build_blocklist(
        BlockingConfig(allow=("platform.deepseek.com",)),
        CATALOG,
        (parse_list_text(read_list_file(extra)),),
    )
    assert not policy.decide("x.platform.deepseek.com").blocked
    assert policy.decide("chat.deepseek.com").blocked
    assert not policy.decide("api.kimi.ai").blocked
    assert policy.decide("kimi.ai").blocked


def test_canaries_are_always_in_the_policy():
    policy = build_blocklist(
        BlockingConfig(catalog=CatalogPolicy.from_scalar("none", "blocking.catalog")), None, ()
    )
    assert policy.decide("use-application-dns.net").rule.action == "canary"
    assert policy.decide("mask-h2.icloud.com").rule.action == "canary"
    assert not policy.decide("icloud.com").blocked


def test_unreadable_or_meaningless_lists_are_errors(tmp_path):
    with pytest.raises(ListError, match="cannot read"):
        read_list_file(tmp_path / "missing.txt")
    junk = tmp_path / "junk.txt"
    junk.write_text("/regex.*/\n##.cosmetic\n")
    with pytest.raises(ListError, match="no line"):
        build_blocklist(BlockingConfig(), None, (parse_list_text(read_list_file(junk)),))


def test_an_empty_or_comment_only_list_is_refused(tmp_path):
    # Caught mid-rewrite, a list is often empty for a moment: loading it would unblock.
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ListError, match="no line"):
        parse_list_text(read_list_file(empty))
