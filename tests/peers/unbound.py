"""Unbound (Debian ``unbound``) following aiwall's RPZ zone as a secondary (``rpz:`` with
``primary:``), forwarding every other name to the test's upstream. Unbound 1.17 cannot
sign transfers with TSIG: its zone is served to its address only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.peers.rpzpeer import ResolverPeer


class Unbound(ResolverPeer):
    program = "unbound"

    def command(self, binary: str) -> Sequence[str]:
        conf = self.directory / "unbound.conf"
        conf.write_text(self.conf())
        return [binary, "-d", "-c", str(conf)]

    def conf(self) -> str:
        primary, primary_port = self.feed.primary
        listening = f"    interface: 127.0.0.1@{self.port}\n    port: {self.port}\n"
        # rpz needs the respip module
        return unbound_conf(self.directory, self.upstream, listening, "respip iterator") + (
            f"""\
rpz:
    name: "{self.feed.zone}"
    # the primary may NOTIFY without allow-notify; IXFR, else AXFR, over TCP
    primary: {primary}@{primary_port}
    zonefile: "{self.directory}/rpz.zone"
"""
        )


def unbound_conf(
    directory: Path, upstream: tuple[str, int], listening: str, modules: str, extra: str = ""
) -> str:
    """An unbound.conf for a test peer: ``listening`` (server: lines), run in the
    foreground from ``directory``, forwarding every name to ``upstream``."""
    host, port = upstream
    return f"""\
server:
{listening}    do-ip6: no
    username: ""
    chroot: ""
    directory: "{directory}"
    pidfile: "{directory}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    do-not-query-localhost: no
    module-config: "{modules}"
{extra}remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: {host}@{port}
"""
