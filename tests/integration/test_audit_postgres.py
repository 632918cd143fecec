"""Issue 15: one audit trail across replicas, in a real PostgreSQL the tests start.

Real ``aiwall serve`` processes (one of them with several workers) write one trail;
dnspython asks them banned names; ``aiwall report`` and ``aiwall audit migrate`` run
as an administrator runs them. The database is stopped under traffic to check that
DNS goes on, the trail says it is degraded, and every attempt arrives exactly once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest
import yaml

from resolver.audit.postgres import DatabaseDown, PostgresSink, connect, database_errors
from resolver.audit.schema import LATEST, migrate
from resolver.audit.trail import Attempt
from resolver.config import AuditConfig
from tests.fakes.upstream import FakeUpstream
from tests.peers.aiwall import ROOT, Aiwall
from tests.peers.ports import free_port
from tests.peers.postgres import Postgres, running_postgres
from tests.peers.wait import wait_until

TOKEN = "t" * 32


@pytest.fixture(scope="module")
def shared_pg() -> Iterator[Postgres]:
    """One server for the tests that leave it running; each takes a database of its own."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def own_pg() -> Iterator[Postgres]:
    """A server of the test's own, to stop and start."""
    with running_postgres() as server:
        yield server


_databases = itertools.count()


def new_database(pg: Postgres) -> str:
    """A fresh database on ``pg``; its DSN (no password: that comes from a file)."""
    name = f"trail{next(_databases)}"
    with pg.connect() as db:
        db.execute(f"CREATE DATABASE {name}")
    return pg.dsn.replace("dbname=postgres", f"dbname={name}")


def trail(pg: Postgres, dsn: str, query: str) -> list[tuple[Any, ...]]:
    with connect(dsn, pg.password) as db, database_errors():
        return list(db.execute(query.encode()).fetchall())


def counts(pg: Postgres, dsn: str) -> dict[str, tuple[int, int]]:
    """name -> (attempts, rows): a row written twice shows as two rows."""
    try:
        rows = trail(pg, dsn, "SELECT name, SUM(count), COUNT(*) FROM aiwall_attempts GROUP BY 1")
    except DatabaseDown:
        return {}
    return {name: (int(total), int(n)) for name, total, n in rows}


def aiwall_config(
    upstream: FakeUpstream,
    pg: Postgres,
    dsn: str,
    tmp: Path,
    replica: str,
    workers: int = 1,
    **audit: Any,
) -> dict[str, Any]:
    return {
        "listen": {"dns": [f"127.0.0.1:{free_port()}"], "http": f"127.0.0.1:{free_port()}"},
        "upstream": {"servers": [upstream.server_spec], "timeout": 0.5},
        "workers": workers,
        "api": {"token": TOKEN},
        "state": {"directory": str(tmp / f"state-{replica}")},
        "audit": {
            "postgres": dsn,
            "postgres_password_file": str(pg.password_file),
            "replica": replica,
            "flush_interval": 0.1,
            **audit,
        },
    }


@pytest.fixture
def start(tmp_path: Path, catalog_dir: Path) -> Iterator[Callable[[dict[str, Any]], Aiwall]]:
    """Start a real ``aiwall serve`` named after its replica; all stopped at the end."""
    with contextlib.ExitStack() as stack:

        def run(config: dict[str, Any]) -> Aiwall:
            name = config["audit"]["replica"]
            server = stack.enter_context(
                Aiwall(config, tmp_path, catalog_dir=catalog_dir, name=name)
            )
            server.wait_serving(60)
            return server

        yield run


def blocked(server: Aiwall, name: str) -> None:
    host, port = server.address
    answer = dns.query.udp(dns.message.make_query(name, "A"), host, port=port, timeout=3)
    assert answer.rcode() == dns.rcode.NXDOMAIN, f"{name}: {answer}"


def aiwall_command(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resolver", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})),
        check=False,
    )


# --- two replicas, one trail ---------------------------------------------------------


def test_two_replicas_write_one_trail_and_report_reads_both(
    start: Any, upstream: FakeUpstream, shared_pg: Postgres, tmp_path: Path
) -> None:
    dsn = new_database(shared_pg)
    key = tmp_path / "pseudonym.key"
    key.write_text("k" * 64)
    privacy = {"pseudonymize": True, "key_file": str(key)}
    one = start(
        {
            **aiwall_config(upstream, shared_pg, dsn, tmp_path, "pod-0", workers=2),
            "privacy": privacy,
        },
    )
    two = start({**aiwall_config(upstream, shared_pg, dsn, tmp_path, "pod-1"), "privacy": privacy})
    for i in range(12):
        blocked(one, f"a{i}.deepseek.com")
    for i in range(7):
        blocked(two, f"b{i}.deepseek.com")
    blocked(two, "a0.deepseek.com")
    wait_until(lambda: sum(n for n, _ in counts(shared_pg, dsn).values()) == 20, 20)
    by_replica = dict(
        trail(shared_pg, dsn, "SELECT replica, SUM(count) FROM aiwall_attempts GROUP BY 1")
    )
    assert by_replica == {"pod-0": 12, "pod-1": 8}
    # Pseudonymised as in SQLite: one key, so one client is one pseudonym on both.
    clients = trail(shared_pg, dsn, "SELECT DISTINCT client FROM aiwall_attempts")
    assert len(clients) == 1
    assert clients[0][0].startswith("client-")
    assert "127.0.0.1" not in clients[0][0]

    # The real command, from one replica's config: every replica's rows.
    result = aiwall_command(
        "report", "--config", str(one.path), "--by", "replica", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    report = {row["replica"]: row["blocked"] for row in json.loads(result.stdout)}
    assert report == {"pod-0": 12, "pod-1": 8}
    result = aiwall_command("report", "--config", str(two.path), "--by", "name", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert "a0.deepseek.com,2,0,1," in result.stdout
    # The password file is read, never shown.
    for server in (one, two):
        assert shared_pg.password not in server.log


# --- an outage ---------------------------------------------------------------------


def test_a_database_outage_never_stops_dns_and_loses_nothing(
    start: Any, upstream: FakeUpstream, own_pg: Postgres, tmp_path: Path
) -> None:
    dsn = new_database(own_pg)
    server = start(aiwall_config(upstream, own_pg, dsn, tmp_path, "pod-0"))
    for i in range(10):
        blocked(server, f"before{i}.deepseek.com")
    wait_until(lambda: len(counts(own_pg, dsn)) == 10, 20)

    own_pg.stop("fast")
    for i in range(40):
        blocked(server, f"during{i}.deepseek.com")  # DNS answers as before
    wait_until(lambda: server.metric("aiwall_audit_degraded", sink="postgres") == 1, 20)
    status, body = server.http("/api/stats", timeout=10)
    assert status == 200, body
    assert any(reason.startswith("postgres:") for reason in json.loads(body)["audit_degraded"])
    assert server.metric("aiwall_audit_degraded", sink="sqlite") == 0
    assert server.http("/readyz")[0] == 200  # DNS is fine: the pod stays in the Service
    # SQLite goes on meanwhile.
    wait_until(lambda: server.metric("aiwall_audit_written_total", sink="sqlite") == 50, 20)
    for _ in range(5):
        blocked(server, "during0.deepseek.com")  # more of the same name, in later flushes

    own_pg.start()
    wait_until(lambda: server.metric("aiwall_audit_degraded", sink="postgres") == 0, 30)
    wait_until(lambda: sum(n for n, _ in counts(own_pg, dsn).values()) == 55, 20)
    found = counts(own_pg, dsn)
    assert {name: total for name, (total, _) in found.items()} == {
        **{f"before{i}.deepseek.com": 1 for i in range(10)},
        **{f"during{i}.deepseek.com": 1 for i in range(1, 40)},
        "during0.deepseek.com": 6,
    }
    assert server.metric("aiwall_audit_dropped_total") == 0
    # The outage is logged once, not at every flush.
    assert server.log.count("cannot write to postgres") == 1
    assert "postgres works again" in server.log
    assert own_pg.password not in server.log


def test_a_full_queue_drops_the_oldest_and_counts_them(
    start: Any, upstream: FakeUpstream, own_pg: Postgres, tmp_path: Path
) -> None:
    dsn = new_database(own_pg)
    server = start(aiwall_config(upstream, own_pg, dsn, tmp_path, "pod-0", postgres_queue=5))
    for i in range(3):
        blocked(server, f"before{i}.deepseek.com")
    wait_until(lambda: len(counts(own_pg, dsn)) == 3, 20)
    own_pg.stop("immediate")
    sent = [f"during{i}.deepseek.com" for i in range(20)]
    for name in sent:
        blocked(server, name)
    wait_until(lambda: server.metric("aiwall_audit_dropped_total") == 15, 20)
    own_pg.start()
    wait_until(lambda: len(counts(own_pg, dsn)) == 8, 30)
    found = counts(own_pg, dsn)
    # The newest five waited; the oldest went, counted, not silently.
    assert set(found) == {f"before{i}.deepseek.com" for i in range(3)} | set(sent[-5:])
    assert sum(total for total, _ in found.values()) + 15 == 23
    assert server.metric("aiwall_audit_dropped_total") == 15


# --- row identity ------------------------------------------------------------------


def rows(names: list[str]) -> list[Attempt]:
    return [
        Attempt(1.0e9 + i, "c", "default", n, "A", "deepseek", "chat", "blocked", 2)
        for i, n in enumerate(names)
    ]


def test_a_write_retried_after_a_lost_acknowledgement_is_not_written_twice(
    shared_pg: Postgres,
) -> None:
    dsn = new_database(shared_pg)
    config = AuditConfig(postgres=dsn, postgres_password_file=str(shared_pg.password_file))
    sink = PostgresSink(config, Path("."), "pod-0")
    sink.backlog = rows(["a.x", "b.x"])
    sink.write(sink.backlog)
    # The commit went through but its acknowledgement was lost: the same backlog again,
    # with one more row gathered meanwhile.
    sink.backlog += rows(["c.x"])
    sink.write(sink.backlog)
    sink.done()
    sink.backlog = rows(["a.x"])
    sink.write(sink.backlog)
    sink.done()
    # A new writer process on the same replica numbers from 0 again, under its own id.
    again = PostgresSink(config, Path("."), "pod-0")
    again.backlog = rows(["a.x"])
    again.write(again.backlog)
    sink.close()
    again.close()
    assert counts(shared_pg, dsn) == {"a.x": (6, 3), "b.x": (2, 1), "c.x": (2, 1)}


def test_retention_and_the_row_limit_apply_to_the_whole_trail(shared_pg: Postgres) -> None:
    dsn = new_database(shared_pg)
    config = AuditConfig(
        postgres=dsn, postgres_password_file=str(shared_pg.password_file), max_rows=2
    )
    now = 2.0e9
    ages = {"old": 100 * 86400, "n1": 1, "n2": 2, "n3": 3}  # seconds before now
    sinks = [PostgresSink(config, Path("."), replica) for replica in ("pod-0", "pod-1")]
    for sink, names in zip(sinks, (["old", "n1"], ["n2", "n3"]), strict=True):
        sink.backlog = [
            Attempt(now - ages[n], "c", "default", n, "A", "s", "c", "blocked") for n in names
        ]
        sink.write(sink.backlog)
    sinks[1].apply_retention(now, config)
    for sink in sinks:
        sink.close()
    # Past 90 days: "old" goes; then the newest two rows of the trail stay, whoever
    # wrote them: one trail, one limit.
    assert set(counts(shared_pg, dsn)) == {"n1", "n2"}


# --- the schema ----------------------------------------------------------------------


def test_migrate_is_idempotent_and_brings_an_older_schema_up(shared_pg: Postgres) -> None:
    dsn = new_database(shared_pg)
    env = {"PGPASSWORD": shared_pg.password}  # libpq's own: what a Secret can set
    first = aiwall_command("audit", "migrate", "--postgres", dsn, env=env)
    assert first.returncode == 0, first.stderr
    assert f"from schema version 0 to {LATEST}" in first.stdout
    second = aiwall_command("audit", "migrate", "--postgres", dsn, env=env)
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert trail(shared_pg, dsn, "SELECT version FROM aiwall_schema_version ORDER BY 1") == [
        (v,) for v in range(1, LATEST + 1)
    ]

    older = new_database(shared_pg)
    with connect(older, shared_pg.password) as db:
        assert migrate(db, target=1) == (0, 1)
        db.execute(
            "INSERT INTO aiwall_attempts (time, client, client_group, name, qtype, service,"
            " category, action, count, replica, writer, seq)"
            " VALUES (1, 'c', 'default', 'kept.x', 'A', 's', 'c', 'blocked', 3, 'r', 'w', 0)"
        )
    result = aiwall_command("audit", "migrate", "--postgres", older, env=env)
    assert result.returncode == 0, result.stderr
    assert f"from schema version 1 to {LATEST}" in result.stdout
    indexes = trail(
        shared_pg, older, "SELECT indexname FROM pg_indexes WHERE tablename = 'aiwall_attempts'"
    )
    assert ("aiwall_attempts_replica_time",) in indexes
    assert counts(shared_pg, older) == {"kept.x": (3, 1)}

    # A newer release's schema is left alone, and said so.
    with connect(older, shared_pg.password) as db:
        db.execute("INSERT INTO aiwall_schema_version VALUES (%s, 0)", (LATEST + 1,))
    result = aiwall_command("audit", "migrate", "--postgres", older, env=env)
    assert result.returncode == 1
    assert "newer than this aiwall knows" in result.stderr


def test_replicas_migrating_at_once_take_turns(shared_pg: Postgres) -> None:
    dsn = new_database(shared_pg)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PGPASSWORD=shared_pg.password)
    argv = [sys.executable, "-m", "resolver", "audit", "migrate", "--postgres", dsn]
    runs = [
        subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, outputs
    assert sum(b"from schema version 0" in out for out, _ in outputs) == 1
    assert trail(shared_pg, dsn, "SELECT COUNT(*) FROM aiwall_schema_version") == [(LATEST,)]


def test_errors_never_show_the_password(shared_pg: Postgres, tmp_path: Path) -> None:
    closed = free_port()
    secret = "hunter2-" + "x" * 12
    dsn = f"host=127.0.0.1 port={closed} user=aiwall password={secret} dbname=postgres"
    result = aiwall_command("report", "--postgres", dsn)
    assert result.returncode == 1
    assert secret not in result.stderr + result.stdout
    assert "password=********" in result.stderr
    # A wrong password from the file: refused, and the file's content never shown.
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password-12345\n")
    config = tmp_path / "aiwall.yaml"
    config.write_text(f"audit:\n  postgres: '{shared_pg.dsn}'\n  postgres_password_file: {wrong}\n")
    result = aiwall_command("audit", "migrate", "--config", str(config))
    assert result.returncode == 1
    assert "password authentication failed" in result.stderr
    assert "not-the-password-12345" not in result.stderr


def test_the_kubernetes_base_takes_the_password_from_a_secret() -> None:
    from psycopg.conninfo import conninfo_to_dict

    from resolver.config import config_from_mapping
    from tests.integration.test_deploy_files import k8s_documents, one

    documents = k8s_documents()
    configmap = one(documents, "ConfigMap")
    config = config_from_mapping(yaml.safe_load(configmap["data"]["aiwall.yaml"]))
    fields = conninfo_to_dict(config.audit.postgres)
    assert "password" not in fields  # never in a ConfigMap
    assert config.audit.replica == ""  # the pod's name
    (container,) = one(documents, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    reference = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
    assert reference == {"name": "aiwall-postgres", "key": "password", "optional": True}
