"""aiwall observed by Prometheus, on loopback: the stack behind the dashboard test and the
dashboard preview.

- a fake upstream (tests/fakes/upstream.py) answering every name;
- a loopback web server with two remote lists; one of them disappears (HTTP 404) once
  aiwall has its first copy, so the list-age and refresh-failure panels have data;
- ``python -m resolver serve`` from this checkout, with the shipped catalog;
- Prometheus (Debian package) with deploy/prometheus/prometheus.yml, its target and
  intervals changed for the test, and the shipped alert rules;
- a traffic thread: blocked names (services, bypass, remote list, canary), forwarded
  names, cached names, upstream SERVFAILs and forged upstream answers.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import yaml

from tests.e2e.helpers import DEPLOY, Prometheus, http_get
from tests.fakes.upstream import FakeUpstream
from tests.peers.aiwall import Aiwall
from tests.peers.listserver import ListServer
from tests.peers.ports import free_port
from tests.peers.wait import wait_until

REMOTE_LIST = "tracker.ai-extra.test\nassistant.ai-extra.test\n"
# (name, weight): how often each blocked name is asked, relative to the others.
BLOCKED = (
    ("chat.deepseek.com", 6),
    ("chatgpt.com", 4),
    ("claude.ai", 3),
    ("gemini.google.com", 2),
    ("dns.google", 2),  # bypass: Google Public DNS over HTTPS
    ("cloudflare-dns.com", 1),  # bypass
    ("use-application-dns.net", 1),  # the browser canary
    ("assistant.ai-extra.test", 1),  # the remote list
)
CACHED = ("www.example.org", "intranet.example.org", "mail.example.org")
SERVFAIL = "broken.example.org"


@dataclass
class Stack:
    upstream: FakeUpstream
    aiwall: Aiwall
    prometheus: Prometheus
    dns_port: int
    metrics_target: str


class Traffic(threading.Thread):
    """Queries in a loop until stopped; ``intensity`` (0..1) may change while it runs."""

    def __init__(self, stack: Stack, intensity: float = 1.0, seed: int = 5) -> None:
        super().__init__(daemon=True, name="traffic")
        self.stack = stack
        self.intensity = intensity
        self.bypass_boost = 0.0
        self.sent = 0
        self.errors: list[BaseException] = []
        self._halt = threading.Event()
        self._random = random.Random(seed)
        self._names = (f"n{i}.example.net" for i in itertools.count())
        self._forged = (f"forged{i}.example.net" for i in itertools.count())
        self._blocked = [name for name, weight in BLOCKED for _ in range(weight)]

    def ask(self, name: str) -> None:
        query = dns.message.make_query(name, "A", use_edns=0)
        try:
            dns.query.udp(query, "127.0.0.1", port=self.stack.dns_port, timeout=2)
        except dns.exception.Timeout as error:  # counted, not fatal: the test checks
            self.errors.append(error)
        self.sent += 1

    def one_round(self) -> None:
        pick = self._random.random
        for _ in range(1 + int(pick() * 3)):
            self.ask(self._random.choice(self._blocked))
        if pick() < self.bypass_boost:
            for _ in range(4):
                self.ask(self._random.choice(("dns.google", "cloudflare-dns.com", "dns.quad9.net")))
        self.ask(self._random.choice(CACHED))
        self.ask(next(self._names))
        if pick() < 0.3:
            self.ask(SERVFAIL)
        if pick() < 0.1:
            name = next(self._forged)
            self.stack.upstream.set_forgery(name, "wrong-id")
            self.ask(name)

    def run(self) -> None:
        while not self._halt.is_set():
            self.one_round()
            self._halt.wait(0.02 + 0.2 * (1 - self.intensity))

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def prometheus_config(target: str, scrape_interval: str) -> dict[str, Any]:
    """The shipped scrape config, pointed at ``target``, with the shipped alert rules."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = scrape_interval
    config["global"]["evaluation_interval"] = scrape_interval
    config["rule_files"] = [str(DEPLOY / "prometheus" / name) for name in config["rule_files"]]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "aiwall"]
    job["static_configs"] = [{"targets": [target]}]
    return config


@contextlib.contextmanager
def observed_stack(workdir: Path, scrape_interval: str = "1s") -> Iterator[Stack]:
    lists = {"/ai-extra.txt": REMOTE_LIST, "/flaky.txt": "flaky.ai-extra.test\n"}
    # The 404 comes after a second: it bounds the failure rate whatever aiwall's retry
    # policy (without backoff, a failing list was retried in a tight loop).
    with FakeUpstream() as upstream, ListServer(lists, fail_delay=1.0) as web:
        upstream.set_rcode(SERVFAIL, "SERVFAIL")
        dns_port, http_port, prometheus_port = free_port(), free_port(), free_port()
        config = {
            "listen": {"dns": [f"127.0.0.1:{dns_port}"], "http": f"127.0.0.1:{http_port}"},
            "upstream": {"servers": [upstream.server_spec], "timeout": 0.5},
            "blocking": {
                "remote_lists": [
                    {"url": f"{web.base_url}/ai-extra.txt", "name": "ai-extra", "refresh": 5},
                    {"url": f"{web.base_url}/flaky.txt", "name": "flaky", "refresh": 1},
                ]
            },
            "state": {"directory": str(workdir / "state")},
        }
        aiwall = Aiwall(config, workdir)  # this checkout, with the shipped catalog
        try:
            target = f"127.0.0.1:{http_port}"

            def aiwall_ready() -> bool:
                aiwall.check_running()
                with contextlib.suppress(OSError):
                    return http_get(f"http://{target}/readyz", timeout=1)[0] == 200
                return False

            wait_until(aiwall_ready, 20, "aiwall to be ready")
            # From now on every refresh of "flaky" fails (http_status); its copy stays.
            del web.lists["/flaky.txt"]
            prometheus = Prometheus(
                prometheus_config(target, scrape_interval), workdir, prometheus_port
            )
            try:
                wait_until(prometheus.ready, 20, "Prometheus to be ready")
                yield Stack(upstream, aiwall, prometheus, dns_port, target)
            finally:
                prometheus.stop()
        finally:
            aiwall.stop()
