"""PowerDNS Recursor 4.8 (Debian ``pdns-recursor``) following aiwall's RPZ zone with
``rpzPrimary`` and TSIG, forwarding every other name to the test's upstream. It ignores
NOTIFY for RPZ: it asks for the SOA every ``refresh`` seconds (IXFR when it changed)."""

from __future__ import annotations

from collections.abc import Sequence

from tests.peers.rpzpeer import ResolverPeer

REFRESH = 1  # seconds between SOA checks


class PdnsRecursor(ResolverPeer):
    program = "pdns_recursor"

    def command(self, binary: str) -> Sequence[str]:
        (self.directory / "rpz.lua").write_text(self.lua())
        (upstream, upstream_port) = self.upstream
        return [
            binary,
            "--config-dir=" + str(self.directory),
            "--socket-dir=" + str(self.directory),
            "--local-address=127.0.0.1",
            f"--local-port={self.port}",
            f"--forward-zones-recurse=.={upstream}:{upstream_port}",
            "--dnssec=off",
            "--daemon=no",
            "--write-pid=no",
            "--threads=1",
            "--disable-syslog",
            "--loglevel=6",
            "--lua-config-file=" + str(self.directory / "rpz.lua"),
        ]

    def lua(self) -> str:
        feed = self.feed
        host, port = feed.primary
        return (
            f'rpzPrimary({{"{host}:{port}"}}, "{feed.zone}", '
            f'{{tsigname="{feed.key_name}", tsigalgo="hmac-sha256", '
            f'tsigsecret="{feed.secret}", refresh={REFRESH}}})\n'
        )
