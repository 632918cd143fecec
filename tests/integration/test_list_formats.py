"""Every list format admins already have, loaded into the running server.

One small sample of each real format (written here, in the shape the published lists
have: a hosts file like StevenBlack's, a hagezi-style wildcard list, an AdGuard DNS
filter, dnsmasq, Unbound and RPZ exports, Surge sets), each configured as the admin
would, some with ``format`` named and some left to ``auto``; then asked with dnspython.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from tests.peers.listserver import ListServer
from tests.support import RunningServer, ask

SAMPLES = {
    "plain.txt": (
        "auto",
        """\
# plain domains, one a line
plain-a.test
*.plain-sub.test
""",
    ),
    "hosts.txt": (
        "auto",
        """\
# Title: a StevenBlack-style hosts file
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
0.0.0.0 0.0.0.0

# [tracker]
0.0.0.0 hosts-a.test#glued comment
0.0.0.0 hosts-b.test bad..name hosts-c.test
0.0.0.0\thosts-d.test # spaced comment
""",
    ),
    "wildcard.txt": (
        "auto",
        """\
# Title: a hagezi-style wildcard list
# Syntax: *.domain
*.wild-a.test
*.wild-b.test
*.wild-c.test
""",
    ),
    "adguard.txt": (
        "adblock",
        """\
[Adblock Plus 2.0]
! Title: an AdGuard DNS filter
||ag-a.test^
||ag-b.test
.ag-sub.test^
|ag-exact.test^
||*.ag-star.test^
||ag-imp.test^$important
@@||open.ag-imp.test^
||ag-cut.test^
@@||open.ag-cut.test^
@@||ag-free.test^$important
||deep.ag-free.test^
||ag-bad.test^
||ag-bad.test^$badfilter
/ad[0-9]+\\.ag-regex\\.test/
ag-cosmetic.test##.banner
||ag-path.test/ads/*
||ag-mod.test^$third-party
""",
    ),
    "dnsmasq.conf": (
        "dnsmasq",
        """\
# dnsmasq blocklist
address=/dm-a.test/
address=/dm-b.test/#
server=/dm-c.test/
local=/dm-d.test/
server=/open.dm-a.test/#
server=/dm-fwd.test/192.0.2.53
""",
    ),
    "unbound.conf": (
        "auto",
        """\
server:
  local-zone: "ub-a.test." always_nxdomain
  local-zone: "ub-b.test." redirect
  local-data: "ub-b.test. A 0.0.0.0"
  local-zone: "open.ub-a.test." always_transparent
  local-zone: "ub-c.test." nodefault
""",
    ),
    "policy.rpz": (
        "rpz",
        """\
$TTL 300
@ SOA localhost. hostmaster.localhost. ( 1 3600 600 86400 300 )
@ NS localhost.
rpz-a.test CNAME .
*.rpz-a.test CNAME .
*.rpz-sub.test CNAME *.
open.rpz-a.test CNAME rpz-passthru.
*.open.rpz-a.test CNAME rpz-passthru.
32.1.2.0.192.rpz-ip CNAME .
""",
    ),
    "surge.list": (
        "auto",
        """\
# Surge DOMAIN-SET
.surge-a.test
.surge-b.test
surge-c.test
""",
    ),
    "surge-rules.list": (
        "surge",
        """\
DOMAIN-SUFFIX,rules-a.test
DOMAIN,rules-b.test
DOMAIN-KEYWORD,rules
""",
    ),
    "idn.txt": (
        "auto",
        """\
faß.test
0.0.0.0 bücher.test
""",
    ),
}

BLOCKED = [
    "plain-a.test",
    "x.plain-a.test",
    "x.plain-sub.test",
    "hosts-a.test",
    "hosts-b.test",
    "hosts-c.test",
    "hosts-d.test",
    # A wildcard list blocks the apex of every line as well.
    "wild-a.test",
    "x.wild-b.test",
    "wild-c.test",
    "ag-a.test",
    "x.ag-b.test",
    "x.ag-sub.test",
    "ag-exact.test",
    "x.ag-star.test",
    "ag-imp.test",
    "open.ag-imp.test",  # its exception is beaten by $important
    "ag-cut.test",
    "dm-a.test",
    "x.dm-b.test",
    "dm-c.test",
    "dm-d.test",
    "ub-a.test",
    "x.ub-b.test",
    "rpz-a.test",
    "x.rpz-a.test",
    "x.rpz-sub.test",
    "surge-a.test",
    "x.surge-b.test",
    "surge-c.test",
    "rules-a.test",
    "x.rules-a.test",
    "rules-b.test",
    "xn--fa-hia.test",  # faß, as browsers look it up (not "fass")
    "xn--bcher-kva.test",
]

NOT_BLOCKED = [
    "plain-sub.test",  # "*.name" in a plain list: the subdomains only
    "ag-sub.test",
    "ag-star.test",
    "open.ag-cut.test",  # the list's own exception
    "ag-free.test",
    "deep.ag-free.test",  # an @@...$important exception beats a deeper block
    "ag-bad.test",  # cancelled by $badfilter
    "ad1.ag-regex.test",
    "ag-cosmetic.test",
    "ag-path.test",
    "ag-mod.test",
    "open.dm-a.test",  # server=/name/#: forwarded as usual
    "dm-fwd.test",  # server=/name/ADDRESS: routing, not a block
    "open.ub-a.test",
    "ub-c.test",
    "rpz-sub.test",
    "open.rpz-a.test",
    "x.open.rpz-a.test",
    "fass.test",
]


@pytest.fixture
def list_files(tmp_path: Path) -> list[dict[str, str]]:
    configured = []
    for name, (list_format, text) in SAMPLES.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        entry = {"path": str(path)}
        if list_format != "auto":
            entry["format"] = list_format
        configured.append(entry)
    return configured


@pytest.fixture
def served(list_files, start_server) -> Iterator[RunningServer]:
    remote = "||remote-a.test^\n||remote-b.test^$badfilter\n||remote-b.test^\n/x/\n"
    with ListServer({"/filter.txt": remote}) as lists:
        yield start_server(
            blocking={
                "lists": list_files,
                "remote_lists": [
                    {"url": lists.url("/filter.txt"), "name": "filter", "format": "adblock"}
                ],
            }
        )


def test_every_format_blocks_what_it_says_and_nothing_more(served):
    wrong = [name for name in BLOCKED if ask(served, name).rcode() != dns.rcode.NXDOMAIN]
    assert wrong == []
    wrong = [name for name in NOT_BLOCKED if ask(served, name).rcode() != dns.rcode.NOERROR]
    assert wrong == []
    assert ask(served, "remote-a.test").rcode() == dns.rcode.NXDOMAIN
    assert ask(served, "remote-b.test").rcode() == dns.rcode.NOERROR


def skipped(server: RunningServer, source: str, kind: str) -> float:
    return server.metric("aiwall_list_skipped_lines", source=source, **{"class": kind})


def test_skipped_lines_are_counted_per_list_and_class(served):
    assert skipped(served, "list:adguard.txt", "regex") == 1
    assert skipped(served, "list:adguard.txt", "cosmetic") == 1
    assert skipped(served, "list:adguard.txt", "pattern") == 1
    assert skipped(served, "list:adguard.txt", "modifier") == 1
    assert skipped(served, "list:hosts.txt", "invalid_name") == 1
    assert skipped(served, "list:dnsmasq.conf", "forward") == 1
    assert skipped(served, "list:unbound.conf", "unsupported") == 1
    assert skipped(served, "list:policy.rpz", "unsupported") == 1
    assert skipped(served, "list:surge-rules.list", "pattern") == 1
    assert skipped(served, "remote:filter", "regex") == 1
    # Every class of every list is there, at zero when nothing was skipped.
    plain = [
        line
        for line in served.metrics_text().splitlines()
        if line.startswith("aiwall_list_skipped_lines{") and '"list:plain.txt"' in line
    ]
    assert len(plain) == 9
    assert all(line.endswith(" 0.0") for line in plain)


def test_a_list_that_turns_into_another_format_keeps_its_last_good_copy(start_from_file, tmp_path):
    listed = tmp_path / "hosts.txt"
    listed.write_text("".join(f"0.0.0.0 n{index}.guard.test\n" for index in range(50)))
    server, _ = start_from_file(
        blocking={"lists": [{"path": str(listed), "format": "hosts"}]}, api={"token": "t" * 20}
    )
    assert ask(server, "n7.guard.test").rcode() == dns.rcode.NXDOMAIN
    # The publisher switched to AdBlock syntax: not read anew under "format: hosts".
    listed.write_text("".join(f"||n{index}.guard.test^\n" for index in range(50)))
    status, body = server.post("/api/reload", token="t" * 20)
    assert status == 422, body
    assert "other_format 50 (lines 1, 2, 3, 4, 5, ...)" in body
    assert ask(server, "n7.guard.test").rcode() == dns.rcode.NXDOMAIN
    failures = server.metric(
        "aiwall_list_refresh_failures_total", source="list:hosts.txt", reason="parse"
    )
    assert failures == 1
