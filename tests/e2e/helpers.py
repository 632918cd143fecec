"""Shared pieces of the end-to-end tests: a loopback list server, aiwall and Prometheus
as real processes, and podman as it runs on the CI and development machines."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
E2E = Path(__file__).resolve().parent
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def wait_until(check: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(step)
    raise TimeoutError(f"gave up after {timeout:.0f}s waiting for {what}")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


class ListServer:
    """A loopback HTTP server publishing block lists by path (404 for anything else,
    after ``fail_delay`` seconds)."""

    def __init__(self, lists: dict[str, str], fail_delay: float = 0.0) -> None:
        self.lists = dict(lists)
        self.fail_delay = fail_delay
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = owner.lists.get(self.path)
                if body is None:
                    time.sleep(owner.fail_delay)
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> ListServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


class Process:
    """A child process whose output goes to a file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, **popen: Any) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            list(argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            **popen,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_running(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.popen.returncode}:\n{self.log()[-3000:]}"
            )

    def stop(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


def start_aiwall(config: dict[str, Any], workdir: Path) -> Process:
    """``python -m resolver serve`` from this checkout, with the shipped catalog."""
    config_path = workdir / "aiwall.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return Process(
        "aiwall",
        [sys.executable, "-m", "resolver", "serve", "--config", str(config_path)],
        workdir / "aiwall.log",
        cwd=ROOT,
        env=env,
    )


class Prometheus:
    """A throwaway Prometheus on loopback (Debian package ``prometheus``)."""

    def __init__(self, config: dict[str, Any], workdir: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.process = Process(
            "prometheus",
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
