"""The shipped catalog is lint-clean, and lint catches each kind of cross-service mistake."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from resolver.policy.catalog import (
    Catalog,
    DataLocation,
    Domain,
    Service,
    SharedHost,
    default_catalog_dir,
    default_protected_path,
)
from resolver.policy.catalog_files import load_catalog, load_protected
from resolver.policy.catalog_lint import lint

MUST_HAVE = (
    "deepseek",
    "openai",
    "chatgpt",
    "anthropic",
    "gemini",
    "google-ai-studio",
    "notebooklm",
    "copilot",
    "github-copilot",
    "meta-ai",
    "grok",
    "mistral",
    "perplexity",
    "kimi",
    "doubao",
    "qwen",
    "ernie",
    "zhipu",
    "minimax",
    "yuanbao",
    "iflytek-spark",
)
CHINESE = (
    "deepseek",
    "kimi",
    "doubao",
    "qwen",
    "ernie",
    "zhipu",
    "minimax",
    "yuanbao",
    "iflytek-spark",
    "coze",
    "trae",
    "baichuan",
    "stepfun",
    "kling",
)

BYPASS = (
    "bypass-cloudflare-dns",
    "bypass-google-dns",
    "bypass-quad9",
    "bypass-nextdns",
    "bypass-adguard-dns",
    "bypass-opendns",
    "bypass-mullvad-dns",
    "bypass-controld",
    "bypass-apple-private-relay",
    "bypass-browser-canaries",
)

# Names the research data proposed that belong to someone else, are unofficial front ends,
# or are apexes shared with non-AI products: none may come back into the catalog.
REJECTED = (
    "google.com",
    "googleapis.com",
    "gstatic.com",
    "microsoft.com",
    "bing.com",
    "baidu.com",
    "qq.com",
    "tencent.com",
    "x.com",
    "volces.com",
    "aliyuncs.com",
    "icloud.com",
    "cloudflare.com",
    "gemini.com",
    "ai.com",
    "muse.ai",
    "g.ai",
    "copilot.ai",
    "kling-ai.com",
    "deepwiki.org",
    "yuewen.cn",
    "deepseek.chat",
    "chat-deep.ai",
    "deepseekagi.org",
    "kimi-k2.ai",
    "qwen-ai.chat",
    "deepmind.google",
    "copilot-workspace.githubnext.com",
)


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return load_catalog(default_catalog_dir())


@pytest.fixture(scope="module")
def protected() -> frozenset[str]:
    return load_protected(default_protected_path())


def by_id(catalog: Catalog, service_id: str) -> Service | None:
    return next((s for s in catalog.services if s.id == service_id), None)


def service(service_id: str, *names: str, **changes: Any) -> Service:
    base = Service(
        id=service_id,
        name=service_id.title(),
        vendor="Vendor",
        vendor_country="US",
        data_location=DataLocation("unknown", None),
        categories=("chat_assistant",),
        domains=tuple(Domain(name, None, f"https://example.com/{name}") for name in names),
        shared=(),
        sources=("https://example.com/source",),
        verified=datetime.date(2026, 1, 1),
        notes="",
    )
    return dataclasses.replace(base, **changes)


# --- the shipped catalog ---------------------------------------------------------------


def test_shipped_catalog_is_lint_clean(shipped: Catalog, protected: frozenset[str]) -> None:
    assert lint(shipped, protected) == []


def test_every_shipped_service_is_sourced_and_verified(shipped: Catalog) -> None:
    for entry in shipped.services:
        assert entry.sources, entry.id
        assert isinstance(entry.verified, datetime.date), entry.id
        assert entry.domains, entry.id


@pytest.mark.parametrize("service_id", MUST_HAVE + BYPASS)
def test_must_have_service_exists(shipped: Catalog, service_id: str) -> None:
    assert by_id(shipped, service_id) is not None


@pytest.mark.parametrize("service_id", CHINESE)
def test_chinese_vendors_are_marked_cn(shipped: Catalog, service_id: str) -> None:
    entry = by_id(shipped, service_id)
    assert entry is not None
    assert "CN" in entry.countries  # the operator, or its owner (ByteDance for its SG company)


def test_bypass_services_are_only_bypass(shipped: Catalog) -> None:
    for service_id in BYPASS:
        entry = by_id(shipped, service_id)
        assert entry is not None
        assert entry.categories == ("bypass",)


def test_expected_hosts_are_blocked(shipped: Catalog) -> None:
    names = {d.name: s.id for s in shipped.services for d in s.domains}
    for name, owner in {
        "deepseek.com": "deepseek",
        "chatgpt.com": "chatgpt",
        "api.openai.com": "openai",
        "claude.ai": "anthropic",
        "gemini.google.com": "gemini",
        "generativelanguage.googleapis.com": "google-ai-studio",
        "notebooklm.google.com": "notebooklm",
        "copilot.microsoft.com": "copilot",
        "grok.com": "grok",
        "yiyan.baidu.com": "ernie",
        "yuanbao.tencent.com": "yuanbao",
        "cloudflare-dns.com": "bypass-cloudflare-dns",
        "dns.google": "bypass-google-dns",
        "use-application-dns.net": "bypass-browser-canaries",
        "mask.icloud.com": "bypass-apple-private-relay",
        "mask-h2.icloud.com": "bypass-apple-private-relay",
        "mask-api.icloud.com": "bypass-apple-private-relay",
    }.items():
        assert names.get(name) == owner, name


@pytest.mark.parametrize("name", REJECTED)
def test_rejected_names_are_not_in_the_catalog(shipped: Catalog, name: str) -> None:
    blocked = {d.name for s in shipped.services for d in s.domains}
    assert name not in blocked


def test_protected_list_covers_the_shared_apexes(protected: frozenset[str]) -> None:
    required = {
        "google.com",
        "www.google.com",
        "gstatic.com",
        "googleapis.com",
        "microsoft.com",
        "login.microsoftonline.com",
        "office.com",
        "bing.com",
        "github.com",
        "api.github.com",
        "githubusercontent.com",
        "amazonaws.com",
        "cloudfront.net",
        "cloudflare.com",
        "workers.dev",
        "auth0.com",
        "stripe.com",
        "sentry.io",
        "naver.com",
        "kakao.com",
        "baidu.com",
        "aliyun.com",
        "qq.com",
        "volces.com",
        "x.com",
        "gemini.com",
        "icloud.com",
        "apple.com",
        "facebook.com",
        "instagram.com",
        "whatsapp.com",
        "tiktok.com",
        "bytedance.com",
        "alibaba.com",
        "tencent.com",
    }
    assert required <= protected


# --- lint on small catalogs ------------------------------------------------------------


def test_clean_small_catalog_has_no_problems() -> None:
    catalog = Catalog(
        (
            service("gemini", "gemini.google.com"),
            service("notebooklm", "notebooklm.google.com"),
            service("deepseek", "deepseek.com", "api.deepseek.com"),
        )
    )
    assert lint(catalog, frozenset({"google.com", "www.google.com"})) == []


def test_protected_name_itself_is_a_collision() -> None:
    catalog = Catalog((service("fake", "google.com"),))
    problems = lint(catalog, frozenset({"google.com"}))
    assert problems == ["fake: 'google.com' is protected name 'google.com'"]


def test_parent_of_a_protected_name_is_a_collision() -> None:
    catalog = Catalog((service("fake", "microsoftonline.com"),))
    problems = lint(catalog, frozenset({"login.microsoftonline.com"}))
    assert problems == [
        "fake: 'microsoftonline.com' is a parent of protected name 'login.microsoftonline.com'"
    ]


def test_child_of_a_protected_name_is_allowed() -> None:
    catalog = Catalog((service("gemini", "gemini.google.com"),))
    assert lint(catalog, frozenset({"google.com"})) == []


def test_a_bare_top_level_domain_is_invalid_and_collides() -> None:
    catalog = Catalog((service("fake", "com"),))
    problems = lint(catalog, frozenset({"google.com"}))
    assert "fake: 'com' is not a valid hostname" in problems
    assert "fake: 'com' is a parent of protected name 'google.com'" in problems


def test_duplicate_across_services_is_reported() -> None:
    catalog = Catalog((service("one", "example.ai"), service("two", "example.ai")))
    assert lint(catalog, frozenset()) == ["two: 'example.ai' is also listed by service 'one'"]


def test_nesting_across_services_is_reported() -> None:
    catalog = Catalog((service("openai", "openai.com"), service("chatgpt", "chat.openai.com")))
    assert lint(catalog, frozenset()) == [
        "chatgpt: 'chat.openai.com' is under 'openai.com' of service 'openai'"
    ]


def test_nesting_inside_one_service_is_allowed() -> None:
    catalog = Catalog((service("deepseek", "deepseek.com", "api.deepseek.com"),))
    assert lint(catalog, frozenset()) == []


def test_duplicate_inside_one_service_is_reported() -> None:
    catalog = Catalog((service("one", "example.ai", "example.ai"),))
    assert lint(catalog, frozenset()) == ["one: 'example.ai' is listed twice"]


def test_shared_host_that_a_block_would_catch_is_reported() -> None:
    shared = (SharedHost("lge.exaone.ai", "internal instance"),)
    catalog = Catalog((service("exaone", "exaone.ai", shared=shared),))
    assert lint(catalog, frozenset()) == [
        "exaone: shared host 'lge.exaone.ai' would be blocked anyway by 'exaone.ai' of service"
        " 'exaone'"
    ]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"sources": ()}, "fake: no sources"),
        ({"sources": ("somewhere",)}, "fake: source 'somewhere' is not an http(s) URL"),
        ({"verified": None}, "fake: no verified date"),
        (
            {"verified": datetime.date(2999, 1, 1)},
            "fake: verified date 2999-01-01 is in the future",
        ),
        ({"domains": (Domain("fake.ai", None),)}, "fake: 'fake.ai' has no source"),
        (
            {"domains": (Domain("fake.ai", None, "a friend"),)},
            "fake: 'fake.ai' source 'a friend' is not a URL",
        ),
        ({"categories": ()}, "fake: no categories"),
        ({"categories": ("image_generation",)}, "fake: unknown category 'image_generation'"),
        ({"domains": ()}, "fake: no domains"),
        ({"domains": (Domain("foo..com", None),)}, "fake: 'foo..com' is not a valid hostname"),
        (
            {"domains": (Domain("fake.ai", "backend"),)},
            "fake: 'fake.ai' has unknown role 'backend'",
        ),
        ({"vendor_country": "UK"}, "fake: vendor_country 'UK' is not ISO alpha-2"),
        ({"data_location": DataLocation("CN", None)}, "fake: data_location 'CN' has no source"),
        ({"id": "Fake_AI"}, "Fake_AI: id 'Fake_AI' must be lowercase letters, digits and '-'"),
    ],
)
def test_per_service_problems_are_reported(changes: dict[str, Any], expected: str) -> None:
    catalog = Catalog((service("fake", "fake.ai", **changes),))
    assert expected in lint(catalog, frozenset())


def test_duplicate_service_id_is_reported() -> None:
    catalog = Catalog((service("same", "one.ai"), service("same", "two.ai")))
    assert lint(catalog, frozenset()) == ["same: service id is used more than once"]
