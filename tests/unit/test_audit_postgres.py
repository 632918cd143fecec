"""The PostgreSQL trail's own rules without a database: config errors that name the
key, DSNs redacted, the queue bound, row numbers kept across retries, and a database
that refuses connections degrading only its own sink (tests/integration has the rest)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from resolver.audit.postgres import DatabaseDown, PostgresSink, connect, redact
from resolver.audit.trail import Attempt, AuditLog, replica_name, sink_names
from resolver.config import AuditConfig, ConfigError, PrivacyConfig, config_from_mapping
from resolver.metrics import Metrics
from tests.peers.ports import free_port


def config_error(audit: dict[str, object], base_dir: Path = Path(".")) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"audit": audit}, base_dir)
    return str(caught.value)


def test_config_errors_name_the_key_and_never_the_password(tmp_path: Path) -> None:
    assert config_error({"postgres": 5}).startswith("audit.postgres:")
    assert config_error({"postgres_queue": -1}).startswith("audit.postgres_queue:")
    assert config_error({"postgres_queue": "many"}).startswith("audit.postgres_queue:")
    message = config_error({"postgres": "host=db password=topsecret junk"})
    assert message.startswith("audit.postgres:")
    assert "topsecret" not in message
    message = config_error({"postgres": "host=db", "postgres_password_file": "missing"}, tmp_path)
    assert message.startswith("audit.postgres_password_file: cannot read")
    message = config_error({"postgres_password_file": "secret"})
    assert message.startswith("audit.postgres_password_file: set without audit.postgres")
    good = config_from_mapping({"audit": {"postgres": "postgresql://aiwall@db/aiwall"}})
    assert good.audit.postgres_queue == 100_000
    assert sink_names(good.audit) == ["sqlite", "postgres"]


def test_the_replica_is_the_host_name_unless_named() -> None:
    import socket

    assert replica_name(AuditConfig()) == socket.gethostname()
    assert replica_name(AuditConfig(replica="pod-3")) == "pod-3"


def test_dsns_are_redacted() -> None:
    assert "s3cret" not in redact("host=db user=a password=s3cret")
    assert "password=********" in redact("host=db user=a password=s3cret")
    assert "s3cret" not in redact("postgresql://a:s3cret@db/aiwall")
    assert set(redact("host=db dbname=aiwall").split()) == {"host=db", "dbname=aiwall"}
    assert "junk" not in redact("host=db password=junk junk")


def test_a_refused_connection_names_no_password() -> None:
    with pytest.raises(DatabaseDown) as caught:
        connect(f"host=127.0.0.1 port={free_port()} password=s3cret-value connect_timeout=2")
    assert "s3cret-value" not in str(caught.value)


def rows(count: int, each: int = 1) -> list[Attempt]:
    return [
        Attempt(float(i), "c", "default", f"n{i}.x", "A", "s", "c", "blocked", each)
        for i in range(count)
    ]


def test_the_queue_bound_drops_the_oldest_and_keeps_row_numbers() -> None:
    sink = PostgresSink(AuditConfig(postgres="host=db", postgres_queue=3), Path("."), "r")
    sink.backlog = rows(5, each=4)
    assert sink.trim() == 8  # attempts, not rows: each row held 4
    assert [row.name for row in sink.backlog] == ["n2.x", "n3.x", "n4.x"]
    # Rows keep the numbers they were given: the dropped two took 0 and 1.
    assert sink._first == 2
    assert sink.trim() == 0
    sink.done()
    assert sink._first == 5
    assert sink.backlog == []


def test_a_database_down_degrades_its_sink_only_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    dsn = f"host=127.0.0.1 port={free_port()} user=a dbname=b"
    config = AuditConfig(postgres=dsn, postgres_queue=3)
    log = AuditLog(config, PrivacyConfig(), tmp_path, metrics)
    log.prepare()
    for i in range(5):
        log.record("192.0.2.1", "default", f"n{i}.deepseek.com", 1, "deepseek", "chat", "blocked")
    with caplog.at_level(logging.ERROR):
        log.flush()
        log.flush()
        log.flush(last=True)
    sqlite, postgres = log.sinks
    assert sqlite.written == 5
    assert not sqlite.failing
    assert postgres.failing
    assert postgres.written == 0
    assert log.degraded == [f"postgres: {postgres.failing}"]
    assert metrics.registry.get_sample_value("aiwall_audit_degraded", {"sink": "postgres"}) == 1
    # Two dropped for the bound; the three that waited, counted when the writer ends.
    assert log.take_dropped() == 5
    assert caplog.text.count("cannot write to postgres") == 1
    assert caplog.text.count("queue full") == 1
