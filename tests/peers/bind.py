"""BIND ``named`` (Debian ``bind9``) as a secondary of aiwall's RPZ zone, with TSIG and
NOTIFY, forwarding every other name to the test's upstream."""

from __future__ import annotations

from collections.abc import Sequence

from tests.peers.rpzpeer import ResolverPeer


class Bind(ResolverPeer):
    program = "named"

    def command(self, binary: str) -> Sequence[str]:
        conf = self.directory / "named.conf"
        conf.write_text(self.conf())
        return [binary, "-g", "-c", str(conf)]

    def conf(self) -> str:
        feed, (upstream, upstream_port), (primary, primary_port) = (
            self.feed,
            self.upstream,
            self.feed.primary,
        )
        return f"""\
options {{
    directory "{self.directory}";
    pid-file "{self.directory}/named.pid";
    listen-on port {self.port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-query {{ any; }};
    forwarders {{ {upstream} port {upstream_port}; }};
    forward only;
    dnssec-validation no;
    notify no;
    # min-update-interval 0: apply each new serial at once (BIND waits 60 s by default).
    response-policy {{ zone "{feed.zone}" min-update-interval 0; }} qname-wait-recurse no;
}};
controls {{ }};
key "{feed.key_name}" {{
    algorithm hmac-sha256;
    secret "{feed.secret}";
}};
zone "{feed.zone}" {{
    type secondary;
    primaries {{ {primary} port {primary_port} key "{feed.key_name}"; }};
    file "{self.directory}/rpz.db";
    allow-notify {{ {primary}; }};
}};
"""
