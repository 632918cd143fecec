"""Shared pieces of the end-to-end tests: Prometheus as a real process, and podman as it
runs on the CI and development machines. The list server and aiwall as a process are
the shared peers of tests/peers/."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.peers.process import Process

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
E2E = Path(__file__).resolve().parent
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


class Prometheus:
    """A throwaway Prometheus on loopback (Debian package ``prometheus``)."""

    def __init__(self, config: dict[str, Any], workdir: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.process = Process(
            [
                PROMETHEUS,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            workdir / "prometheus.log",
        )

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url, timeout=10)
        reply = json.loads(body)
        if status != 200 or reply.get("status") != "success":
            raise AssertionError(f"{path} {params}: HTTP {status}: {reply}")
        return reply["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else []
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.api(
            "query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}"
        )
        result: list[dict[str, Any]] = data["result"]
        return result

    def ready(self) -> bool:
        self.process.check_running()
        with contextlib.suppress(OSError):
            return http_get(f"{self.url}/-/ready", timeout=1)[0] == 200
        return False

    def stop(self) -> None:
        self.process.stop()


# --- podman ------------------------------------------------------------------------------


def podman_env(workdir: Path) -> dict[str, str]:
    """podman's environment here: a private containers.conf with ``default_ulimits = []``
    (the default RLIMIT_NOFILE raise is refused by the sandbox), as podman-env.sh does."""
    conf = workdir / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n", encoding="utf-8")
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman_argv(*args: str) -> list[str]:
    # crun rejects the hybrid cgroup setup of these machines: runc with cgroupfs works.
    return ["podman", "--runtime", "/usr/sbin/runc", "--cgroup-manager=cgroupfs", *args]


@contextlib.contextmanager
def lingering(names: list[str], env: dict[str, str]) -> Iterator[None]:
    """Remove the named containers and volumes whatever happens in the block."""
    try:
        yield
    finally:
        for name in names:
            kind = "volume" if name.startswith("volume:") else "container"
            target = name.removeprefix("volume:")
            subprocess.run(
                podman_argv(
                    kind, "rm", "-f", *(["--volumes"] if kind == "container" else []), target
                ),
                env=env,
                capture_output=True,
                timeout=60,
                check=False,
            )
