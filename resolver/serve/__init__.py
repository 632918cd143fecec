"""Running the server: sockets, listeners, the lifecycle, workers and the HTTP endpoint.

Owns: binding the DNS ports once per address (``sockets``), the UDP listener and TCP
connections that turn bytes into queries for the pipeline (``transport``, ``tcp``, with
the cap on open connections in ``connections``), the ready answers of ``fastpath`` (its
tables in ``kept``), the event loop's health (``stalls`` measures its pauses, ``young``
keeps the collector's short), DNS over TLS and HTTPS for managed devices (``encrypted``,
``tls``, ``doh``, ``doh2``), the live RPZ feed's zone transfers and NOTIFY (``xfr``,
``rpzfeed``), one process's data plane and its switch between policy versions
(``dataplane``), a single-process server's start, reload and stop (``server``), and
the HTTP listener for metrics, health and the API (``http``, over the ``control``
protocol).

With several workers, one server still: the ``supervisor`` builds each policy version
once and forks its workers (``fleet``, ``worker``), asks them all at once
(``fleetview``), steers each question name to one worker (``steering``; TCP through
``relay``), probes the upstreams for all of them (``probing``), talks to them over a
channel of numbered requests (``channel``), and merges their metrics so that no counter
ever goes down (``merge``).

The top of the tree: it may import every other package; none imports it.
"""
