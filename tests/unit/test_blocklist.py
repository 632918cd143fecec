import datetime

import pytest

from resolver.config import BlockingConfig, CatalogPolicy, CatalogSelector
from resolver.policy.blocklist import PolicyConflict, build_blocklist
from resolver.policy.catalog import Catalog, DataLocation, Domain, Service
from resolver.policy.lists import ListError, parse_list_text, read_list_file


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
        verified=datetime.date(2026, 11, 22),
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


def test_config_allow_overrides_blocks_for_the_name_and_below_only():
    policy = build_blocklist(BlockingConfig(allow=("platform.deepseek.com",)), CATALOG, ())
    decision = policy.decide("x.platform.deepseek.com")
    assert not decision.blocked
    assert decision.rule.policy == "blocking.allow"
    assert policy.decide("chat.deepseek.com").blocked


def lists(tmp_path, **files: str):
    parts = []
    for name, text in files.items():
        path = tmp_path / f"{name}.txt"
        path.write_text(text)
        parts.append(parse_list_text(read_list_file(path)))
    return tuple(parts)


@pytest.mark.parametrize(
    "exception",
    ["@@||deepseek.com^", "@@||chat.deepseek.com^", "@@||use-application-dns.net^"],
)
def test_a_lists_exception_never_lifts_a_catalog_ban_or_a_canary(tmp_path, exception):
    # Third-party ad lists carry @@ lines; with them, a banned name must stay banned.
    parts = lists(tmp_path, ads=f"ads.example\n{exception}\n")
    policy = build_blocklist(BlockingConfig(), CATALOG, parts)
    name = exception[4:-1]
    decision = policy.decide(name)
    assert decision.blocked
    assert decision.rule.source in ("catalog", "config")
    assert policy.decide("ads.example").blocked


def test_a_lists_exception_cancels_its_own_entries_only(tmp_path):
    parts = lists(
        tmp_path,
        first="tracker.example\n@@||cdn.tracker.example^\n",
        second="ads.example\n@@||static.ads.example^\n",
    )
    policy = build_blocklist(BlockingConfig(), None, parts)
    excepted = policy.decide("img.cdn.tracker.example")
    assert not excepted.blocked
    assert excepted.rule.source == "list:first.txt"
    assert "own exception" in excepted.rule.policy
    assert policy.decide("tracker.example").blocked
    assert not policy.decide("static.ads.example").blocked


def test_a_lists_exception_does_not_lift_another_lists_block(tmp_path):
    parts = lists(
        tmp_path,
        first="@@||shared.example^\nother.example\n",
        second="shared.example\n",
    )
    policy = build_blocklist(BlockingConfig(), None, parts)
    decision = policy.decide("www.shared.example")
    assert decision.blocked
    assert decision.rule.source == "list:second.txt"


def test_two_lists_excepting_the_same_name_both_let_it_through(tmp_path):
    parts = lists(
        tmp_path,
        first="example.org\n@@||ok.example.org^\n",
        second="example.org\n@@||ok.example.org^\n",
    )
    policy = build_blocklist(BlockingConfig(), None, parts)
    assert not policy.decide("ok.example.org").blocked
    assert policy.decide("no.example.org").blocked


def test_config_allow_cannot_reopen_a_bypass_service_or_a_canary():
    catalog = Catalog(
        services=(*CATALOG.services, service("bypass-google-dns", "dns.google", category="bypass"))
    )
    with pytest.raises(PolicyConflict, match=r"blocking.allow\[0\].*bypass-google-dns"):
        build_blocklist(BlockingConfig(allow=("dns.google",)), catalog, ())
    with pytest.raises(PolicyConflict, match="canary"):
        build_blocklist(BlockingConfig(allow=("use-application-dns.net",)), catalog, ())
    # Naming the bypass service under catalog.allow.services is the way to reopen it.
    reopened = BlockingConfig(
        catalog=CatalogPolicy(
            block=CatalogSelector(all=True),
            allow=CatalogSelector(services=("bypass-google-dns",)),
        )
    )
    assert not build_blocklist(reopened, catalog, ()).decide("dns.google").blocked


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
