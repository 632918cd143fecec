"""The container image, built and run with podman (opt-in: ``make e2e-container``).

Builds deploy/Dockerfile (tests/e2e/podman-build.sh: a local Debian slim base, since no
registry is reachable here), then runs the image as it is documented in deploy/README.md:
- with ``--network host``, a mounted config forwarding to a fake upstream on loopback, a
  remote list on a loopback web server and a named volume for the state directory,
  read-only root, all capabilities dropped: blocked and forwarded names, the healthcheck,
  the state volume, SIGTERM draining an answer in flight and exiting 0 quickly, and the
  attempts in the audit trail (``aiwall report`` in a one-off container on the volume);
- with the image's own config, published as ``-p 127.0.0.1:PORT:5353/udp`` and ``/tcp``:
  the unprivileged port inside, mapped from outside, over both transports.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from tests.e2e.helpers import E2E, http_get, lingering, podman_argv, podman_env
from tests.fakes.upstream import DEFAULT_A, FakeUpstream
from tests.peers.listserver import ListServer
from tests.peers.ports import free_port
from tests.peers.wait import wait_until

pytestmark = pytest.mark.e2e

IMAGE = os.environ.get("AIWALL_E2E_IMAGE", "localhost/aiwall:e2e")
# A slim base and three pure-Python dependencies; a full Debian base would be ~+50 MB.
MAX_IMAGE_BYTES = 200 * 1000 * 1000
STOP_SECONDS = 5.0


def run(
    env: dict[str, str], *args: str, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        podman_argv(*args), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {result.returncode}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run tests/e2e/install-podman.sh (as root)")
    return podman_env(tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="module")
def image(env: dict[str, str]) -> str:
    """Build the image (minutes on a first run; later runs reuse podman's layer cache)."""
    if os.environ.get("AIWALL_E2E_SKIP_BUILD") != "1":
        subprocess.run([str(E2E / "podman-build.sh"), IMAGE], env=env, check=True, timeout=1200)
    return IMAGE


def ask(port: int, name: str, *, tcp: bool = False, timeout: float = 3.0) -> dns.message.Message:
    query = dns.message.make_query(name, dns.rdatatype.A, use_edns=0, payload=1232)
    if tcp:
        return dns.query.tcp(query, "127.0.0.1", port=port, timeout=timeout)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout)


def answers(port: int) -> bool:
    try:
        ask(port, "use-application-dns.net", timeout=0.5)
    except (OSError, dns.exception.Timeout):
        return False
    return True


def http_up(url: str) -> bool:
    try:
        return http_get(url, timeout=1)[0] == 200
    except OSError:
        return False


def ede_codes(message: dns.message.Message) -> list[int]:
    return [int(o.code) for o in message.options if o.otype == dns.edns.OptionType.EDE]


def inspect(env: dict[str, str], name: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(run(env, "inspect", name).stdout)
    return data[0]


def test_image_is_small_non_root_with_healthcheck(env: dict[str, str], image: str) -> None:
    data = json.loads(run(env, "image", "inspect", image).stdout)[0]
    print(f"image {image}: {data['Size'] / 1e6:.1f} MB")
    assert data["Size"] < MAX_IMAGE_BYTES
    config = data["Config"]
    assert config["User"] == "10001:10001"
    assert {"5353/udp", "5353/tcp", "9153/tcp"} <= set(config["ExposedPorts"])
    assert "/var/lib/aiwall" in config["Volumes"]
    # Docker format keeps HEALTHCHECK (OCI drops it): the check is a real DNS query.
    assert data["Healthcheck"]["Test"][:3] == ["CMD", "aiwall", "healthcheck"]


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def test_serves_drains_and_stops_on_sigterm(
    env: dict[str, str], image: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    suffix = secrets.token_hex(4)
    name, volume = f"aiwall-e2e-{suffix}", f"aiwall-e2e-state-{suffix}"
    dns_port, http_port = free_port(), free_port()
    with ListServer({"/ai.txt": "remote-only.example.test\n"}) as lists:
        config = {
            "listen": {"dns": [f"127.0.0.1:{dns_port}"], "http": f"127.0.0.1:{http_port}"},
            "upstream": {"servers": [upstream.server_spec], "timeout": 2.0},
            "blocking": {"remote_lists": [{"url": f"{lists.base_url}/ai.txt", "name": "extra"}]},
            "logging": {"format": "json"},
            "state": {"directory": "/var/lib/aiwall"},
        }
        config_path = tmp_path / "aiwall.yaml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        config_path.chmod(0o644)
        with lingering([name, f"volume:{volume}"], env):
            run(
                env,
                "run",
                "--detach",
                "--name",
                name,
                "--network",
                "host",
                "--read-only",
                # As Docker and Kubernetes do it: no writable /tmp or /run either.
                "--read-only-tmpfs=false",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
                "--volume",
                f"{config_path}:/etc/aiwall/aiwall.yaml:ro",
                "--volume",
                f"{volume}:/var/lib/aiwall",
                image,
            )
            wait_until(lambda: answers(dns_port), 30, "the container to answer DNS")
            wait_until(lambda: http_up(f"http://127.0.0.1:{http_port}/healthz"), 10, "/healthz")

            blocked = ask(dns_port, "chat.deepseek.com")
            assert blocked.rcode() == dns.rcode.NXDOMAIN
            assert ede_codes(blocked) == [15]
            assert ask(dns_port, "remote-only.example.test").rcode() == dns.rcode.NXDOMAIN
            for tcp in (False, True):
                forwarded = ask(dns_port, "www.example.org", tcp=tcp)
                assert forwarded.rcode() == dns.rcode.NOERROR
                assert forwarded.answer[0][0].address == DEFAULT_A
            assert upstream.queries_for("www.example.org")
            assert http_get(f"http://127.0.0.1:{http_port}/readyz")[0] == 200

            # The image's HEALTHCHECK, run by podman (a DNS query from inside).
            health = run(env, "healthcheck", "run", name, check=False)
            assert health.returncode == 0, health.stdout + health.stderr
            assert run(env, "exec", name, "id", "-u").stdout.strip() == "10001"

            # The remote list's last good copy went to the state volume.
            listing = run(env, "exec", name, "ls", "/var/lib/aiwall/lists").stdout.split()
            assert any(f.endswith(".txt") for f in listing)

            # SIGTERM with an answer in flight: it is still delivered, then exit 0.
            upstream.set_delay("slow.example.org", 1.0)
            reply: list[dns.message.Message] = []
            asker = threading.Thread(
                target=lambda: reply.append(ask(dns_port, "slow.example.org", timeout=5))
            )
            asker.start()
            upstream.wait_for_queries(1, timeout=3, name="slow.example.org")
            started = time.monotonic()
            run(env, "stop", "--time", "10", name, timeout=30)
            elapsed = time.monotonic() - started
            asker.join(6)
            state = inspect(env, name)["State"]
            print(f"podman stop took {elapsed:.2f}s, exit code {state['ExitCode']}")
            assert state["ExitCode"] == 0
            assert elapsed < STOP_SECONDS
            assert reply
            assert reply[0].answer[0][0].address == DEFAULT_A
            logs = run(env, "logs", name)
            log = logs.stdout + logs.stderr
            assert "shutting down" in log
            # The audit writer and the reload builders lowered their priority (podman's
            # default seccomp profile allows it, capabilities dropped or not), and the
            # writer put the attempts in the state volume before the container exited.
            assert "refused a lower priority" not in log, log
            report = run(
                env,
                "run",
                "--rm",
                "--network",
                "none",
                "--volume",
                f"{config_path}:/etc/aiwall/aiwall.yaml:ro",
                "--volume",
                f"{volume}:/var/lib/aiwall",
                image,
                "report",
                "--config",
                "/etc/aiwall/aiwall.yaml",
                "--by",
                "name",
                "--format",
                "json",
            )
            assert "chat.deepseek.com" in report.stdout, report.stdout + report.stderr
            assert "remote-only.example.test" in report.stdout, report.stdout


def test_published_ports_with_the_shipped_container_config(env: dict[str, str], image: str) -> None:
    """The documented mapping: port 5353 inside, published over UDP and TCP."""
    name = f"aiwall-e2e-{secrets.token_hex(4)}"
    dns_port, http_port = free_port(), free_port()
    with lingering([name], env):
        run(
            env,
            "run",
            "--detach",
            "--name",
            name,
            "--read-only",
            "--read-only-tmpfs=false",
            "--cap-drop",
            "ALL",
            "--publish",
            f"127.0.0.1:{dns_port}:5353/udp",
            "--publish",
            f"127.0.0.1:{dns_port}:5353/tcp",
            "--publish",
            f"127.0.0.1:{http_port}:9153/tcp",
            image,
        )
        wait_until(lambda: answers(dns_port), 30, "the published port to answer")
        # With several workers, HTTP (in the supervisor) may open just after DNS does.
        wait_until(lambda: http_up(f"http://127.0.0.1:{http_port}/healthz"), 10, "/healthz")
        for tcp in (False, True):
            # Blocked names need no upstream: nothing leaves the machine.
            reply = ask(dns_port, "chat.deepseek.com", tcp=tcp)
            assert reply.rcode() == dns.rcode.NXDOMAIN
            assert ede_codes(reply) == [15]
        status, body = http_get(f"http://127.0.0.1:{http_port}/metrics")
        assert status == 200
        samples = [
            line
            for line in body.decode().splitlines()
            if line.startswith("aiwall_blocked_queries_total{") and 'service="deepseek"' in line
        ]
        assert len(samples) == 1
        assert samples[0].endswith(" 2.0")
