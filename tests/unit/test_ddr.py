"""The DDR handler (RFC 9462): SVCB records for our DoT/DoH, parsed back by dnspython;
nothing under resolver.arpa ever passes on to the next stage (it would be forwarded)."""

from __future__ import annotations

from pathlib import Path

import dns.rdatatype
import dns.rdtypes.svcbbase as svcb
import pytest

from resolver.config import Config, config_from_mapping
from resolver.dns.model import Answer
from resolver.handlers.ddr import DdrHandler
from tests.peers.tlsca import TestCA
from tests.unit.handler_support import FakeNext, decode, make_query


def _config(tmp_path: Path, **listen: object) -> Config:
    issued = TestCA(tmp_path).issue(["dns.test"])
    tls = {"certificate": str(issued.certificate), "key": str(issued.key), "name": "dns.test"}
    return config_from_mapping({"listen": listen, "tls": tls}, base_dir=tmp_path)


def _ask(handler: DdrHandler, name: str, rdtype: str = "SVCB") -> object:
    query = make_query(name, rdtype)
    answer = handler.handle(query)
    assert isinstance(answer, Answer)
    return decode(query, answer, udp=False)


def test_svcb_records_for_dot_and_doh(tmp_path):
    config = _config(tmp_path, dot=["192.0.2.53:853", "[2001:db8::53]:853"], doh=["0.0.0.0:443"])
    following = FakeNext()
    reply = _ask(DdrHandler(config, following), "_dns.resolver.arpa")
    assert following.seen == []
    records = sorted(reply.answer[0], key=lambda r: r.priority)
    assert [r.rdtype for r in records] == [dns.rdatatype.SVCB] * 2
    dot, doh = records
    assert dot.target.to_text() == "dns.test."
    assert dot.params[svcb.ParamKey.ALPN].ids == (b"dot",)
    assert dot.params[svcb.ParamKey.PORT].port == 853
    assert [a for a in dot.params[svcb.ParamKey.IPV4HINT].addresses] == ["192.0.2.53"]
    assert [a for a in dot.params[svcb.ParamKey.IPV6HINT].addresses] == ["2001:db8::53"]
    assert doh.params[svcb.ParamKey.ALPN].ids == (b"h2", b"http/1.1")
    assert doh.params[svcb.ParamKey.PORT].port == 443
    assert doh.params[svcb.ParamKey.DOHPATH].value == b"/dns-query{?dns}"
    assert svcb.ParamKey.IPV4HINT not in doh.params  # a wildcard address: not known
    # The same for our own name (RFC 9461 2).
    assert len(_ask(DdrHandler(config, following), "_dns.dns.test").answer[0]) == 2


def test_without_encrypted_listeners_nodata_and_never_forwarded():
    following = FakeNext()
    handler = DdrHandler(config_from_mapping({}), following)
    for name, rdtype, rcode in [
        ("_dns.resolver.arpa", "SVCB", 0),
        ("_DNS.Resolver.Arpa", "A", 0),
        ("resolver.arpa", "SOA", 0),
        ("x._dns.resolver.arpa", "SVCB", 3),
    ]:
        reply = _ask(handler, name, rdtype)
        assert (reply.rcode(), reply.answer) == (rcode, []), name
    assert following.seen == []


@pytest.mark.parametrize("name", ["example.com", "notresolver.arpa", "arpa"])
def test_other_names_pass_on(name):
    following = FakeNext()
    DdrHandler(config_from_mapping({}), following).handle(make_query(name, "SVCB"))
    assert len(following.seen) == 1
