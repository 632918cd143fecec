"""Running the server: sockets, listeners, the lifecycle, workers and the HTTP endpoint.

Owns: binding the DNS ports once per address (``sockets``), the UDP and TCP listeners
that turn bytes into queries for the pipeline (``transport``), a server's start, reload
and stop (``server``), the supervisor and its worker processes (``workers``), and the
HTTP listener for metrics, health and the API (``http``).

The top of the tree: it may import every other package; none imports it.
"""
