"""Asking the real resolvers, and knowing which of them are alive.

Owns: the forwarder with its RFC 5452 checks (``forwarder``) and upstream health decided
by the server's own probes (``health``).

May import ``resolver.dns``, ``resolver.config``, ``resolver.metrics`` and
``resolver.shared`` (the health board the workers share).
"""
