"""Who is asking: client addresses, and which configured network holds a client.

One matcher serves access control, client groups and the rate limiter, so an
IPv4-mapped address (``::ffff:10.0.0.7`` on a dual-stack socket) or a scoped one
(``fe80::1%eth0``) is read the same way everywhere.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final, Generic, TypeVar

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Value = TypeVar("Value")

# Decisions are remembered per client address; an office has a bounded number of
# clients, and a flood of spoofed sources only costs a cleared dict.
MEMO_LIMIT: Final = 65_536


def client_ip(client: str) -> Address | None:
    """The address a client really has: scope dropped, IPv4-mapped unwrapped; None for
    something that is not an address (an internal probe)."""
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class NetworkMap(Generic[Value]):
    """The value of the most specific network that holds a client, else ``default``."""

    def __init__(self, entries: Iterable[tuple[Network, Value]], default: Value) -> None:
        # Most specific first: the first network that holds a client decides.
        self._entries = sorted(entries, key=lambda item: item[0].prefixlen, reverse=True)
        self.default = default
        self._memo: dict[str, Value] = {}

    def __reduce__(
        self,
    ) -> tuple[type[NetworkMap[Value]], tuple[list[tuple[Network, Value]], Value]]:
        """Pickled as its arguments (client groups come from the builder process
        pickled): compiled (resolver.compiled), a class has no other way to be."""
        return NetworkMap, (self._entries, self.default)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, client: str) -> Value:
        value = self._memo.get(client)
        if value is None:
            value = self._find(client)
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            self._memo[client] = value
        return value

    def _find(self, client: str) -> Value:
        address = client_ip(client) if self._entries else None
        if address is None:
            return self.default
        for network, value in self._entries:
            if address.version == network.version and address in network:
                return value
        return self.default
