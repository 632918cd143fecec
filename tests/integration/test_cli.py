"""The ``aiwall`` command as an administrator runs it: a real process, real signals, dig."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.fakes.upstream import FakeUpstream
from tests.peers.tlsca import TestCA
from tests.support import free_port

AIWALL = [sys.executable, "-m", "resolver"]


def write_config(
    path: Path, upstream: FakeUpstream, port: int, catalog_dir: Path, **blocking
) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "listen": {"dns": [f"127.0.0.1:{port}"], "http": f"127.0.0.1:{free_port()}"},
                "upstream": {"servers": [upstream.server_spec], "timeout": 0.5},
                "blocking": blocking,
            }
        )
    )


class Process:
    def __init__(self, config: Path, catalog_dir: Path, port: int) -> None:
        env = {"AIWALL_CATALOG_DIR": str(catalog_dir), "PATH": "/usr/bin:/bin"}
        self.port = port
        self.proc = subprocess.Popen(
            [*AIWALL, "serve", "--config", str(config)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read()
            check = subprocess.run(
                [*AIWALL, "healthcheck", "--server", f"127.0.0.1:{self.port}", "--timeout", "0.3"],
                capture_output=True,
            )
            if check.returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError("server did not come up")

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(10)
        return code, self.proc.stderr.read()


@pytest.fixture
def process(upstream, catalog_dir, tmp_path):
    started: list[Process] = []

    def start(**blocking) -> Process:
        # free_port() can race with other processes on a busy machine: a start that
        # lost its port is tried again on another one.
        for attempt in range(3):
            port = free_port()
            config = tmp_path / "aiwall.yaml"
            write_config(config, upstream, port, catalog_dir, **blocking)
            proc = Process(config, catalog_dir, port)
            started.append(proc)
            try:
                proc.wait_ready()
            except AssertionError as error:
                if attempt == 2 or "Address already in use" not in str(error):
                    raise
                continue
            return proc
        raise AssertionError("unreachable")

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()


def dig(port: int, *args: str) -> str:
    return subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=2", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_dig_sees_the_block_and_the_forward(process):
    assert shutil.which("dig"), "dig is installed by tests/tools/install-system-deps.sh"
    server = process()
    blocked = dig(server.port, "chat.deepseek.com")
    assert "status: NXDOMAIN" in blocked
    assert "EDE: 15 (Blocked)" in blocked
    assert dig(server.port, "+short", "www.python.org").split() == ["198.51.100.7"]
    assert "status: NOERROR" in dig(server.port, "+tcp", "www.python.org")


def test_sigterm_exits_zero(process):
    server = process()
    code, log = server.stop()
    assert code == 0, log
    assert "shutting down" in log


def test_sighup_reloads_lists_and_keeps_the_last_good_one(process, tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("first.test\n")
    server = process(lists=[str(extra)])
    assert "NXDOMAIN" in dig(server.port, "first.test")
    assert "NOERROR" in dig(server.port, "second.test")
    extra.write_text("first.test\nsecond.test\n")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "NXDOMAIN" not in dig(server.port, "second.test") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "NXDOMAIN" in dig(server.port, "second.test")
    # A broken list is rejected and the running policy stays.
    extra.write_text("/^regex-only$/\n")
    server.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert "NXDOMAIN" in dig(server.port, "second.test")
    code, log = server.stop()
    assert code == 0
    assert "reload rejected" in log


def test_a_broken_list_stops_the_start_before_any_port_opens(upstream, catalog_dir, tmp_path):
    port = free_port()
    config = tmp_path / "aiwall.yaml"
    write_config(config, upstream, port, catalog_dir, lists=[str(tmp_path / "missing.txt")])
    proc = Process(config, catalog_dir, port)
    code = proc.proc.wait(10)
    log = proc.proc.stderr.read()
    assert code == 1
    assert "missing.txt" in log
    assert "not starting" in log


def run(*args: str, catalog_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"AIWALL_CATALOG_DIR": str(catalog_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run([*AIWALL, *args], capture_output=True, text=True, env=env)


def test_check_explains_a_catalog_block(catalog_dir):
    result = run("check", "chat.deepseek.com", catalog_dir=catalog_dir)
    assert result.returncode == 0
    assert "BLOCKED" in result.stdout
    assert "DeepSeek [deepseek]" in result.stdout
    assert "(CN)" in result.stdout
    assert "entry:    deepseek.com" in result.stdout


def test_check_explains_an_allowed_name(catalog_dir):
    result = run("check", "www.python.org", catalog_dir=catalog_dir)
    assert "allowed" in result.stdout


def test_validate_config_names_the_bad_key(tmp_path, catalog_dir):
    bad = tmp_path / "bad.yaml"
    bad.write_text("blocking:\n  response: blackhole\n")
    result = run("validate-config", str(bad), catalog_dir=catalog_dir)
    assert result.returncode == 1
    assert "blocking.response" in result.stderr
    assert "'nxdomain'" in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text("blocking:\n  response: sinkhole\n")
    result = run("validate-config", str(good), catalog_dir=catalog_dir)
    assert result.returncode == 0, result.stderr


def test_serve_refuses_a_bad_config(tmp_path, catalog_dir):
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen:\n  dns: ['127.0.0.1:5353']\n  htpp: x\n")
    result = run("serve", "--config", str(bad), catalog_dir=catalog_dir)
    assert result.returncode == 1
    assert "listen.htpp: unknown key" in result.stderr


def test_serve_refuses_dot_and_doh_on_one_port_naming_both(tmp_path, catalog_dir):
    # Both sockets would bind (SO_REUSEADDR) and every worker would fail at listen.
    issued = TestCA(tmp_path).issue(["dns.test"])
    port = free_port()
    config = {
        "listen": {
            "dns": [f"127.0.0.1:{free_port()}"],
            "http": "",
            "dot": [f"127.0.0.1:{port}"],
            "doh": [f"127.0.0.1:{port}"],
        },
        "tls": {"certificate": str(issued.certificate), "key": str(issued.key), "name": "dns.test"},
        "state": {"directory": str(tmp_path / "state")},
    }
    path = tmp_path / "clash.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {"AIWALL_CATALOG_DIR": str(catalog_dir), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [*AIWALL, "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "listen.doh[0]: expected an address and port of its own" in result.stderr
    assert "listen.dot[0]" in result.stderr
    assert "Traceback" not in result.stderr


def test_healthcheck_fails_when_nothing_listens(catalog_dir):
    result = run(
        "healthcheck",
        "--server",
        f"127.0.0.1:{free_port()}",
        "--timeout",
        "0.3",
        catalog_dir=catalog_dir,
    )
    assert result.returncode == 1


def test_shipped_default_config_is_valid():
    config = Path(__file__).parents[2] / "deploy" / "aiwall.yaml"
    result = subprocess.run(
        [*AIWALL, "validate-config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_export_with_a_policy_writes_the_file(tmp_path, catalog_dir):
    target = tmp_path / "out" / "blocked.txt"
    target.parent.mkdir()
    result = run(
        "export",
        "--format",
        "domains",
        "--policy",
        "{block: {services: [deepseek]}}",
        "--output",
        str(target),
        catalog_dir=catalog_dir,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in target.read_text().splitlines() if not line.startswith("#")]
    assert "deepseek.com" in lines
    assert "use-application-dns.net" in lines


def test_export_rejects_a_policy_naming_no_service(catalog_dir):
    result = run(
        "export",
        "--format",
        "rpz",
        "--policy",
        "{block: {services: [nope]}}",
        catalog_dir=catalog_dir,
    )
    assert result.returncode == 1
    assert "blocking.catalog.block.services[0]" in result.stderr


def test_catalog_list_filters_by_country_and_category():
    chinese = subprocess.run(
        [*AIWALL, "catalog", "list", "--country", "CN"], capture_output=True, text=True
    )
    assert chinese.returncode == 0
    ids = {line.split()[0] for line in chinese.stdout.splitlines()[1:-1]}
    assert {"deepseek", "kimi", "doubao", "qwen", "ernie"} <= ids
    assert "chatgpt" not in ids
    bypass = subprocess.run(
        [*AIWALL, "catalog", "list", "--category", "bypass"], capture_output=True, text=True
    )
    rows = bypass.stdout.splitlines()[1:-1]
    assert rows
    assert all("bypass" in row for row in rows)
    assert bypass.stdout.splitlines()[-1].startswith(f"{len(rows)} services")
