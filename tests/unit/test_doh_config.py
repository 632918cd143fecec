"""The listen.dot / listen.doh / tls keys: errors name the key; the certificate is
loaded at load time, so a bad file stops the start."""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.rrset
import pytest

from resolver.config import ConfigError, config_from_mapping
from resolver.metrics import Metrics
from resolver.serve.doh import freshness
from resolver.serve.tls import TlsContexts
from tests.peers.tlsca import TestCA


def _error(raw: dict[str, object], base_dir: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, base_dir=base_dir)
    return str(caught.value)


def test_listeners_need_the_tls_files_and_name(tmp_path):
    assert _error({"listen": {"dot": ["127.0.0.1"]}}, tmp_path).startswith("tls.certificate:")
    issued = TestCA(tmp_path).issue(["dns.test"])
    tls = {"certificate": issued.certificate.name, "key": issued.key.name}
    assert _error({"listen": {"doh": ["127.0.0.1"]}, "tls": tls}, tmp_path).startswith("tls.name:")
    config = config_from_mapping(
        {"listen": {"doh": ["127.0.0.1"]}, "tls": {**tls, "name": "dns.test"}}, base_dir=tmp_path
    )
    assert config.listen.doh[0].port == 443  # the default ports of RFC 8484 and RFC 7858
    assert (
        config_from_mapping(
            {"listen": {"dot": ["::1"]}, "tls": {**tls, "name": "dns.test"}}, base_dir=tmp_path
        )
        .listen.dot[0]
        .port
        == 853
    )


def test_bad_certificate_files_name_the_key(tmp_path):
    issued = TestCA(tmp_path).issue(["dns.test"])
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    other = TestCA(tmp_path / "other").issue(["dns.test"])
    base = {"listen": {"dot": ["127.0.0.1"]}}
    for certificate, key in [
        ("junk.pem", issued.key.name),  # not PEM
        ("missing.pem", issued.key.name),  # no such file
        (issued.certificate.name, str(other.key)),  # a key that does not match
    ]:
        tls = {"certificate": certificate, "key": key, "name": "dns.test"}
        assert _error({**base, "tls": tls}, tmp_path).startswith("tls.certificate:"), certificate
    assert _error({"tls": {"certificate": "a.pem"}}, tmp_path).startswith("tls.key:")
    assert _error({"tls": {"name": "bad name!"}}, tmp_path).startswith("tls.name:")
    assert _error({"listen": {"doh_path": "dns"}}, tmp_path).startswith("listen.doh_path:")
    assert _error({"listen": {"dot": ["dns.test"]}}, tmp_path).startswith("listen.dot[0]:")


def test_a_bad_certificate_on_reload_keeps_the_one_in_force(tmp_path, caplog):
    ca = TestCA(tmp_path)
    issued = ca.issue(["dns.test"])
    raw = {
        "listen": {"dot": ["127.0.0.1:853"]},
        "tls": {"certificate": "server.pem", "key": "server.key", "name": "dns.test"},
    }
    config = config_from_mapping(raw, base_dir=tmp_path)
    metrics = Metrics()
    contexts = TlsContexts(metrics)
    assert contexts.load(config)
    first = contexts.dot
    assert contexts.load(config)
    assert contexts.dot is first  # unchanged files: kept as is
    issued.certificate.write_text("-----BEGIN CERTIFICATE-----\nbroken\n")
    assert not contexts.load(config)
    assert contexts.dot is first
    assert "keeping the one in force" in caplog.text
    sample = metrics.registry.get_sample_value
    assert sample("aiwall_tls_certificate_loads_total", {"result": "rejected"}) == 1
    ca.issue(["dns.test"])  # a good renewal
    assert contexts.load(config)
    assert contexts.dot is not first
    assert sample("aiwall_tls_certificate_loads_total", {"result": "success"}) == 2


def test_freshness_is_the_smallest_answer_ttl_or_the_negative_ttl():
    query = dns.message.make_query("a.example", "A")
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text("a.example.", 300, "IN", "CNAME", "b.example."))
    reply.answer.append(dns.rrset.from_text("b.example.", 60, "IN", "A", "192.0.2.1"))
    assert freshness(reply.to_wire()) == 60
    negative = dns.message.make_response(query)
    negative.authority.append(
        dns.rrset.from_text("example.", 900, "IN", "SOA", "ns. host. 1 2 3 4 120")
    )
    assert freshness(negative.to_wire()) == 120
    assert freshness(dns.message.make_response(query).to_wire()) == 0
    assert freshness(b"\0" * 5) == 0
