"""DDR (RFC 9462) end to end: a plain-DNS client discovers our DoT and DoH, and then
uses what it found; never an upstream's endpoints."""

from __future__ import annotations

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rdtypes.svcbbase as svcb

from tests.integration.test_serve_tls import NAME, client_context, tls_server  # noqa: F401
from tests.support import ask


def test_discovered_endpoints_answer(tls_server, upstream):  # noqa: F811
    server, ca, dot, _ = tls_server()
    reply = ask(server, "_dns.resolver.arpa", "SVCB")
    assert reply.rcode() == dns.rcode.NOERROR
    records = {r.params[svcb.ParamKey.ALPN].ids: r for r in reply.answer[0]}
    found_dot = records[(b"dot",)]
    found_doh = records[(b"h2", b"http/1.1")]
    assert found_dot.target.to_text() == f"{NAME}."
    assert found_dot.params[svcb.ParamKey.PORT].port == dot
    assert list(found_dot.params[svcb.ParamKey.IPV4HINT].addresses) == ["127.0.0.1"]
    assert found_doh.params[svcb.ParamKey.DOHPATH].value == b"/dns-query{?dns}"
    # Use what was discovered: DoT at the announced port, verified against the name.
    port = found_dot.params[svcb.ParamKey.PORT].port
    answered = dns.query.tls(
        dns.message.make_query("chat.deepseek.com", "A"),
        "127.0.0.1",
        port=port,
        timeout=5,
        ssl_context=client_context(ca, ["dot"]),
        server_hostname=found_dot.target.to_text().rstrip("."),
    )
    assert answered.rcode() == dns.rcode.NXDOMAIN
    # The canary that turns browsers' own DoH off still works beside DDR.
    assert ask(server, "use-application-dns.net").rcode() == dns.rcode.NXDOMAIN
    assert upstream.answer_count("_dns.resolver.arpa") == 0


def test_without_dot_or_doh_nodata_never_forwarded(start_server, upstream):
    server = start_server()
    upstream.set_records("_dns.resolver.arpa", "A", ["192.0.2.66"])  # must never be seen
    for rdtype in ("SVCB", "A", "HTTPS"):
        reply = ask(server, "_dns.resolver.arpa", rdtype)
        assert (reply.rcode(), reply.answer) == (dns.rcode.NOERROR, []), rdtype
    assert upstream.answer_count("_dns.resolver.arpa") == 0
    assert ask(server, "use-application-dns.net").rcode() == dns.rcode.NXDOMAIN
