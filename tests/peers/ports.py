"""A loopback port for servers that cannot take port 0."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (DNS servers listen on both).

    Another process may take it before the caller binds it; tests accept that tiny race.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken for TCP only: try another
            return port
    raise OSError("no port free for both UDP and TCP on 127.0.0.1")
