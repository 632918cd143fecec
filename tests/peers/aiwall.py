"""``aiwall serve`` as an administrator runs it: a real process from a YAML file, its
log in a file the test can read at any time, real signals."""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import yaml

from tests.peers.ports import free_port
from tests.peers.process import Process, descendants

ROOT = Path(__file__).resolve().parents[2]
AIWALL = [sys.executable, "-m", "resolver"]


def two_worker_config(upstream: str, directory: Path, **sections: Any) -> dict[str, Any]:
    """The default deployment on loopback: two workers on free ports, forwarding to
    ``upstream``, its state in ``directory``; ``sections`` are added as they are."""
    return {
        "listen": {"dns": [f"127.0.0.1:{free_port()}"], "http": f"127.0.0.1:{free_port()}"},
        "upstream": {"servers": [upstream], "timeout": 0.5},
        "workers": 2,
        "state": {"directory": str(directory / "state")},
        **sections,
    }


class Aiwall(Process):
    """One ``aiwall serve`` process from this checkout, with ``config`` written to
    ``directory/NAME.yaml`` and its output in ``directory/NAME.log``. ``catalog_dir``
    replaces the shipped catalog; ``prefix`` runs it inside something else (for example
    ``ip netns exec NAME``)."""

    def __init__(
        self,
        config: dict[str, Any],
        directory: Path,
        *,
        catalog_dir: Path | None = None,
        prefix: Sequence[str] = (),
        name: str = "aiwall",
    ) -> None:
        self.config = config
        self.path = directory / f"{name}.yaml"
        self.path.write_text(yaml.safe_dump(config), encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        if catalog_dir is not None:
            env["AIWALL_CATALOG_DIR"] = str(catalog_dir)
        super().__init__(
            [*prefix, *AIWALL, "serve", "--config", str(self.path)],
            directory / f"{name}.log",
            name=name,
            env=env,
            cwd=ROOT,
        )

    @property
    def server_pid(self) -> int:
        """aiwall itself: the process started, or, under a prefix that runs it as a
        child (strace, unshare), the first process below running ``-m resolver serve``
        (the server or the supervisor: its workers and helpers come after it)."""
        for pid in descendants(self.pid):  # parents before their children
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[1:4] == [b"-m", b"resolver", b"serve"]:
                return pid
        return self.pid

    @property
    def address(self) -> tuple[str, int]:
        """The first DNS listener, as (host, port)."""
        host, _, port = self.config["listen"]["dns"][0].rpartition(":")
        return host.strip("[]"), int(port)

    def wait_log(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            assert self.alive or text in self.log, (
                f"exited {self.proc.returncode} before logging {text!r}:\n{self.log}"
            )
            assert time.monotonic() < deadline, f"no log line with {text!r}:\n{self.log}"
            time.sleep(0.05)

    def wait_serving(self, timeout: float = 20.0) -> None:
        """Until every worker serves (the log line each start ends with)."""
        workers = int(self.config.get("workers", 1))
        self.wait_log("workers serving" if workers > 1 else "serving DNS on", timeout)

    def http(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        listen = self.config["listen"]["http"]
        try:
            with urllib.request.urlopen(f"http://{listen}{path}", timeout=timeout) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` on /metrics that carry ``labels``."""
        wanted = {f'{k}="{v}"' for k, v in labels.items()}
        total = 0.0
        for line in self.http("/metrics")[1].splitlines():
            sample, _, value = line.rpartition(" ")
            metric_name, _, label_text = sample.partition("{")
            if line.startswith("#") or metric_name != name:
                continue
            if wanted <= set(label_text.rstrip("}").split(",")):
                total += float(value)
        return total

    def rss(self) -> int:
        """Resident memory in bytes, the forked workers' included."""
        return self.memory_kb()["rss_kb"] * 1024

    def stop(self, timeout: float = 15.0) -> int | None:
        return super().stop(timeout)


def query(
    host: str, port: int, name: str, rdtype: str = "A", timeout: float = 2.0
) -> dns.message.Message:
    message = dns.message.make_query(name, rdtype)
    return dns.query.udp(message, host, port=port, timeout=timeout)
