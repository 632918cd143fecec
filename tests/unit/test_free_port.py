"""The tests' port helper never hands out one port twice in a row."""

from __future__ import annotations

from tests.peers.ports import free_port


def test_many_free_ports_in_a_row_are_all_different() -> None:
    # Without the memory of recent ports, the kernel's picks repeated within a few
    # thousand calls; a test asking for two ports then got one twice.
    ports = [free_port() for _ in range(900)]
    assert len(set(ports)) == len(ports)
