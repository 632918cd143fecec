"""``rpz:``: every mistake is an error naming its key path; secrets come inline or from
a file (bare base64, or as tsig-keygen writes it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from resolver.config import ConfigError, config_from_mapping

SECRET = "c2VjcmV0LWtleS1mb3ItdGhlLXJwei1mZWVkLXRlc3Rz"


def load(zone: dict[str, Any], base_dir: Path = Path("."), **more: Any) -> Any:
    return config_from_mapping({"rpz": [zone], **more}, base_dir=base_dir)


def test_a_full_zone_reads_as_written(tmp_path: Path) -> None:
    (tmp_path / "xfr.key").write_text(
        'key "aiwall-xfr" {\n\talgorithm hmac-sha256;\n\tsecret "' + SECRET + '";\n};\n'
    )
    config = load(
        {
            "zone": "RPZ.Aiwall.Internal.",
            "group": "lab",
            "allow_transfer": ["10.0.0.0/8", "::1"],
            "tsig": {"name": "aiwall-xfr", "algorithm": "hmac-sha256", "secret_file": "xfr.key"},
            "notify": ["10.0.0.53", "[::1]:5300"],
        },
        tmp_path,
        groups=[{"name": "lab", "clients": ["10.1.0.0/16"]}],
    )
    (zone,) = config.rpz
    assert zone.name == "rpz.aiwall.internal"
    assert [str(n) for n in zone.allow_transfer] == ["10.0.0.0/8", "::1/128"]
    assert [(e.host, e.port) for e in zone.notify] == [("10.0.0.53", 53), ("::1", 5300)]
    assert zone.tsig is not None
    assert zone.tsig.read_secret(tmp_path, "rpz[0].tsig") == b"secret-key-for-the-rpz-feed-tests"


def test_the_defaults_allow_loopback_only_and_need_no_key() -> None:
    (zone,) = load({"zone": "rpz.example"}).rpz
    assert [str(n) for n in zone.allow_transfer] == ["127.0.0.0/8", "::1/128"]
    assert zone.tsig is None
    assert zone.group == "default"


@pytest.mark.parametrize(
    ("zone", "message"),
    [
        ({}, "rpz[0].zone: expected a zone name"),
        ({"zone": "single"}, "rpz[0].zone: expected a zone name"),
        ({"zone": "bad zone.example"}, "rpz[0].zone: expected a zone name"),
        ({"zone": "rpz.example", "group": "nobody"}, "rpz[0].group: no group 'nobody'"),
        ({"zone": "rpz.example", "allow_transfer": ["any"]}, "rpz[0].allow_transfer[0]:"),
        ({"zone": "rpz.example", "notify": ["ns.example:53"]}, "rpz[0].notify[0]:"),
        ({"zone": "rpz.example", "tsig": {"secret": SECRET}}, "rpz[0].tsig.name:"),
        ({"zone": "rpz.example", "tsig": {"name": "k"}}, "rpz[0].tsig: set exactly one"),
        (
            {"zone": "rpz.example", "tsig": {"name": "k", "secret": SECRET, "secret_file": "f"}},
            "rpz[0].tsig: set exactly one",
        ),
        ({"zone": "rpz.example", "tsig": {"name": "k", "secret": "!!"}}, "rpz[0].tsig.secret:"),
        (
            {"zone": "rpz.example", "tsig": {"name": "k", "secret": "c2hvcnQ="}},
            "rpz[0].tsig.secret: the secret has 5 bytes",
        ),
        (
            {"zone": "rpz.example", "tsig": {"name": "k", "secret": SECRET, "algorithm": "md5"}},
            "rpz[0].tsig.algorithm: expected one of 'hmac-sha256'",
        ),
        (
            {"zone": "rpz.example", "tsig": {"name": "k", "secret_file": "missing.key"}},
            "rpz[0].tsig.secret_file: cannot read",
        ),
        ({"zone": "rpz.example", "primary": "x"}, "rpz[0].primary: unknown key"),
    ],
)
def test_mistakes_name_their_key_path(zone: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load(zone)


def test_a_zone_listed_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"rpz\[1\]\.zone: 'rpz.example' is listed twice"):
        config_from_mapping({"rpz": [{"zone": "rpz.example"}, {"zone": "RPZ.example."}]})


def test_a_secret_file_that_is_not_base64_names_the_file_not_the_content(tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text("not base64 at all, a password maybe\n")
    with pytest.raises(ConfigError) as error:
        load({"zone": "rpz.example", "tsig": {"name": "k", "secret_file": "bad.key"}}, tmp_path)
    assert "rpz[0].tsig.secret_file" in str(error.value)
    assert "bad.key" in str(error.value)
    assert "password" not in str(error.value)
