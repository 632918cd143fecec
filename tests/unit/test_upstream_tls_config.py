"""``upstream.servers`` entries for DNS over TLS and over HTTPS, and ``upstream.ca_file``:
what is accepted, how it reads back, and the key path every mistake names."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver.config import ConfigError, EncryptedEndpoint, config_from_mapping
from resolver.pipeline import upstream_servers
from resolver.upstream.forwarder import Upstream
from tests.peers.tlsca import TestCA


def error_of(raw: dict[str, object], base_dir: Path = Path(".")) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, base_dir=base_dir)
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port", "path", "name", "shown"),
    [
        ("tls://192.0.2.1", "tls", "192.0.2.1", 853, "", "192.0.2.1", "tls://192.0.2.1:853"),
        (
            "tls://192.0.2.1#dns.example",
            *("tls", "192.0.2.1", 853, "", "dns.example"),
            "tls://192.0.2.1:853#dns.example",
        ),
        ("tls://Dns.Example:8853", "tls", "dns.example", 8853, "", "dns.example", None),
        ("tls://[2001:db8::1]", "tls", "2001:db8::1", 853, "", "2001:db8::1", None),
        (
            "https://192.0.2.1/dns-query#dns.example",
            *("https", "192.0.2.1", 443, "/dns-query", "dns.example"),
            "https://192.0.2.1:443/dns-query#dns.example",
        ),
        (
            "https://doh.example:8443/resolve/dns",
            *("https", "doh.example", 8443, "/resolve/dns", "doh.example"),
            None,
        ),
    ],
)
def test_encrypted_servers_are_read(text, scheme, host, port, path, name, shown):
    config = config_from_mapping({"upstream": {"servers": ["9.9.9.9", text]}})
    plain, server = config.upstream.servers
    assert server.endpoint is None
    assert plain.encrypted is None
    assert server.encrypted == EncryptedEndpoint(scheme, host, port, path, name)
    # What it shows (metric labels, logs) reads back to the same server.
    assert EncryptedEndpoint.parse(str(server)) == server.encrypted
    if shown is not None:
        assert str(server) == shown
    upstream = upstream_servers(config.upstream.servers)[1]
    assert upstream == Upstream(host, port, str(server), scheme, name, path)


def test_plain_entries_are_unchanged():
    config = config_from_mapping({"upstream": {"servers": ["9.9.9.9", "[2620:fe::fe]:53"]}})
    assert [str(s) for s in config.upstream.servers] == ["9.9.9.9:53", "[2620:fe::fe]:53"]
    assert [s.encrypted for s in config.upstream.servers] == [None, None]


def test_conditional_zones_take_encrypted_servers():
    config = config_from_mapping(
        {"upstream": {"conditional": {"corp.example": ["tls://10.0.0.53#dns.corp.example"]}}}
    )
    (server,) = config.upstream.conditional["corp.example"]
    assert str(server) == "tls://10.0.0.53:853#dns.corp.example"


@pytest.mark.parametrize(
    "text",
    [
        "ftp://192.0.2.1",
        "tls://",
        "tls://192.0.2.1/dns-query",  # DoT has no path
        "https://192.0.2.1",  # DoH needs one
        "https://192.0.2.1/",
        "https://192.0.2.1/dns-query?dns=x",
        "https://user@192.0.2.1/dns-query",
        "tls://192.0.2.1:0",
        "tls://192.0.2.1:65536",
        "tls://192.0.2.1:x",
        "tls://2001:db8::1",  # an IPv6 address needs brackets
        "tls://[2001:db8::1",
        "tls://bad host",
        "tls://192.0.2.1#bad name",
        "tls://-dns.example",
    ],
)
def test_bad_urls_name_the_entry(text):
    message = error_of({"upstream": {"servers": ["system", "9.9.9.9", text]}})
    assert message.startswith("upstream.servers[2]: expected tls://")
    assert repr(text) in message


def test_ca_file_relative_to_the_config_folder(tmp_path):
    TestCA(tmp_path / "pki")
    config = config_from_mapping(
        {"upstream": {"servers": ["tls://192.0.2.1"], "ca_file": "pki/ca.pem"}}, base_dir=tmp_path
    )
    assert config.upstream.ca_path(config.base_dir) == tmp_path / "pki" / "ca.pem"


def test_no_ca_file_means_the_system_store(tmp_path):
    config = config_from_mapping({"upstream": {"servers": ["tls://192.0.2.1"]}})
    assert config.upstream.ca_path(tmp_path) is None


def test_missing_ca_file(tmp_path):
    message = error_of({"upstream": {"ca_file": "nope.pem"}}, tmp_path)
    assert message.startswith("upstream.ca_file: cannot read")
    assert "nope.pem" in message


@pytest.mark.parametrize(
    "content", [b"", b"not a certificate\n", b"-----BEGIN CERTIFICATE-----\nAAAA\n"]
)
def test_ca_file_without_certificates(tmp_path, content):
    (tmp_path / "ca.pem").write_bytes(content)
    message = error_of({"upstream": {"ca_file": "ca.pem"}}, tmp_path)
    assert message.startswith("upstream.ca_file: ")
    assert "ca.pem" in message


def test_ca_file_wrong_type():
    assert error_of({"upstream": {"ca_file": 5}}).startswith("upstream.ca_file: expected")
