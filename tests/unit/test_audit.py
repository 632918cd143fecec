"""The audit trail: batched off the answer path, pseudonymised, retained, reported."""

import json
import sqlite3
import time

import pytest

from resolver.audit import attempts as gathering
from resolver.audit import sinks
from resolver.audit.report import ReportError, parse_since, render, summarise
from resolver.audit.trail import AuditLog
from resolver.config import AuditConfig, ConfigError, PrivacyConfig, config_from_mapping
from resolver.metrics import Metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def attempts(
    log: AuditLog,
    client: str,
    service: str,
    count: int,
    action: str = "blocked",
    name: str = "chat.deepseek.com",
):
    for _ in range(count):
        log.record(client, "default", name, "A", service, "chat_assistant", action)


def test_attempts_alike_become_one_counted_row_once_flushed(tmp_path):
    jsonl = tmp_path / "audit.jsonl"
    log = AuditLog(AuditConfig(jsonl=str(jsonl)), PrivacyConfig(), tmp_path)
    log.prepare()
    attempts(log, "10.0.0.7", "deepseek", 3)
    log.record(
        "10.0.0.7",
        "default",
        b"\x03api\x08deepseek\x03com\x00",
        28,
        "deepseek",
        "chat_assistant",
        "blocked",
    )
    log.flush()  # what the writer process does at each interval and at the end
    rows = (
        sqlite3.connect(tmp_path / "audit.db")
        .execute("SELECT client, name, qtype, action, count FROM attempts ORDER BY name")
        .fetchall()
    )
    assert rows == [
        ("10.0.0.7", "api.deepseek.com", "AAAA", "blocked", 1),
        ("10.0.0.7", "chat.deepseek.com", "A", "blocked", 3),
    ]
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert sorted(line["count"] for line in lines) == [1, 3]
    assert set(lines[0]) == {
        "time",
        "client",
        "group",
        "name",
        "qtype",
        "service",
        "category",
        "action",
        "count",
    }
    assert log.written == 4


def test_pseudonyms_hide_addresses_but_keep_clients_apart(tmp_path):
    log = AuditLog(AuditConfig(), PrivacyConfig(pseudonymize=True), tmp_path)
    log.prepare()
    attempts(log, "10.0.0.7", "deepseek", 2)
    attempts(log, "10.0.0.8", "deepseek", 1)
    log.flush()
    database = sqlite3.connect(tmp_path / "audit.db")
    clients = dict(database.execute("SELECT client, count FROM attempts").fetchall())
    assert not any("10.0.0" in c for c in clients)
    assert sorted(clients.values()) == [1, 2]
    seven = next(c for c, n in clients.items() if n == 2)
    # The key outlives a restart, so the same client keeps its pseudonym.
    again = AuditLog(AuditConfig(), PrivacyConfig(pseudonymize=True), tmp_path)
    again.prepare()
    attempts(again, "10.0.0.7", "deepseek", 1)
    again.flush()
    last = database.execute("SELECT client FROM attempts ORDER BY rowid DESC").fetchone()
    assert last[0] == seven
    rows = summarise(tmp_path / "audit.db", 3600, "service")
    assert (rows[0].blocked, rows[0].clients) == (4, 2)


def test_a_failed_write_keeps_the_records_pending_and_reports_degraded(tmp_path):
    target = tmp_path / "missing-dir" / "a.jsonl"
    metrics = Metrics()
    log = AuditLog(AuditConfig(sqlite="", jsonl=str(target)), PrivacyConfig(), tmp_path, metrics)
    attempts(log, "10.0.0.7", "deepseek", 2)
    log.flush()  # fails, and says so, but never raises into the server
    assert log.degraded
    assert "missing-dir" in log.degraded[0]
    assert sample(metrics, "aiwall_audit_degraded", sink="jsonl") == 1
    attempts(log, "10.0.0.7", "deepseek", 1)
    (tmp_path / "missing-dir").mkdir()
    log.flush()
    counts = sorted(json.loads(line)["count"] for line in target.read_text().splitlines())
    assert counts == [1, 2]
    assert log.degraded == []
    assert sample(metrics, "aiwall_audit_degraded", sink="jsonl") == 0


def test_each_sink_keeps_its_own_position(tmp_path):
    # SQLite works, JSON lines fails: SQLite's rows must not be written again and again.
    target = tmp_path / "missing-dir" / "a.jsonl"
    log = AuditLog(AuditConfig(jsonl=str(target)), PrivacyConfig(), tmp_path)
    log.prepare()
    attempts(log, "10.0.0.7", "deepseek", 4)
    for _ in range(6):
        log.flush()
    (tmp_path / "missing-dir").mkdir()
    log.flush()
    db = sqlite3.connect(tmp_path / "audit.db")
    assert db.execute("SELECT count(*), sum(count) FROM attempts").fetchone() == (1, 4)
    (line,) = target.read_text().splitlines()
    assert json.loads(line)["count"] == 4


def test_a_full_queue_is_counted_and_logged(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sinks, "QUEUE_LIMIT", 3)
    monkeypatch.setattr(gathering, "QUEUE_LIMIT", 3)
    metrics = Metrics()
    log = AuditLog(AuditConfig(), PrivacyConfig(), tmp_path, metrics)
    log.prepare()
    for index in range(5):
        attempts(log, "10.0.0.7", "deepseek", 1, name=f"n{index}.deepseek.com")
    log.flush()
    assert sample(metrics, "aiwall_audit_dropped_total") == 2
    assert "2 attempts not recorded" in caplog.text


def test_a_configured_key_file_is_never_overwritten(tmp_path):
    key = tmp_path / "key"
    key.write_text("short")
    with pytest.raises(ConfigError, match="at least 32"):
        AuditLog(AuditConfig(), PrivacyConfig(pseudonymize=True, key_file=str(key)), tmp_path)
    assert key.read_text() == "short"
    with pytest.raises(ConfigError, match="cannot read"):
        AuditLog(AuditConfig(), PrivacyConfig(pseudonymize=True, key_file="absent"), tmp_path / "x")
    assert not (tmp_path / "absent").exists()
    # validate-config says so too, before anything starts.
    with pytest.raises(ConfigError, match=r"privacy\.key_file"):
        config_from_mapping(
            {"privacy": {"pseudonymize": True, "key_file": "key"}}, base_dir=tmp_path
        )


def test_the_default_key_is_made_once_and_a_damaged_one_is_an_error(tmp_path):
    AuditLog(AuditConfig(), PrivacyConfig(pseudonymize=True), tmp_path)
    made = (tmp_path / "audit.key").read_bytes()
    AuditLog(AuditConfig(), PrivacyConfig(pseudonymize=True), tmp_path)
    assert (tmp_path / "audit.key").read_bytes() == made
    (tmp_path / "audit.key").write_text("cut")
    with pytest.raises(ConfigError):
        AuditLog(AuditConfig(), PrivacyConfig(pseudonymize=True), tmp_path)
    assert (tmp_path / "audit.key").read_text() == "cut"


def test_retention_by_age_and_by_rows(tmp_path):
    log = AuditLog(AuditConfig(retention_days=1, max_rows=3), PrivacyConfig(), tmp_path)
    log.prepare()
    for index in range(5):
        attempts(log, "10.0.0.7", "deepseek", 1, name=f"n{index}.deepseek.com")
    log.flush()
    db = sqlite3.connect(tmp_path / "audit.db")
    # Beyond max_rows, the oldest rows went at the flush.
    assert [r for (r,) in db.execute("SELECT rowid FROM attempts ORDER BY rowid")] == [3, 4, 5]
    db.execute("UPDATE attempts SET time = ? WHERE rowid = 3", (time.time() - 3 * 86400,))
    db.commit()
    log._last_retention = 0  # force the once-a-minute pass now
    log._apply_retention()
    # Past retention_days, by age.
    assert [r for (r,) in db.execute("SELECT rowid FROM attempts ORDER BY rowid")] == [4, 5]


def test_report_groups_and_formats(tmp_path):
    log = AuditLog(AuditConfig(), PrivacyConfig(), tmp_path)
    log.prepare()
    attempts(log, "10.0.0.7", "deepseek", 3)
    attempts(log, "10.0.0.9", "kimi", 1, action="report")
    log.flush()
    rows = summarise(tmp_path / "audit.db", parse_since("24h"), "service")
    assert [(r.key[0], r.blocked, r.reported) for r in rows] == [("deepseek", 3, 0), ("kimi", 0, 1)]
    table = render(rows, "service", "table")
    assert "deepseek" in table
    assert "3 blocked, 1 report-only attempts" in table
    assert render(rows, "service", "csv").splitlines()[0].startswith("service,category,blocked")
    assert json.loads(render(rows, "service", "json"))[0]["service"] == "deepseek"
    assert summarise(tmp_path / "audit.db", 3600, "service", now=time.time() + 7200) == []


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86400), ("7d", 604800), ("90", 90), ("30m", 1800)]
)
def test_since(text, seconds):
    assert parse_since(text) == seconds


def test_bad_since_and_by():
    with pytest.raises(ReportError, match="--since"):
        parse_since("yesterday")
