"""The rows the audit writer makes from attempts: exactly what the SQLite table, the JSON
lines and the PostgreSQL arrays hold, for every kind of name and client."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.audit.attempts import AttemptKey, Seen
from resolver.audit.postgres import PostgresSink
from resolver.audit.trail import Attempt, AuditLog
from resolver.config import AuditConfig, PrivacyConfig
from resolver.dns import wire

# --- name_to_text against its definition -------------------------------------------------

# RFC 1035 5.1: a byte that is not printable ASCII, and "." or "\" inside a label, is
# written \DDD (decimal); every other byte is itself, case kept (RFC 4343 2.1).
ESCAPED = {b: f"\\{b:03d}" for b in range(256) if not 0x21 <= b <= 0x7E or b in b".\\"}


def expected_text(name: bytes) -> str:
    """Label by label, up to the root label or the end of the bytes."""
    texts: list[str] = []
    rest = name
    while rest and rest[0]:
        label, rest = rest[1 : 1 + rest[0]], rest[1 + rest[0] :]
        texts.append("".join(ESCAPED.get(b, chr(b)) for b in label))
    return ".".join(texts)


def encode(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (encode(b"chat", b"deepseek", b"com"), "chat.deepseek.com"),
        (encode(b"Chat", b"DeepSeek", b"COM"), "Chat.DeepSeek.COM"),
        (encode(b"_dmarc", b"x-1", b"09"), "_dmarc.x-1.09"),
        (encode(b"a.b", b"ok"), "a\\046b.ok"),
        (encode(b"back\\slash"), "back\\092slash"),
        (encode(b"sp ace", b"\x00\xff", b"\x7f"), "sp\\032ace.\\000\\255.\\127"),
        (encode(b"*", b"x!y"), "*.x!y"),
        (b"\x00", ""),
        (b"\x03ab", "ab"),  # cut short: what there is
    ],
    ids=[
        "plain",
        "case kept",
        "underscore hyphen digits",
        "dot in a label",
        "backslash",
        "non-printable",
        "printable punctuation",
        "root",
        "cut short",
    ],
)
def test_name_to_text(name: bytes, text: str) -> None:
    assert wire.name_to_text(name) == text == expected_text(name)


# Label lengths whose length byte is a character a plain label holds ("-" is 45, digits
# 48 to 57), and the longest labels: the byte translation of plain names stops at 44.
@pytest.mark.parametrize("length", [1, 44, 45, 46, 48, 57, 58, 63])
def test_long_plain_labels(length: int) -> None:
    label = (b"0-9a" * 16)[:length]
    name = encode(b"x", label, b"1" * length, b"com")
    assert wire.name_to_text(name) == f"x.{label.decode()}.{'1' * length}.com"


@pytest.mark.parametrize(
    "name", [encode(b"chat", b"deepseek", b"com"), encode(b"a.b", b"\x00"), b"\x00"]
)
@pytest.mark.parametrize("after", [b"\x00\x01\x00\x01", b"\x03com\x00", b"\xff", b"\x00"])
def test_bytes_after_the_root_label_are_ignored(name: bytes, after: bytes) -> None:
    assert wire.name_to_text(name + after) == wire.name_to_text(name)


plain_labels = st.from_regex(rb"[-0-9A-Z_a-z]{1,63}", fullmatch=True)
any_labels = st.binary(min_size=1, max_size=63)


@settings(max_examples=400, deadline=None, database=None)
@given(
    labels=st.lists(plain_labels | any_labels, max_size=6),
    after=st.binary(max_size=6),
    cut=st.integers(min_value=0, max_value=400),
)
def test_name_to_text_follows_its_definition(labels: list[bytes], after: bytes, cut: int) -> None:
    name = encode(*labels)
    assert wire.name_to_text(name) == expected_text(name)
    assert wire.name_to_text(name + after) == wire.name_to_text(name)
    assert wire.name_to_text(name[:cut]) == expected_text(name[:cut])


# --- the rows in each sink ---------------------------------------------------------------

KEY = b"0123456789abcdef" * 4
# The keys of a JSON line, in order: the table's columns.
COLUMNS = ("time", "client", "group", "name", "qtype", "service", "category", "action", "count")


def pseudonym(client: str) -> str:
    return "client-" + hmac.new(KEY, client.encode(), hashlib.sha256).hexdigest()[:16]


# (attempt key, first seen, count) -> the row it becomes (client as recorded).
CASES: list[tuple[AttemptKey, Seen, tuple[object, ...]]] = [
    (
        (
            "192.0.2.7",
            "staff",
            encode(b"chat", b"deepseek", b"com"),
            1,
            "deepseek",
            "chat",
            "blocked",
        ),
        (1_700_000_000.25, 3),
        (
            1_700_000_000.25,
            "192.0.2.7",
            "staff",
            "chat.deepseek.com",
            "A",
            "deepseek",
            "chat",
            "blocked",
            3,
        ),
    ),
    (
        ("192.0.2.7", "staff", encode(b"a.b", b"back\\", b"\x01\xe9"), 65, "s", "c", "report"),
        (1_700_000_001.0, 1),
        (
            1_700_000_001.0,
            "192.0.2.7",
            "staff",
            "a\\046b.back\\092.\\001\\233",
            "HTTPS",
            "s",
            "c",
            "report",
            1,
        ),
    ),
    (
        ("2001:db8::1", "lab", b"\x00", 2, "s", "c", "paused"),
        (1_700_000_002.5, 2),
        (1_700_000_002.5, "2001:db8::1", "lab", "", "NS", "s", "c", "paused", 2),
    ),
    (
        ("2001:db8::1", "lab", "Text.Example", "65", "s", "c", "blocked"),
        (1_700_000_003.0, 1),
        (1_700_000_003.0, "2001:db8::1", "lab", "Text.Example", "65", "s", "c", "blocked", 1),
    ),
    (
        ("192.0.2.7", "staff", encode(b"x") + b"\x00\x10\x00\x01", 4099, "s", "ç", "blocked"),
        (1_700_000_004.0, 7),
        (1_700_000_004.0, "192.0.2.7", "staff", "x", "4099", "s", "ç", "blocked", 7),
    ),
]


def flushed(tmp_path: Path, privacy: PrivacyConfig) -> tuple[list[tuple[object, ...]], str]:
    jsonl = tmp_path / "audit.jsonl"
    # Retention long enough to keep rows of 2023.
    log = AuditLog(AuditConfig(jsonl=str(jsonl), retention_days=3650), privacy, tmp_path)
    log.prepare()
    # Two batches, as the hand-over brings them.
    log.absorb([{key: seen} for key, seen, _ in CASES[:2]])
    log.absorb([{key: seen for key, seen, _ in CASES[2:]}])
    log.flush()
    with sqlite3.connect(tmp_path / "audit.db") as db:
        stored = list(db.execute("SELECT * FROM attempts ORDER BY rowid"))
    return stored, jsonl.read_text(encoding="utf-8")


def json_line(row: tuple[object, ...]) -> str:
    return json.dumps(dict(zip(COLUMNS, row, strict=True)), ensure_ascii=False)


def test_rows_in_sqlite_and_json_lines(tmp_path: Path) -> None:
    stored, lines = flushed(tmp_path, PrivacyConfig())
    assert stored == [row for _, _, row in CASES]
    assert lines.splitlines() == [json_line(row) for _, _, row in CASES]
    # The exact bytes of one line: key order, spacing, non-ASCII kept.
    assert lines.splitlines()[4] == (
        '{"time": 1700000004.0, "client": "192.0.2.7", "group": "staff", "name": "x", '
        '"qtype": "4099", "service": "s", "category": "ç", "action": "blocked", "count": 7}'
    )


def test_rows_with_pseudonyms(tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(KEY)
    privacy = PrivacyConfig(pseudonymize=True, key_file=str(tmp_path / "key"))
    stored, lines = flushed(tmp_path, privacy)
    expected = [(row[0], pseudonym(str(row[1])), *row[2:]) for _, _, row in CASES]
    assert stored == expected
    assert lines.splitlines() == [json_line(row) for row in expected]
    assert len({row[1] for row in stored}) == 2  # two clients, two pseudonyms


def test_postgres_arrays_hold_the_same_rows(tmp_path: Path) -> None:
    log = AuditLog(AuditConfig(sqlite=""), PrivacyConfig(), tmp_path)
    log.absorb([{key: seen for key, seen, _ in CASES}])
    rows = log._rows(log.attempts.take()[0])
    sink = PostgresSink(AuditConfig(postgres="host=db"), Path("."), "r1")
    arrays = sink._arrays(rows, 41)
    expected = [row for _, _, row in CASES]
    assert arrays == {
        "replica": "r1",
        "writer": sink.writer_id,
        "first": 41,
        **{column: [row[i] for row in expected] for i, column in enumerate(COLUMNS)},
    }
    # Lists, which psycopg sends as arrays.
    assert all(type(arrays[column]) is list for column in COLUMNS)


def test_an_attempt_is_its_row() -> None:
    attempt = Attempt(1.5, "c", "g", "n.example", "A", "s", "c", "blocked")
    assert tuple(attempt) == (1.5, "c", "g", "n.example", "A", "s", "c", "blocked", 1)
    assert attempt.count == 1
    assert tuple(attempt._asdict()) == COLUMNS


def test_a_large_flush_is_made_and_written_in_pieces_with_the_core_given_way_between(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer shares the server's core: a flush of many attempts is made into rows
    and inserted WRITE_PIECE at a time, with ``give_way`` between the pieces, and every
    row still arrives, in order."""
    from resolver.audit import sinks, trail

    given_way: list[str] = []
    monkeypatch.setattr(trail, "give_way", lambda: given_way.append("made"))
    monkeypatch.setattr(sinks, "give_way", lambda: given_way.append("written"))
    count = 2 * sinks.WRITE_PIECE + 7
    log = AuditLog(AuditConfig(retention_days=3650), PrivacyConfig(), tmp_path)
    log.prepare()
    log.absorb(
        [
            {
                ("192.0.2.1", "staff", f"n{i}.example", "1", "s", "c", "blocked"): (
                    1_700_000_000.0 + i,
                    1,
                )
                for i in range(count)
            }
        ]
    )
    log.flush()
    # Three pieces made into rows, then the same three written.
    assert given_way == ["made"] * 3 + ["written"] * 3
    with sqlite3.connect(tmp_path / "audit.db") as db:
        names = [row[0] for row in db.execute("SELECT name FROM attempts ORDER BY rowid")]
    assert names == [f"n{i}.example" for i in range(count)]
