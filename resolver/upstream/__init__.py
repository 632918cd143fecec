"""Asking the real resolvers, and knowing which of them are alive.

Owns: the forwarder with its RFC 5452 checks (``forwarder``), the exchange with one
upstream over each transport (``exchanges``: UDP sockets ``udp``, the TCP retry),
upstream health decided by the server's own probes (``health``), and the encrypted
transports: pooled,
pipelined connections (``streams``) for DNS over TLS (``dot``) and over HTTPS
(``doh``), one pool per upstream (``encrypted``).

May import ``resolver.dns``, ``resolver.config``, ``resolver.metrics`` and
``resolver.shared`` (the health board the workers share).
"""
