"""Lists fetched over HTTP(S), with a last good copy on disk that outlives any failure.

The rule this module keeps: the policy never loses entries because a download failed.
A refresh that fails, does not parse, or shrinks the list by more than ``max_shrink`` is
rejected and counted, and the last good copy stays in force. The copy is written
atomically (temporary file, then rename), so a crash mid-write cannot leave half a list,
and it is read at start before any port opens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resolver import __version__
from resolver.config import RemoteListConfig
from resolver.metrics import Metrics
from resolver.policy.listfile import count_entries
from resolver.policy.listformats import UNREADABLE
from resolver.storage import write_atomically

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LastGood:
    text: str
    entries: int
    fetched_at: float
    etag: str
    last_modified: str
    seed: bool = False  # the copy shipped with the config, not a download


class RefreshRejected(Exception):
    """A download that must not replace the last good copy; ``reason`` is a metric label
    (``status``: the HTTP status when that was the reason)."""

    def __init__(self, reason: str, detail: str, status: int = 0) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class Download:
    body: bytes
    etag: str
    last_modified: str


def download(
    url: str, timeout: float, limit: int, *, etag: str = "", last_modified: str = ""
) -> Download | None:
    """GET ``url``, the whole of it within ``timeout`` and at most ``limit`` bytes;
    None when the server answers 304 to the validators given. Raises RefreshRejected
    (network, timeout, http_status, too_large). Blocking: run it in a thread."""
    request = urllib.request.Request(url, headers={"User-Agent": f"aiwall/{__version__}"})
    if etag:
        request.add_header("If-None-Match", etag)
    if last_modified:
        request.add_header("If-Modified-Since", last_modified)
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = _read_before(response, deadline, limit)
            headers = response.headers
    except urllib.error.HTTPError as error:
        if error.code == 304 and (etag or last_modified):
            return None
        raise RefreshRejected("http_status", f"HTTP {error.code}", error.code) from None
    except _Deadline:
        raise RefreshRejected("timeout", f"not downloaded within timeout ({timeout:g} s)") from None
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise RefreshRejected("network", str(error)) from None
    if len(body) > limit:
        raise RefreshRejected("too_large", f"more than max_bytes ({limit} bytes)")
    return Download(body, headers.get("ETag", ""), headers.get("Last-Modified", ""))


class RemoteList:
    def __init__(
        self,
        config: RemoteListConfig,
        state_dir: Path,
        metrics: Metrics | None = None,
        seed: Path | None = None,
    ) -> None:
        self.config = config
        self._seed = seed
        self.label = config.label
        self.source = f"remote:{self.label}"
        digest = hashlib.sha256(config.url.encode()).hexdigest()[:16]
        directory = state_dir / "lists"
        self._text_path = directory / f"{digest}.txt"
        self._meta_path = directory / f"{digest}.json"
        self._metrics = metrics

    def last_good(self) -> LastGood | None:
        """The last download that was believed, else the seed copy, else None."""
        try:
            text = self._text_path.read_text(encoding="utf-8")
            meta = json.loads(self._meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return self._seed_copy()
        if meta.get("url") != self.config.url:
            return self._seed_copy()
        return LastGood(
            text=text,
            entries=int(meta.get("entries", 0)),
            fetched_at=float(meta.get("fetched_at", 0)),
            etag=str(meta.get("etag", "")),
            last_modified=str(meta.get("last_modified", "")),
        )

    def _seed_copy(self) -> LastGood | None:
        if self._seed is None:
            return None
        try:
            text = self._seed.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            log.error("list %s: cannot read the seed %s: %s", self.label, self._seed, error)
            return None
        entries = count_entries(text, self.config.format)[0]
        return LastGood(text, entries, 0.0, "", "", seed=True)

    @property
    def missing(self) -> bool:
        """No copy at all yet: neither a download nor a seed."""
        return self.last_good() is None

    def refresh(self) -> bool:
        """Fetch once (blocking; run it in a thread). True when a new copy was accepted."""
        previous = self.last_good()
        try:
            fetched = self._fetch(previous)
            entries = self._check(fetched[0], previous) if fetched is not None else 0
        except RefreshRejected as rejected:
            if self._metrics is not None:
                self._metrics.list_rejected(self.source, rejected.reason)
            log.error(
                "list %s: refresh rejected, keeping the last good copy: %s", self.label, rejected
            )
            return False
        now = time.time()
        if self._metrics is not None:
            self._metrics.list_last_success.labels(self.source).set(now)
        if fetched is None:  # 304 Not Modified: the copy we hold is current
            assert previous is not None
            self._save(previous.text, previous.entries, now, previous.etag, previous.last_modified)
            return False
        text, etag, last_modified = fetched
        self._save(text, entries, now, etag, last_modified)
        log.info("list %s: refreshed, %d entries", self.label, entries)
        return True

    def _fetch(self, previous: LastGood | None) -> tuple[str, str, str] | None:
        held = previous if previous is not None and not previous.seed else None
        got = download(
            self.config.url,
            self.config.timeout,
            self.config.max_bytes,
            etag=held.etag if held is not None else "",
            last_modified=held.last_modified if held is not None else "",
        )
        if got is None:
            return None
        return got.body.decode("utf-8", errors="replace"), got.etag, got.last_modified

    def _check(self, text: str, previous: LastGood | None) -> int:
        entries, report = count_entries(text, self.config.format)
        if entries == 0:
            raise RefreshRejected("parse", f"no line is a list entry (read as {report.read_as})")
        lines = report.unreadable + report.used
        if lines and report.unreadable / lines > self.config.max_invalid:
            raise RefreshRejected(
                "parse",
                f"{report.unreadable} of {lines} lines are unreadable, beyond max_invalid "
                f"({report.summary(UNREADABLE)})",
            )
        if previous is not None and entries < previous.entries * (1 - self.config.max_shrink):
            raise RefreshRejected(
                "shrink", f"{previous.entries} entries down to {entries}, beyond max_shrink"
            )
        return entries

    def _save(
        self, text: str, entries: int, fetched_at: float, etag: str, last_modified: str
    ) -> None:
        meta = {
            "url": self.config.url,
            "entries": entries,
            "fetched_at": fetched_at,
            "etag": etag,
            "last_modified": last_modified,
        }
        write_atomically(self._text_path, text)
        write_atomically(self._meta_path, json.dumps(meta, indent=1))


class _Deadline(Exception):
    """The whole download took longer than the list's timeout."""


def _read_before(response: Any, deadline: float, limit: int) -> bytes:
    """The body, read in pieces, each read given only the time left: a server that drips
    a byte at a time cannot stretch a download past its deadline (a socket timeout alone
    bounds each read, not the whole). Stops one byte past ``limit``."""
    sock = _socket_of(response)
    body = bytearray()
    while len(body) <= limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Deadline
        if sock is not None:
            sock.settimeout(left)
        try:
            piece = response.read1(min(65536, limit + 1 - len(body)))
        except TimeoutError:
            raise _Deadline from None
        if not piece:
            break
        body += piece
    return bytes(body)


def _socket_of(response: Any) -> socket.socket | None:
    """The socket under an http.client response (None if it cannot be found)."""
    raw = getattr(getattr(response, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None
