"""What an administrator can ask a running server: the control operations.

One protocol, implemented by the single-process server and by the supervisor of several
workers, so the HTTP endpoint (``serve.http``) is built once, against it.
"""

from __future__ import annotations

from typing import Protocol


class Control(Protocol):
    async def exposition(self) -> bytes:
        """/metrics: the Prometheus text exposition."""

    async def ready(self) -> tuple[bool, str]:
        """/readyz: whether to send clients here, and why not."""

    async def reload(self) -> tuple[bool, str]:
        """POST /api/reload: read the config and every list again; (accepted, detail)."""

    async def check(self, name: str, client: str) -> dict[str, object]:
        """GET /api/check: the decision for a name explained (ValueError: not a name)."""

    async def stats(self) -> dict[str, object]:
        """GET /api/stats: counts since start."""

    async def pause(self, minutes: float) -> tuple[bool, str]:
        """POST /api/pause: blocking off for a while (bounded, audited)."""

    def api_token(self) -> str:
        """The bearer token in force ("" disables the API); asked per request, so a
        reload rotates it."""
