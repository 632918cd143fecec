"""Loading the service catalog: every malformed input is refused with file and key named."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from resolver.policy.catalog import (
    CATEGORIES,
    ROLES,
    Catalog,
    CatalogError,
    DataLocation,
    Domain,
    default_catalog_dir,
    default_protected_path,
)
from resolver.policy.catalog_files import load_catalog, load_protected

VALID = """\
id: example-ai
name: Example AI
vendor: Example Corp.
vendor_country: US
data_location:
  country: CN
  source: https://example.com/privacy
categories: [chat_assistant, api_developer_platform]
domains:
  - name: example.ai
    role: ui
  - name: api.example.ai
    role: api
  - name: example-cdn.net
shared:
  - name: cdn.shared-host.com
    reason: used by unrelated products
sources:
  - https://example.com/docs
verified: 2026-11-22
notes: a test service
"""


def write(directory: Path, text: str, stem: str = "example-ai") -> Path:
    path = directory / f"{stem}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(directory: Path) -> str:
    with pytest.raises(CatalogError) as caught:
        load_catalog(directory)
    return str(caught.value)


def test_valid_service_loads_with_every_field(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    catalog = load_catalog(tmp_path)
    service = next(s for s in catalog.services if s.id == "example-ai")
    assert service is not None
    assert service.name == "Example AI"
    assert service.vendor_country == "US"
    assert service.data_location == DataLocation("CN", "https://example.com/privacy")
    assert service.categories == ("chat_assistant", "api_developer_platform")
    assert service.domains == (
        Domain("example.ai", "ui"),
        Domain("api.example.ai", "api"),
        Domain("example-cdn.net", None),
    )
    assert service.shared[0].name == "cdn.shared-host.com"
    assert service.sources == ("https://example.com/docs",)
    assert service.verified == datetime.date(2026, 11, 22)
    assert service.notes == "a test service"
    assert "missing" not in {s.id for s in catalog.services}


def test_optional_keys_may_be_left_out(tmp_path: Path) -> None:
    text = (
        VALID.split("shared:")[0] + "sources:\n  - https://example.com/docs\nverified: 2026-11-22\n"
    )
    write(tmp_path, text)
    service = load_catalog(tmp_path).services[0]
    assert service.shared == ()
    assert service.notes == ""


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ("notes: a test service", "colour: blue", "colour", "unknown key"),
        ("    role: ui", "    role: ui\n    weight: 3", "domains[0].weight", "unknown key"),
        (
            "  source: https://example.com/privacy",
            "  source: https://example.com/privacy\n  city: x",
            "data_location.city",
            "unknown key",
        ),
        ("vendor: Example Corp.\n", "", "vendor", "missing required key"),
        ("verified: 2026-11-22\n", "", "verified", "missing required key"),
        ("  - name: example-cdn.net", "  - role: cdn", "domains[2].name", "missing required key"),
        (
            "    reason: used by unrelated products\n",
            "",
            "shared[0].reason",
            "missing required key",
        ),
        ("api_developer_platform]", "image_generation]", "categories[1]", "unknown category"),
        (
            "[chat_assistant, api_developer_platform]",
            "[chat_assistant, chat_assistant]",
            "categories[1]",
            "listed twice",
        ),
        (
            "categories: [chat_assistant, api_developer_platform]",
            "categories: chat_assistant",
            "categories",
            "expected a list",
        ),
        (
            "categories: [chat_assistant, api_developer_platform]",
            "categories: []",
            "categories",
            "at least one",
        ),
        (
            "  - name: example-cdn.net",
            "  - name: foo..com",
            "domains[2].name",
            "'foo..com' is not a valid hostname",
        ),
        (
            "  - name: example-cdn.net",
            "  - name: localhost",
            "domains[2].name",
            "not a valid hostname",
        ),
        (
            "  - name: example-cdn.net",
            "  - name: '*.example.ai'",
            "domains[2].name",
            "not a valid hostname",
        ),
        (
            "  - name: example-cdn.net",
            "  - name: -bad.example.ai",
            "domains[2].name",
            "not a valid hostname",
        ),
        (
            "  - name: example-cdn.net",
            "  - name: 1.1.1.1",
            "domains[2].name",
            "not a valid hostname",
        ),
        (
            "  - name: example-cdn.net",
            f"  - name: {'a' * 64}.example.ai",
            "domains[2].name",
            "not a valid hostname",
        ),
        (
            "  - name: example-cdn.net",
            "  - name: API.Example.AI.",
            "domains[2].name",
            "listed twice",
        ),
        ("    role: api", "    role: backend", "domains[1].role", "unknown role"),
        (
            "  - name: cdn.shared-host.com",
            "  - name: shared_host",
            "shared[0].name",
            "not a valid hostname",
        ),
        ("verified: 2026-11-22", "verified: 2026-13-45", "verified", "expected a date"),
        ("verified: 2026-11-22", "verified: '22/11/2026'", "verified", "expected a date"),
        ("verified: 2026-11-22", "verified: 2026-02-30", "verified", "expected a date"),
        ("verified: 2026-11-22", "verified: 2026-11-22 10:00:00", "verified", "expected a date"),
        ("verified: 2026-11-22", "verified: 20261122", "verified", "expected a date"),
        ("  source: https://example.com/privacy\n", "", "data_location.source", "required"),
        (
            "  source: https://example.com/privacy",
            "  source: see the policy",
            "data_location.source",
            "not an http(s) URL",
        ),
        ("  country: CN", "  country: China", "data_location.country", "not an ISO"),
        ("vendor_country: US", "vendor_country: UK", "vendor_country", "not an ISO"),
        ("vendor_country: US", "vendor_country: NO", "vendor_country", "expected text"),
        (
            "  - https://example.com/docs",
            "  - example.com/docs",
            "sources[0]",
            "not an http(s) URL",
        ),
        ("sources:\n  - https://example.com/docs", "sources: []", "sources", "at least one"),
        ("id: example-ai", "id: other-ai", "id", "must equal the file name stem"),
        ("id: example-ai", "id: Example_AI", "id", "lowercase"),
        ("name: Example AI", "name: ''", "name", "must not be empty"),
    ],
)
def test_bad_input_names_file_and_key(
    tmp_path: Path, old: str, new: str, key: str, problem: str
) -> None:
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new, 1))
    message = load_error(tmp_path)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message


def test_error_message_format_matches_the_documented_shape(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("  - name: example-cdn.net", "  - name: foo..com"))
    assert load_error(tmp_path) == f"{path}: domains[2].name: 'foo..com' is not a valid hostname"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("name: Example AI", "name: [unclosed"))
    message = load_error(tmp_path)
    assert message.startswith(f"{path}: line ")
    assert "not valid YAML" in message


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "- just\n- a list\n")
    assert load_error(tmp_path).startswith(f"{path}: (file): expected a mapping")


def test_quoted_iso_date_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, VALID.replace("verified: 2026-11-22", "verified: '2026-11-22'"))
    assert load_catalog(tmp_path).services[0].verified == datetime.date(2026, 11, 22)


def test_unknown_data_location_needs_no_source(tmp_path: Path) -> None:
    text = VALID.replace(
        "  country: CN\n  source: https://example.com/privacy", "  country: unknown"
    )
    write(tmp_path, text)
    assert load_catalog(tmp_path).services[0].data_location == DataLocation("unknown", None)


def test_region_is_accepted_as_data_location(tmp_path: Path) -> None:
    write(tmp_path, VALID.replace("  country: CN", "  country: EU"))
    assert load_catalog(tmp_path).services[0].data_location.country == "EU"


def test_hostnames_are_normalised_to_lowercase_ascii(tmp_path: Path) -> None:
    text = (
        VALID.replace("  - name: example.ai", "  - name: Bücher.Example")
        .replace("  - name: api.example.ai", "  - name: API.Example.AI.")
        .replace("  - name: cdn.shared-host.com", "  - name: CDN.Shared-Host.com")
    )
    write(tmp_path, text)
    service = load_catalog(tmp_path).services[0]
    assert [d.name for d in service.domains] == [
        "xn--bcher-kva.example",
        "api.example.ai",
        "example-cdn.net",
    ]
    assert service.shared[0].name == "cdn.shared-host.com"


def test_files_are_loaded_in_name_order(tmp_path: Path) -> None:
    write(tmp_path, VALID.replace("id: example-ai", "id: zeta"), stem="zeta")
    write(tmp_path, VALID.replace("id: example-ai", "id: alpha"), stem="alpha")
    assert [s.id for s in load_catalog(tmp_path).services] == ["alpha", "zeta"]


def test_yml_files_are_refused_rather_than_skipped(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    (tmp_path / "other.yml").write_text(VALID, encoding="utf-8")
    assert load_error(tmp_path) == f"{tmp_path / 'other.yml'}: catalog files must end in .yaml"


def test_missing_or_empty_directory_is_refused(tmp_path: Path) -> None:
    assert "not found" in load_error(tmp_path / "nowhere")
    assert "no service files" in load_error(tmp_path)


def test_shipped_catalog_loads() -> None:
    catalog = load_catalog(default_catalog_dir())
    assert isinstance(catalog, Catalog)
    assert len(catalog.services) >= 100
    for service in catalog.services:
        assert set(service.categories) <= CATEGORIES
        assert all(d.role is None or d.role in ROLES for d in service.domains)
        assert all(d.name == d.name.lower() and d.name.isascii() for d in service.domains)


def test_default_catalog_dir_is_the_checkout_and_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIWALL_CATALOG_DIR", raising=False)
    repo = Path(__file__).resolve().parents[2]
    assert default_catalog_dir() == repo / "blocklists" / "catalog"
    monkeypatch.setenv("AIWALL_CATALOG_DIR", str(tmp_path))
    assert default_catalog_dir() == tmp_path


def test_default_protected_path_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIWALL_PROTECTED_PATH", raising=False)
    repo = Path(__file__).resolve().parents[2]
    assert default_protected_path() == repo / "blocklists" / "protected.txt"
    monkeypatch.setenv("AIWALL_PROTECTED_PATH", str(tmp_path / "p.txt"))
    assert default_protected_path() == tmp_path / "p.txt"


def test_protected_list_skips_comments_and_normalises(tmp_path: Path) -> None:
    path = tmp_path / "protected.txt"
    path.write_text(
        "# header\n\nGoogle.COM  # search\n  gstatic.com\nMünchen.de\n", encoding="utf-8"
    )
    assert load_protected(path) == frozenset({"google.com", "gstatic.com", "xn--mnchen-3ya.de"})


def test_protected_list_refuses_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "protected.txt"
    path.write_text("google.com\nnot a host\n", encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_protected(path)
    assert str(caught.value) == f"{path}: line 2: 'not a host' is not a valid hostname"


def test_shipped_protected_list_loads() -> None:
    protected = load_protected(default_protected_path())
    assert {
        "google.com",
        "microsoft.com",
        "github.com",
        "cloudflare.com",
        "icloud.com",
    } <= protected
