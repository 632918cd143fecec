"""Strict config loading: every mistake is a ConfigError that starts with its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver.config import (
    Config,
    ConfigError,
    DnsEndpoint,
    HttpEndpoint,
    UpstreamServer,
    config_from_mapping,
    load_config,
    system_nameservers,
)


def error_of(raw: object) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw)
    return str(caught.value)


# --- defaults and good values -------------------------------------------------------------


def test_defaults_are_valid():
    Config().validate()
    config = load_config(None)
    assert config == config_from_mapping({})
    assert config.blocking.response == "nxdomain"
    assert [str(server) for server in config.upstream.servers] == ["system"]


def test_empty_sections_and_empty_file_mean_defaults():
    assert config_from_mapping(None) == Config()
    assert config_from_mapping({"blocking": None}).blocking == Config().blocking


def test_full_config_is_read():
    config = config_from_mapping(
        {
            "listen": {"dns": ["0.0.0.0:53", "[::]:53"], "http": "", "tcp_idle_timeout": 5},
            "upstream": {
                "servers": ["system", "9.9.9.9", "[2620:fe::fe]:53"],
                "conditional": {"corp.example": ["10.0.0.53"]},
                "timeout": 1,
            },
            "blocking": {
                "response": "sinkhole",
                "catalog": "none",
                "lists": ["extra.txt"],
                "allow": ["docs.example.com"],
                "ttl": 60,
                "sinkhole_ipv4": "192.0.2.1",
                "sinkhole_ipv6": "2001:db8::1",
                "cname_inspection": False,
            },
            "cache": {"max_bytes": 10, "min_ttl": 5, "max_ttl": 50},
            "access": {"allow": ["192.0.2.0/24", "2001:db8::/32", "10.1.2.3"]},
            "logging": {"level": "debug", "format": "json"},
        },
        base_dir=Path("/etc/aiwall"),
    )
    assert [str(e) for e in config.listen.dns] == ["0.0.0.0:53", "[::]:53"]
    # Whole numbers are fine where a float is expected, and come out as floats.
    assert config.listen.tcp_idle_timeout == 5.0
    assert isinstance(config.upstream.timeout, float)
    assert config.upstream.conditional == {
        "corp.example": (UpstreamServer(DnsEndpoint("10.0.0.53", 53)),)
    }
    # Parsed once, where the config is read: networks and addresses are typed values.
    assert [str(n) for n in config.access.allow] == ["192.0.2.0/24", "2001:db8::/32", "10.1.2.3/32"]
    assert config.blocking.response == "sinkhole"
    assert config.blocking.cname_inspection is False
    assert config.list_paths() == (Path("/etc/aiwall/extra.txt"),)


def test_a_lone_string_where_a_list_belongs_is_one_item():
    config = config_from_mapping(
        {
            "listen": {"dns": "[::1]:5353"},
            "blocking": {"lists": "extra.txt"},
            "upstream": {"conditional": {"corp.example": "10.0.0.53"}},
        }
    )
    assert config.listen.dns == (DnsEndpoint("::1", 5353),)
    assert [local.path for local in config.blocking.lists] == ["extra.txt"]
    assert [str(s) for s in config.upstream.conditional["corp.example"]] == ["10.0.0.53:53"]


# --- unknown keys ---------------------------------------------------------------------------


def test_unknown_top_level_key():
    message = error_of({"blockin": {}})
    assert message.startswith("blockin: unknown key")
    assert "blocking" in message


def test_unknown_nested_key():
    message = error_of({"blocking": {"respones": "nxdomain"}})
    assert message.startswith("blocking.respones: unknown key")
    assert "response" in message


def test_internal_field_is_not_a_key():
    assert error_of({"base_dir": "/tmp"}).startswith("base_dir: unknown key")


# --- wrong values ---------------------------------------------------------------------------


def test_bad_enum_value_names_the_expected_values():
    message = error_of({"blocking": {"response": "block"}})
    assert message.startswith("blocking.response:")
    for mode in ("nxdomain", "sinkhole", "nodata", "refused"):
        assert repr(mode) in message
    assert "'block'" in message


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"cache": {"max_bytes": "5"}}, "cache.max_bytes"),
        ({"cache": {"max_bytes": True}}, "cache.max_bytes"),
        ({"cache": {"max_bytes": 1.5}}, "cache.max_bytes"),
        ({"blocking": {"ttl": "300"}}, "blocking.ttl"),
        ({"listen": {"tcp_idle_timeout": "1"}}, "listen.tcp_idle_timeout"),
        ({"listen": {"tcp_idle_timeout": False}}, "listen.tcp_idle_timeout"),
        ({"blocking": {"cname_inspection": "yes"}}, "blocking.cname_inspection"),
        ({"blocking": {"cname_inspection": 1}}, "blocking.cname_inspection"),
        ({"listen": {"http": 9153}}, "listen.http"),
        ({"listen": {"dns": [53]}}, "listen.dns[0]"),
        ({"listen": {"dns": {"a": 1}}}, "listen.dns"),
        ({"upstream": {"conditional": ["corp.example"]}}, "upstream.conditional"),
    ],
)
def test_wrong_types(raw, path):
    message = error_of(raw)
    assert message.startswith(f"{path}: expected")


@pytest.mark.parametrize("raw", [[], "text", 5])
def test_a_section_that_is_not_a_mapping(raw):
    assert error_of({"listen": raw}).startswith("listen: expected a mapping")


def test_a_config_that_is_not_a_mapping():
    assert error_of(["listen"]).startswith("config: expected a mapping")


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"listen": {"dns": ["127.0.0.1:5353", "localhost:53"]}}, "listen.dns[1]"),
        ({"listen": {"dns": ["127.0.0.1:65536"]}}, "listen.dns[0]"),
        ({"listen": {"dns": ["127.0.0.1:"]}}, "listen.dns[0]"),
        ({"listen": {"dns": ["[::1"]}}, "listen.dns[0]"),
        ({"listen": {"dns": ["[::1]x"]}}, "listen.dns[0]"),
        ({"listen": {"dns": ["[::1]553"]}}, "listen.dns[0]"),
        ({"listen": {"dns": []}}, "listen.dns"),
        ({"listen": {"http": "web:80"}}, "listen.http"),
        ({"upstream": {"servers": ["1.1.1.1", "dns.example"]}}, "upstream.servers[1]"),
        # "system" counts: the index is that of the entry as written.
        ({"upstream": {"servers": ["system", "999.1.1.1"]}}, "upstream.servers[1]"),
        ({"upstream": {"servers": []}}, "upstream.servers"),
        (
            {"upstream": {"conditional": {"corp.example": ["10.0.0.1", "nope"]}}},
            "upstream.conditional.corp.example[1]",
        ),
        ({"upstream": {"conditional": {"corp.example": []}}}, "upstream.conditional.corp.example"),
        ({"upstream": {"conditional": {"bad..name": ["10.0.0.1"]}}}, "upstream.conditional"),
    ],
)
def test_bad_addresses(raw, path):
    message = error_of(raw)
    assert message.startswith(f"{path}: expected")


@pytest.mark.parametrize("network", ["10.0.0.0/33", "lan", "300.0.0.0/8", "fe80::/129"])
def test_bad_cidr_in_access_allow(network):
    message = error_of({"access": {"allow": ["10.0.0.0/8", network]}})
    assert message.startswith("access.allow[1]: expected a network")
    assert repr(network) in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sinkhole_ipv4", "::"),
        ("sinkhole_ipv4", "0.0.0.256"),
        ("sinkhole_ipv6", "0.0.0.0"),
        ("sinkhole_ipv6", "sinkhole"),
    ],
)
def test_bad_sinkhole_addresses(key, value):
    message = error_of({"blocking": {key: value}})
    kind = "IPv4" if key.endswith("4") else "IPv6"
    assert message.startswith(f"blocking.{key}: expected an {kind} address")


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"blocking": {"allow": ["ok.example", "not a name"]}}, "blocking.allow[1]"),
        ({"blocking": {"canaries": ["-bad.example"]}}, "blocking.canaries[0]"),
        ({"blocking": {"ttl": -1}}, "blocking.ttl"),
        ({"cache": {"max_bytes": -1}}, "cache.max_bytes"),
        ({"cache": {"min_ttl": 500, "max_ttl": 100}}, "cache.min_ttl"),
        ({"listen": {"tcp_idle_timeout": 0}}, "listen.tcp_idle_timeout"),
        ({"upstream": {"timeout": 60}}, "upstream.timeout"),
        ({"logging": {"format": "xml"}}, "logging.format"),
        ({"cache": {"stale_ttl": 0}}, "cache.stale_ttl"),
        ({"cache": {"max_stale": -1}}, "cache.max_stale"),
        ({"cache": {"stale_client_timeout": 31}}, "cache.stale_client_timeout"),
        ({"ratelimit": {"rate": -1}}, "ratelimit.rate"),
        ({"ratelimit": {"burst": 0}}, "ratelimit.burst"),
        ({"ratelimit": {"slip": 101}}, "ratelimit.slip"),
        ({"ratelimit": {"ipv4_prefix": 33}}, "ratelimit.ipv4_prefix"),
        ({"ratelimit": {"ipv6_prefix": 8}}, "ratelimit.ipv6_prefix"),
        ({"ratelimit": {"max_prefixes": 0}}, "ratelimit.max_prefixes"),
        ({"api": {"token": "short"}}, "api.token"),
        ({"api": {"token": "has spaces in the middle of it"}}, "api.token"),
    ],
)
def test_bad_values(raw, path):
    assert error_of(raw).startswith(f"{path}: expected")


# --- reliability sections ------------------------------------------------------------------


def test_reliability_defaults():
    config = Config()
    assert (config.cache.stale_ttl, config.cache.max_stale) == (30, 86_400)
    assert config.cache.stale_client_timeout == 1.8
    assert config.ratelimit.rate == 0  # off unless set: the limit depends on the network
    assert (config.ratelimit.ipv4_prefix, config.ratelimit.ipv6_prefix) == (24, 56)
    assert config.api_token() == ""


def test_api_token_and_token_file_are_exclusive(tmp_path):
    assert error_of({"api": {"token": "a" * 32, "token_file": "t"}}).startswith(
        "api: set token or token_file, not both"
    )


def test_api_token_file_is_read_relative_to_the_config(tmp_path):
    (tmp_path / "token").write_text("s3cret-token-0123456789\n")
    config = config_from_mapping({"api": {"token_file": "token"}}, base_dir=tmp_path)
    assert config.api_token() == "s3cret-token-0123456789"
    # Never in a repr that could end up in a log line.
    assert "s3cret" not in repr(config_from_mapping({"api": {"token": "s3cret-token-0123456789"}}))


def test_a_missing_or_bad_api_token_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"^api.token_file: cannot read"):
        config_from_mapping({"api": {"token_file": "absent"}}, base_dir=tmp_path)
    (tmp_path / "weak").write_text("1234\n")
    with pytest.raises(ConfigError, match=r"^api.token_file .*: expected at least 16"):
        config_from_mapping({"api": {"token_file": "weak"}}, base_dir=tmp_path)


# --- endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4", ("1.2.3.4", 53)),
        ("1.2.3.4:5353", ("1.2.3.4", 5353)),
        ("[::1]:54", ("::1", 54)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
        (" 10.0.0.1:53 ", ("10.0.0.1", 53)),
    ],
)
def test_an_endpoint_takes_its_default_port(text, expected):
    endpoint = DnsEndpoint.parse(text)
    assert (endpoint.host, endpoint.port) == expected
    assert HttpEndpoint.parse("127.0.0.1").port == 9153


# --- load_config ----------------------------------------------------------------------------


def test_load_config_missing_file_names_the_file(tmp_path):
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(str(path))


def test_load_config_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("blocking:\n  response: [nxdomain\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: not valid YAML")


def test_load_config_reads_yaml_and_resolves_lists_against_its_folder(tmp_path):
    path = tmp_path / "aiwall.yaml"
    path.write_text(
        "blocking:\n  response: refused\n  lists: [lists/extra.txt]\n", encoding="utf-8"
    )
    config = load_config(path)
    assert config.blocking.response == "refused"
    assert config.list_paths() == (tmp_path.resolve() / "lists" / "extra.txt",)


def test_load_config_empty_file_is_the_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    assert load_config(path).blocking == Config().blocking


def test_load_config_bad_value_names_the_key(tmp_path):
    path = tmp_path / "aiwall.yaml"
    path.write_text("cache:\n  max_bytes: lots\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^cache\.max_bytes: expected a whole number"):
        load_config(path)


# --- system_nameservers ---------------------------------------------------------------------


def test_system_nameservers(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(
        """\
# generated by something
; also a comment
search corp.example
nameserver 192.0.2.53
#nameserver 192.0.2.99
nameserver fe80::1%eth0
nameserver\t2001:db8::53   # trailing comment
nameserver not-an-address
nameserver
options edns0
""",
        encoding="utf-8",
    )
    assert system_nameservers(resolv) == ("192.0.2.53:53", "[fe80::1]:53", "[2001:db8::53]:53")


def test_system_nameservers_results_are_valid_upstreams(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\nnameserver ::1\n", encoding="utf-8")
    servers = system_nameservers(resolv)
    assert [DnsEndpoint.parse(server) for server in servers] == [
        DnsEndpoint("127.0.0.53", 53),
        DnsEndpoint("::1", 53),
    ]
    config_from_mapping({"upstream": {"servers": list(servers)}})


def test_system_nameservers_missing_file(tmp_path):
    assert system_nameservers(tmp_path / "nope.conf") == ()


def test_available_cpus_honours_a_container_quota(tmp_path):
    from resolver.config import available_cpus

    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert available_cpus(quota) == min(2, available_cpus(tmp_path / "none"))
    quota.write_text("max 100000\n")
    assert available_cpus(quota) == available_cpus(tmp_path / "none")


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("blocking:\n  catalog: all\nlisten: {}\nblocking:\n  catalog: none\n")
    with pytest.raises(ConfigError, match=r"'blocking' appears twice .*line 1 and line 4"):
        load_config(path)


def test_unquoted_dates_and_times_are_read_where_a_date_is_meant(tmp_path):
    path = tmp_path / "until.yaml"
    path.write_text(
        "blocking:\n  catalog:\n    block: {all: true}\n"
        "    allow: {services: [deepseek], until: 2026-12-31}\n"
        "    report: {services: [kimi], until: 2026-12-31T18:00:00Z}\n"
    )
    config = load_config(path)
    assert str(config.blocking.catalog.allow.until) == "2026-12-31"
    assert config.blocking.catalog.allow.expires_at == 1798761600.0  # 2027-01-01T00:00Z
    assert config.blocking.catalog.report.expires_at == 1798740000.0


def test_a_local_list_takes_a_path_or_a_mapping_with_its_guard(tmp_path):
    config = config_from_mapping(
        {"blocking": {"lists": ["a.txt", {"path": "b.txt", "max_shrink": 0.9}]}},
        base_dir=tmp_path,
    )
    assert [(local.path, local.max_shrink) for local in config.blocking.lists] == [
        ("a.txt", 0.5),
        ("b.txt", 0.9),
    ]
    with pytest.raises(ConfigError, match=r"blocking.lists\[0\].max_invalid"):
        config_from_mapping({"blocking": {"lists": [{"path": "a", "max_invalid": 2}]}})


# --- one TCP port, one listener -----------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "key", "first"),
    [
        # DoT and DoH on one port: both bind (SO_REUSEADDR), the second listen fails.
        ({"dot": ["127.0.0.1:8853"], "doh": ["127.0.0.1:8853"]}, "doh[0]", "dot[0]"),
        # A DNS address takes TCP too.
        ({"dns": ["127.0.0.1:53"], "dot": ["127.0.0.1:53"]}, "dot[0]", "dns[0]"),
        ({"dns": ["127.0.0.1:53", "127.0.0.1:53"]}, "dns[1]", "dns[0]"),
        # A wildcard covers every address of its family.
        ({"dns": ["0.0.0.0:53"], "http": "127.0.0.1:53"}, "http", "dns[0]"),
        ({"dns": ["[::1]:5353"], "doh": ["[::]:5353"]}, "doh[0]", "dns[0]"),
    ],
)
def test_two_listeners_on_one_tcp_port_are_refused_naming_both(listen, key, first):
    message = error_of({"listen": listen})
    assert message.startswith(f"listen.{key}: expected an address and port of its own")
    assert f"listen.{first}" in message


@pytest.mark.parametrize(
    "listen",
    [
        {"dns": ["127.0.0.1:53", "127.0.0.2:53"], "http": "127.0.0.1:9153"},
        # [::] is bound IPv6-only, so 0.0.0.0 and [::] sit side by side.
        {"dns": ["0.0.0.0:53", "[::]:53"], "http": "127.0.0.1:9153"},
        # Port 0: each takes a free port of its own.
        {"dns": ["127.0.0.1:0", "127.0.0.1:0"], "http": "127.0.0.1:0"},
    ],
)
def test_listeners_on_distinct_addresses_or_ports_are_accepted(listen):
    config = config_from_mapping({"listen": listen})
    assert len(config.listen.dns) == len(listen["dns"])
