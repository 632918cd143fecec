"""Policy selection over the shipped catalog, with the bans organisations actually made."""

import pytest

from resolver.config import config_from_mapping
from resolver.policy.blocklist import build_blocklist
from resolver.policy.catalog import default_catalog_dir
from resolver.policy.catalog_files import load_catalog
from resolver.policy.selectors import SelectorError, select_services

CATALOG = load_catalog(default_catalog_dir())


def policy_for(catalog_policy):
    config = config_from_mapping({"blocking": {"catalog": catalog_policy}})
    return build_blocklist(config.blocking, CATALOG, ())


def test_default_blocks_the_whole_catalog_including_bypass():
    policy = policy_for("all")
    for name in (
        "chat.deepseek.com",
        "chatgpt.com",
        "claude.ai",
        "gemini.google.com",
        "kimi.ai",
        "dns.google",
        "cloudflare-dns.com",
        "mask.icloud.com",
    ):
        assert policy.decide(name).blocked, name
    for name in ("google.com", "www.google.com", "microsoft.com", "x.com", "gemini.com"):
        assert not policy.decide(name).blocked, name


def test_ban_deepseek_only():
    policy = policy_for({"block": {"services": ["deepseek"]}})
    assert (
        policy.decide("chat.deepseek.com").rule.policy
        == "blocking.catalog.block.services: deepseek"
    )
    assert not policy.decide("chatgpt.com").blocked
    assert not policy.decide("kimi.ai").blocked


def test_ban_chinese_services_resolves_chatgpt():
    policy = policy_for({"block": {"countries": ["CN"]}})
    for name in (
        "chat.deepseek.com",
        "kimi.ai",
        "www.doubao.com",
        "chat.qwen.ai",
        "yiyan.baidu.com",
    ):
        decision = policy.decide(name)
        assert decision.blocked, name
        assert decision.rule.policy == "blocking.catalog.block.countries: CN"
    assert not policy.decide("chatgpt.com").blocked
    assert not policy.decide("baidu.com").blocked


def test_ban_all_chatbots_except_the_approved_vendor():
    policy = policy_for(
        {"block": {"categories": ["chat_assistant"]}, "allow": {"vendors": ["OpenAI"]}}
    )
    assert policy.decide("claude.ai").blocked
    assert policy.decide("chat.deepseek.com").blocked
    approved = policy.decide("chatgpt.com")
    assert not approved.blocked
    assert approved.rule.policy == "blocking.catalog.allow.vendors: OpenAI"


def test_vendor_selector_matches_every_company_of_a_group():
    verdicts = select_services(
        config_from_mapping(
            {"blocking": {"catalog": {"block": {"vendors": ["bytedance"]}}}}
        ).blocking.catalog,
        CATALOG,
    )
    ids = {v.service.id for v in verdicts}
    assert {"doubao", "coze", "trae", "dola"} <= ids
    assert "deepseek" not in ids


def test_excepting_a_vendor_does_not_reopen_its_dns_bypass():
    policy = policy_for({"block": {"all": True}, "allow": {"vendors": ["Google"]}})
    assert not policy.decide("gemini.google.com").blocked
    assert policy.decide("dns.google").blocked
    named = policy_for({"block": {"all": True}, "allow": {"services": ["bypass-google-dns"]}})
    assert not named.decide("dns.google").blocked


def test_data_location_selector():
    policy = policy_for({"block": {"data_locations": ["CN"]}})
    assert policy.decide("chat.deepseek.com").blocked
    assert not policy.decide("chatgpt.com").blocked


@pytest.mark.parametrize(
    ("selector", "path"),
    [
        ({"block": {"services": ["deepsek"]}}, "blocking.catalog.block.services[0]"),
        ({"block": {"vendors": ["Nobody Inc"]}}, "blocking.catalog.block.vendors[0]"),
        ({"block": {"countries": ["CN", "ZZ"]}}, "blocking.catalog.block.countries[1]"),
        ({"allow": {"services": ["chatgtp"]}}, "blocking.catalog.allow.services[0]"),
    ],
)
def test_a_selector_that_matches_nothing_is_refused(selector, path):
    # A typo would otherwise ban nothing without a word: refuse the policy instead.
    with pytest.raises(SelectorError, match=path.replace("[", r"\[").replace("]", r"\]")):
        policy_for(selector)


def test_service_display_names_are_accepted():
    policy = policy_for({"block": {"services": ["DeepSeek"]}})
    assert policy.decide("deepseek.com").blocked
