"""A loopback port for servers that cannot take port 0."""

from __future__ import annotations

import socket
from collections import deque

# The ports handed out lately in this process. The kernel may give the same port to two
# calls in a row (each probe socket is closed before the next call), and a test that
# asks for two ports (DoT and DoH) then got one port twice: the server failed to listen
# on the second (seen once in CI, 2026-11-30). Bounded, so a long run never exhausts
# the ephemeral range.
_RECENT: deque[int] = deque(maxlen=1000)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (DNS servers listen on both), and
    not handed out by a recent call in this process.

    Another process may take it before the caller binds it; tests accept that tiny race.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            if port in _RECENT:
                continue
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken for TCP only: try another
            _RECENT.append(port)
            return port
    raise OSError("no port free for both UDP and TCP on 127.0.0.1")
