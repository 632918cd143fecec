"""Client groups: which policy applies to which client, by the most specific network."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from resolver.dns.model import Answer
from resolver.dns.responses import BlockAnswers
from resolver.policy.blocklist import Blocklist

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Decisions are remembered per client address; a flood of spoofed sources only costs a
# cleared dict.
_MEMO_LIMIT = 65_536


@dataclass(slots=True)
class Group:
    name: str
    blocklist: Blocklist
    answers: BlockAnswers
    mode: str  # "enforce" or "report"
    # Block answers already built for this group, by (name, type): the same banned names
    # are asked over and over, and an answer depends on nothing else (the codec adds each
    # client's ID, flags and question case).
    built: dict[tuple[bytes, int], Answer] = field(default_factory=dict)


class ClientGroups:
    def __init__(
        self, default: Group, groups: list[tuple[tuple[str, ...], Group]] | None = None
    ) -> None:
        self.default = default
        # Until when this version of the policy is right (Unix time; None: for good), and
        # the version that follows: built with this one, so an expiring temporary rule
        # is a switch that cannot fail (see resolver.policy.loading).
        self.valid_until: float | None = None
        self.successor: ClientGroups | None = None
        self.all = [default] + [group for _, group in groups or ()]
        networks = [
            (ipaddress.ip_network(network, strict=False), group)
            for clients, group in groups or ()
            for network in clients
        ]
        # Most specific first: the first network that holds a client decides its group.
        networks.sort(key=lambda item: item[0].prefixlen, reverse=True)
        self._networks = networks
        self._memo: dict[str, Group] = {}

    @property
    def entries_by_source(self) -> dict[str, int]:
        return self.default.blocklist.entries_by_source

    @property
    def loaded_at(self) -> float:
        return self.default.blocklist.loaded_at

    def release(self) -> None:
        """Free a retired policy piece by piece, later versions included (the groups and
        the versions share their large lists)."""
        version: ClientGroups | None = self
        while version is not None:
            for group in version.all:
                group.blocklist.names.release()
            version = version.successor

    def in_force(self, now: float) -> ClientGroups:
        """The version of this policy that applies at ``now`` (Unix time)."""
        version = self
        while version.valid_until is not None and now >= version.valid_until:
            assert version.successor is not None
            version = version.successor
        return version

    def by_name(self, name: str) -> Group | None:
        return next((group for group in self.all if group.name == name), None)

    def group_for(self, client: str) -> Group:
        group = self._memo.get(client)
        if group is None:
            group = self._lookup(client)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[client] = group
        return group

    def _lookup(self, client: str) -> Group:
        if not self._networks or not client:
            return self.default
        try:
            address = ipaddress.ip_address(client.split("%", 1)[0])
        except ValueError:
            return self.default
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        for network, group in self._networks:
            if address.version == network.version and address in network:
                return group
        return self.default
