"""Client groups: which policy applies to which client, by the most specific network."""

from __future__ import annotations

from dataclasses import dataclass

from resolver.clients import NetworkMap
from resolver.config import ClientNetwork
from resolver.dns.responses import BlockAnswers
from resolver.policy.blocklist import Blocklist


@dataclass(slots=True)
class Group:
    name: str
    blocklist: Blocklist
    answers: BlockAnswers
    mode: str  # "enforce" or "report"


class ClientGroups:
    def __init__(
        self,
        default: Group,
        groups: list[tuple[tuple[ClientNetwork, ...], Group]] | None = None,
    ) -> None:
        self.default = default
        # Until when this version of the policy is right (Unix time; None: for good), and
        # the version that follows: built with this one, so an expiring temporary rule
        # is a switch that cannot fail (see resolver.policy.loading).
        self.valid_until: float | None = None
        self.successor: ClientGroups | None = None
        self.all = [default] + [group for _, group in groups or ()]
        self._networks = NetworkMap(
            ((network.network, group) for clients, group in groups or () for network in clients),
            default,
        )

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
        return self._networks.lookup(client) if client else self.default
