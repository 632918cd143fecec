"""Never fail open: the paths by which a banned name could resolve, each closed.

Each test here reproduces a way the server at commit 09e6fbf let a banned name through
(or stopped serving): a list's exception, a local list gone to junk, an expiry whose
rebuild failed, a second instance on the port, a list never fetched, a list server that
drips, a signal during start-up, a SIGHUP that did not re-read the config.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import dns.exception
import dns.rcode
import pytest
import yaml

from resolver.policy import source as policy_source
from tests.peers.aiwall import AIWALL, Aiwall, query
from tests.peers.listserver import ListServer
from tests.peers.wait import wait_until
from tests.support import RunningServer, ask, free_port, make_config


def base_config(upstream, port: int | None = None, **sections) -> dict:
    config = {
        "listen": {
            "dns": [f"127.0.0.1:{port or free_port()}"],
            "http": f"127.0.0.1:{free_port()}",
        },
        "upstream": {"servers": [upstream.server_spec], "timeout": 0.5},
        "workers": 1,
    }
    config.update(sections)
    return config


def dns_port(config: dict) -> int:
    return int(config["listen"]["dns"][0].rsplit(":", 1)[1])


# --- 1. a list's exception never lifts a catalog ban ----------------------------------


def test_a_third_party_lists_exceptions_do_not_unblock_banned_names(
    start_server, catalog_dir, tmp_path
):
    ads = tmp_path / "ads.txt"
    ads.write_text(
        "ads.example.test\n@@||deepseek.com^\n@@||chat.deepseek.com^\n"
        "@@||use-application-dns.net^\n@@||cdn.ads.example.test^\n"
    )
    server = start_server(blocking={"lists": [str(ads)]})
    for name in ("chat.deepseek.com", "deepseek.com", "use-application-dns.net"):
        assert ask(server, name).rcode() == dns.rcode.NXDOMAIN, name
    # The list's exception still cancels the list's own entry.
    assert ask(server, "img.cdn.ads.example.test").rcode() == dns.rcode.NOERROR
    assert ask(server, "ads.example.test").rcode() == dns.rcode.NXDOMAIN
    # aiwall check names the rule that decided, not "config allow entry".
    config = tmp_path / "check.yaml"
    config.write_text(yaml.safe_dump({"blocking": {"lists": [str(ads)]}}))
    env = {"AIWALL_CATALOG_DIR": str(catalog_dir), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [*AIWALL, "check", "chat.deepseek.com", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "BLOCKED" in result.stdout
    assert "rule:     blocking.catalog.block.all" in result.stdout
    excepted = subprocess.run(
        [*AIWALL, "check", "img.cdn.ads.example.test", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "blocking.lists[0] (ads.txt): its own exception" in excepted.stdout


# --- 2. a local list gone to junk keeps its last good copy -----------------------------


def test_a_local_list_replaced_by_junk_or_cut_short_is_rejected(start_from_file, tmp_path):
    names = [f"n{index}.guard.test" for index in range(100_000)]
    listed = tmp_path / "big.txt"
    listed.write_text("\n".join(names) + "\n")
    server, _ = start_from_file(blocking={"lists": [str(listed)]}, api={"token": "t" * 20})
    assert ask(server, "n77777.guard.test").rcode() == dns.rcode.NXDOMAIN
    # 200 bytes of junk and one valid line: mostly unreadable.
    listed.write_text("<html><body>" + "x " * 90 + "</body></html>\n" * 3 + "n1.guard.test\n")
    status, body = server.post("/api/reload", token="t" * 20)
    assert status == 422, body
    assert "max_invalid" in body
    assert ask(server, "n77777.guard.test").rcode() == dns.rcode.NXDOMAIN
    assert (
        server.metric("aiwall_list_refresh_failures_total", source="list:big.txt", reason="parse")
        == 1
    )
    # Cut short by a copy that ran out of disk: 1,000 of 100,000 names.
    listed.write_text("\n".join(names[:1000]) + "\n")
    status, body = server.post("/api/reload", token="t" * 20)
    assert status == 422
    assert "max_shrink" in body
    assert ask(server, "n77777.guard.test").rcode() == dns.rcode.NXDOMAIN
    assert (
        server.metric("aiwall_list_refresh_failures_total", source="list:big.txt", reason="shrink")
        == 1
    )


def test_a_restart_with_a_junk_local_list_serves_its_last_good_copy(
    upstream, catalog_dir, tmp_path, caplog
):
    listed = tmp_path / "big.txt"
    listed.write_text("\n".join(f"n{index}.guard.test" for index in range(5000)) + "\n")
    config = make_config(upstream.server_spec, base_dir=tmp_path, blocking={"lists": [str(listed)]})
    with RunningServer(config, catalog_dir=catalog_dir) as server:
        assert ask(server, "n4321.guard.test").rcode() == dns.rcode.NXDOMAIN
    listed.write_text("n1.guard.test\n")  # cut short while the server was down
    with RunningServer(config, catalog_dir=catalog_dir) as server:
        assert ask(server, "n4321.guard.test").rcode() == dns.rcode.NXDOMAIN
        assert (
            server.metric(
                "aiwall_list_refresh_failures_total", source="list:big.txt", reason="shrink"
            )
            == 1
        )
    assert "its last good copy is used" in caplog.text


def test_a_deliberate_shrink_is_accepted_with_max_shrink(start_from_file, tmp_path):
    listed = tmp_path / "small.txt"
    listed.write_text("a.guard.test\nb.guard.test\nc.guard.test\nd.guard.test\n")
    server, _path = start_from_file(
        blocking={"lists": [{"path": str(listed), "max_shrink": 1}]}, api={"token": "t" * 20}
    )
    listed.write_text("a.guard.test\n")
    assert server.post("/api/reload", token="t" * 20)[0] == 200
    assert ask(server, "b.guard.test").rcode() == dns.rcode.NOERROR


# --- 3. an expiring exception ends whatever the lists do -------------------------------


def test_an_expired_exception_ends_even_if_the_lists_are_unreadable(
    upstream, catalog_dir, tmp_path
):
    listed = tmp_path / "extra.txt"
    listed.write_text("listed.test\n")
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
    config = make_config(
        upstream.server_spec,
        base_dir=tmp_path,
        blocking={
            "lists": [str(listed)],
            "catalog": {
                "block": {"all": True},
                "allow": {"services": ["deepseek"], "until": until},
            },
        },
    )
    with RunningServer(config, catalog_dir=catalog_dir) as server:
        assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.NOERROR
        # At midnight a cron job rewrites the lists: unreadable just when the rule ends.
        listed.unlink()
        wait_until(lambda: ask(server, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN, 8)
        check = server.call(server.server.check("chat.deepseek.com", ""))
        assert check["decision"] == "blocked"
        assert ask(server, "listed.test").rcode() == dns.rcode.NXDOMAIN


def test_a_failed_rebuild_is_retried_and_alerted(upstream, catalog_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(policy_source, "REBUILD_RETRY_FIRST", 0.3)
    local = tmp_path / "local.txt"
    local.write_text("local.test\n")
    with ListServer({"/ai.txt": "first.test\n"}) as lists:
        config = make_config(
            upstream.server_spec,
            base_dir=tmp_path,
            blocking={
                "lists": [str(local)],
                "remote_lists": [{"url": lists.url("/ai.txt"), "name": "ai", "refresh": 1}],
            },
        )
        with RunningServer(config, catalog_dir=catalog_dir) as server:
            local.unlink()  # unreadable when the remote refresh wants a rebuild
            lists.lists["/ai.txt"] = "first.test\nsecond.test\n"
            wait_until(lambda: server.metric("aiwall_policy_rebuild_failures_total") >= 2)
            assert server.metric("aiwall_policy_rebuild_pending") == 1
            assert ask(server, "local.test").rcode() == dns.rcode.NXDOMAIN
            local.write_text("local.test\n")
            wait_until(lambda: ask(server, "second.test").rcode() == dns.rcode.NXDOMAIN)
            wait_until(lambda: server.metric("aiwall_policy_rebuild_pending") == 0)


# --- 4. a second instance on the same address does not start ---------------------------


@pytest.mark.parametrize(("first_workers", "second_workers"), [(2, 2), (2, 1), (1, 2)])
def test_a_second_instance_on_a_served_address_refuses_to_start(
    upstream, catalog_dir, tmp_path, first_workers, second_workers
):
    port = free_port()
    first_config = base_config(upstream, port, workers=first_workers)
    with Aiwall(first_config, tmp_path, catalog_dir=catalog_dir, name="first") as first:
        first.wait_serving()
        second_config = base_config(
            upstream,
            workers=second_workers,
            blocking={"catalog": "none"},
            state={"directory": str(tmp_path / "second-state")},
        )
        second_config["listen"]["dns"] = [f"127.0.0.1:{port}"]
        second = Aiwall(second_config, tmp_path, catalog_dir=catalog_dir, name="second")
        assert second.proc.wait(20) == 1
        assert "already served by another process" in second.log
        assert "listen.dns[0]: 127.0.0.1:" in second.log
        answers = [query("127.0.0.1", port, "chat.deepseek.com").rcode() for _ in range(20)]
        assert answers == [dns.rcode.NXDOMAIN] * 20


def test_a_wildcard_instance_cannot_take_a_specific_address(upstream, catalog_dir, tmp_path):
    port = free_port()
    with Aiwall(base_config(upstream, port, workers=2), tmp_path, catalog_dir=catalog_dir) as first:
        first.wait_serving()
        wide = base_config(upstream, workers=2, state={"directory": str(tmp_path / "w")})
        wide["listen"]["dns"] = [f"0.0.0.0:{port}"]
        second = Aiwall(wide, tmp_path, catalog_dir=catalog_dir, name="wide")
        assert second.proc.wait(20) == 1
        assert "already served" in second.log


# --- 5, 6, 7. remote lists at start; signals during start-up ---------------------------


def test_a_list_never_fetched_keeps_readyz_at_503_naming_it(start_server, tmp_path):
    with ListServer({"/ai.txt": "remote-only.test\n"}) as lists:
        lists.status["/ai.txt"] = 503
        server = start_server(
            blocking={
                "remote_lists": [
                    {"url": lists.url("/ai.txt"), "name": "ai", "refresh": 1, "timeout": 1}
                ]
            }
        )
        ready, detail = server.call(server.server.ready())
        assert not ready
        assert "remote:ai" in detail
        lists.status.clear()
        wait_until(lambda: ask(server, "remote-only.test").rcode() == dns.rcode.NXDOMAIN, 10)
        assert server.call(server.server.ready())[0]


def test_a_seed_copy_is_in_force_until_the_first_download(start_server, tmp_path):
    seed = tmp_path / "seed.txt"
    seed.write_text("seeded.test\n")
    with ListServer() as lists:  # the list server has nothing: 404
        server = start_server(
            blocking={
                "remote_lists": [
                    {"url": lists.url("/ai.txt"), "name": "ai", "seed": str(seed), "timeout": 1}
                ]
            }
        )
        assert ask(server, "seeded.test").rcode() == dns.rcode.NXDOMAIN
        assert server.call(server.server.ready())[0]


def test_a_required_list_holds_dns_back_and_sighup_meanwhile_is_applied_after(
    upstream, catalog_dir, tmp_path
):
    with ListServer({"/ai.txt": "required.test\n"}) as lists:
        lists.status["/ai.txt"] = 503
        remote = {"url": lists.url("/ai.txt"), "name": "ai", "required": True, "timeout": 1}
        config = base_config(upstream, blocking={"remote_lists": [remote], "allow": []})
        port = dns_port(config)
        with Aiwall(config, tmp_path, catalog_dir=catalog_dir) as aiwall:
            aiwall.wait_log("waiting for required lists ai")
            with pytest.raises(dns.exception.Timeout):
                query("127.0.0.1", port, "required.test", timeout=0.5)
            # systemd's ExecReload during start-up: taken, not fatal.
            config["blocking"]["allow"] = ["allowed-later.deepseek.com"]
            aiwall.path.write_text(yaml.safe_dump(config))
            aiwall.signal(signal.SIGHUP)
            aiwall.wait_log("reload asked for during start-up")
            assert aiwall.proc.poll() is None
            lists.status.clear()
            aiwall.wait_log("applying the reload asked for during start-up")
            aiwall.wait_log("reloaded:")
            assert query("127.0.0.1", port, "required.test").rcode() == dns.rcode.NXDOMAIN
            allowed = query("127.0.0.1", port, "allowed-later.deepseek.com")
            assert allowed.rcode() == dns.rcode.NOERROR
            assert aiwall.stop() == 0


def test_a_dripping_list_server_holds_start_up_only_for_the_timeout(
    upstream, catalog_dir, tmp_path
):
    with ListServer({"/ai.txt": "drip.test\n" * 50}) as lists:
        lists.drip["/ai.txt"] = 2.0
        remote = {"url": lists.url("/ai.txt"), "name": "drip", "timeout": 2}
        config = base_config(upstream, blocking={"remote_lists": [remote]})
        started = time.monotonic()
        with Aiwall(config, tmp_path, catalog_dir=catalog_dir) as aiwall:
            aiwall.wait_serving(timeout=10)
            assert time.monotonic() - started < 8
            log = aiwall.log
            assert "list drip: no copy yet; fetching" in log
            assert "not downloaded within timeout (2 s)" in log
            assert (
                aiwall.metric(
                    "aiwall_list_refresh_failures_total", source="remote:drip", reason="timeout"
                )
                == 1
            )


# --- 8. SIGHUP re-reads the config file ------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reads_the_config_file_again(upstream, catalog_dir, tmp_path, workers):
    config = base_config(upstream, workers=workers, blocking={"catalog": "none"})
    port = dns_port(config)
    with Aiwall(config, tmp_path, catalog_dir=catalog_dir) as aiwall:
        aiwall.wait_serving()
        assert query("127.0.0.1", port, "chat.deepseek.com").rcode() == dns.rcode.NOERROR
        config["blocking"]["catalog"] = "all"
        aiwall.path.write_text(yaml.safe_dump(config))
        aiwall.signal(signal.SIGHUP)
        wait_until(
            lambda: all(
                query("127.0.0.1", port, f"n{i}.deepseek.com").rcode() == dns.rcode.NXDOMAIN
                for i in range(10)
            )
        )
        assert aiwall.stop() == 0


def test_the_bind_error_names_the_holder(upstream, catalog_dir, tmp_path):
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    try:
        config = base_config(upstream, port, workers=2)
        aiwall = Aiwall(config, tmp_path, catalog_dir=catalog_dir)
        assert aiwall.proc.wait(20) == 1
        assert f"127.0.0.1:{port} (UDP) is already served by another process" in aiwall.log
    finally:
        holder.close()
