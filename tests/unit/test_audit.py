"""The audit trail: batched off the answer path, pseudonymised, retained, reported."""

import json
import sqlite3
import time

import pytest

from resolver.audit import AuditLog
from resolver.config import AuditConfig, PrivacyConfig
from resolver.report import ReportError, parse_since, render, summarise


def attempts(log: AuditLog, client: str, service: str, count: int, action: str = "blocked"):
    for _ in range(count):
        log.record(client, "default", "chat.deepseek.com", "A", service, "chat_assistant", action)


def test_records_reach_sqlite_and_json_lines_only_when_flushed(tmp_path):
    jsonl = tmp_path / "audit.jsonl"
    log = AuditLog(AuditConfig(jsonl=str(jsonl)), PrivacyConfig(), tmp_path)
    log.start()
    attempts(log, "10.0.0.7", "deepseek", 3)
    log.close()  # a clean shutdown writes out what is queued
    rows = (
        sqlite3.connect(tmp_path / "audit.db")
        .execute("SELECT client, service, action FROM attempts")
        .fetchall()
    )
    assert rows == [("10.0.0.7", "deepseek", "blocked")] * 3
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["name"] for line in lines] == ["chat.deepseek.com"] * 3
    assert set(lines[0]) == {
        "time",
        "client",
        "group",
        "name",
        "qtype",
        "service",
        "category",
        "action",
    }


def test_pseudonyms_hide_addresses_but_keep_clients_apart(tmp_path):
    log = AuditLog(AuditConfig(), PrivacyConfig(pseudonymize=True), tmp_path)
    log.start()
    attempts(log, "10.0.0.7", "deepseek", 2)
    attempts(log, "10.0.0.8", "deepseek", 1)
    log.close()
    clients = [
        c for (c,) in sqlite3.connect(tmp_path / "audit.db").execute("SELECT client FROM attempts")
    ]
    assert not any("10.0.0" in c for c in clients)
    assert clients[0] == clients[1] != clients[2]
    # The key outlives a restart, so the same client keeps its pseudonym.
    again = AuditLog(AuditConfig(), PrivacyConfig(pseudonymize=True), tmp_path)
    again.start()
    attempts(again, "10.0.0.7", "deepseek", 1)
    again.close()
    last = (
        sqlite3.connect(tmp_path / "audit.db")
        .execute("SELECT client FROM attempts ORDER BY rowid DESC")
        .fetchone()
    )
    assert last[0] == clients[0]
    rows = summarise(tmp_path / "audit.db", 3600, "service")
    assert rows[0].clients == 2


def test_a_failed_write_keeps_the_records_queued(tmp_path):
    log = AuditLog(
        AuditConfig(sqlite="", jsonl=str(tmp_path / "missing-dir" / "a.jsonl")),
        PrivacyConfig(),
        tmp_path,
    )
    attempts(log, "10.0.0.7", "deepseek", 2)
    with pytest.raises(FileNotFoundError, match="missing-dir"):
        log.flush()
    (tmp_path / "missing-dir").mkdir()
    log.flush()
    assert len((tmp_path / "missing-dir" / "a.jsonl").read_text().splitlines()) == 2


def test_retention_by_age_and_by_rows(tmp_path):
    log = AuditLog(AuditConfig(retention_days=1, max_rows=3), PrivacyConfig(), tmp_path)
    log.start()
    attempts(log, "10.0.0.7", "deepseek", 5)
    log.close()
    db = sqlite3.connect(tmp_path / "audit.db")
    db.execute("UPDATE attempts SET time = ? WHERE rowid = 1", (time.time() - 3 * 86400,))
    db.commit()
    log._last_retention = 0
    log._apply_retention()
    assert db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 3


def test_report_groups_and_formats(tmp_path):
    log = AuditLog(AuditConfig(), PrivacyConfig(), tmp_path)
    log.start()
    attempts(log, "10.0.0.7", "deepseek", 3)
    attempts(log, "10.0.0.9", "kimi", 1, action="report")
    log.close()
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
