"""``aiwall serve`` as an administrator runs it: a real process from a YAML file, its
log in a file the test can read at any time, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
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

AIWALL = [sys.executable, "-m", "resolver"]


class Aiwall:
    """One ``aiwall serve`` process. ``prefix`` runs it inside something else (for
    example ``ip netns exec NAME``)."""

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
        self.log_path = directory / f"{name}.log"
        env = dict(os.environ)
        if catalog_dir is not None:
            env["AIWALL_CATALOG_DIR"] = str(catalog_dir)
        root = Path(__file__).resolve().parents[1]
        env["PYTHONPATH"] = str(root)
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [*prefix, *AIWALL, "serve", "--config", str(self.path)],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            cwd=root,
            env=env,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            assert self.proc.poll() is None or text in self.log, (
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

    def signal(self, number: int) -> None:
        self.proc.send_signal(number)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code

    def __enter__(self) -> Aiwall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def query(
    host: str, port: int, name: str, rdtype: str = "A", timeout: float = 2.0
) -> dns.message.Message:
    message = dns.message.make_query(name, rdtype)
    return dns.query.udp(message, host, port=port, timeout=timeout)
