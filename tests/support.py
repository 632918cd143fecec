"""Test harness: the real server on an ephemeral loopback port, in a thread of its own.

The server runs its own event loop in a background thread, exactly as ``aiwall serve``
runs it, and tests talk to it over real sockets with dnspython (an independent client).
"""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from resolver.config import Config, config_from_mapping
from resolver.serve.server import Server
from tests.peers.ports import free_port as free_port  # re-exported: tests import it from here

T = TypeVar("T")


def make_config(
    upstream: str | list[str], /, base_dir: Path | None = None, **sections: Any
) -> Config:
    """A config listening on 127.0.0.1:0 (HTTP too) forwarding to ``upstream``."""
    raw: dict[str, Any] = {
        "listen": {"dns": ["127.0.0.1:0"], "http": "127.0.0.1:0"},
        "upstream": {
            "servers": [upstream] if isinstance(upstream, str) else upstream,
            "timeout": 0.5,
        },
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(name, {}).update(values)
        else:
            raw[name] = values
    return config_from_mapping(raw, base_dir=base_dir or Path("."))


class RunningServer:
    def __init__(
        self, config: Config, catalog_dir: Path | None = None, config_path: Path | None = None
    ) -> None:
        self.server = Server(config, catalog_dir=catalog_dir, config_path=config_path)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> RunningServer:
        self._thread.start()
        self.call(self.server.start())
        return self

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call_soon(self, function: Callable[[], T]) -> T:
        async def run() -> T:
            return function()

        return self.call(run())

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self.call(self.server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()

    @property
    def host(self) -> str:
        return self.server.dns_endpoints[0].host

    @property
    def port(self) -> int:
        return self.server.dns_endpoints[0].port

    @property
    def http_url(self) -> str:
        endpoint = self.server.http_endpoint
        assert endpoint is not None
        return f"http://{endpoint.host}:{endpoint.port}"

    def post(self, path: str, token: str | None = None, body: bytes = b"") -> tuple[int, str]:
        """POST to the HTTP listener; (status, body), errors included."""
        request = urllib.request.Request(self.http_url + path, data=body, method="POST")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.http_url + "/metrics", timeout=5) as response:
            return str(response.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample on /metrics (0 when absent)."""
        wanted = {f'{k}="{v}"' for k, v in labels.items()}
        for line in self.metrics_text().splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            metric_name, _, label_text = sample.partition("{")
            if metric_name != name:
                continue
            have = set(label_text.rstrip("}").split(",")) if label_text else set()
            if wanted <= have:
                return float(value)
        return 0.0

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ask(
    server: RunningServer,
    name: str,
    rdtype: str = "A",
    *,
    tcp: bool = False,
    edns: int | bool = 0,
    payload: int = 1232,
    source: str | None = None,
    timeout: float = 3.0,
) -> dns.message.Message:
    """Send one query the way a stub resolver would, with EDNS0 by default."""
    query = dns.message.make_query(
        name, dns.rdatatype.from_text(rdtype), use_edns=edns, payload=payload
    )
    if tcp:
        return dns.query.tcp(query, server.host, port=server.port, timeout=timeout, source=source)
    return dns.query.udp(
        query, server.host, port=server.port, timeout=timeout, source=source, ignore_trailing=False
    )


def has_flag(message: dns.message.Message, flag: str) -> bool:
    return bool(message.flags & dns.flags.from_text(flag))
