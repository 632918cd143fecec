"""Reloads built in another process, so that the server's event loop never waits on them.

Parsing a list of a million names holds Python's interpreter lock for seconds; in a
helper thread it still kept the single-process server's event loop from answering for
1.5-2.4 s at each reload. So that server has each reload built by a child process,
which publishes the policy in files (``policy.published``) that the server then maps
and loads in milliseconds, in a thread.

The name table's keys are Python's ``hash()`` of each name, so a builder must have the
server's hash secret, and a newly started interpreter has another one: builders are
forked. Not from the server while it serves (a fork of a process with threads and a
running event loop may inherit a lock that another thread held, forever), but from the
"forker": a small process the server forks at start, before any thread or event loop
exists, that does nothing but wait for a request, fork one builder for it and wait for
that builder to exit. A builder exits after its one build, which hands its memory back
whole, so the host carries one idle forker (pages shared with the server) and, only
while a reload is built, one builder. The forker is each builder's parent: it alone
kills one (past ``timeout``, or when the server goes away), never by a PID that could
have been reused, and it exits when the server's end of the pipe closes.

A build that fails, crashes, is killed, runs out of time or leaves anything but a whole
policy is a PolicyError: the reload is rejected and the running policy stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

from resolver.background import step_aside
from resolver.policy.loading import BuiltPolicy, PolicyError
from resolver.policy.published import (
    BuildRequest,
    KnownCatalog,
    build_published,
    catalog_digest,
    take_result,
)
from resolver.policy.source import PolicySource

log = logging.getLogger(__name__)

# A build that runs longer is stopped (a million names take a few seconds).
BUILD_TIMEOUT = 600.0
# The server gives up on a forker that says nothing for this long past the timeout.
FORKER_GRACE = 30.0
_POLL = 0.05
# The builders' scheduling priority, relative to the server's (higher: yields more).
BUILDER_NICE = 10


class ChildBuilds:
    """The server's end: one forker process, and each build asked of it."""

    def __init__(self, pid: int, conn: Connection, timeout: float) -> None:
        self.pid = pid
        self.timeout = timeout
        self._conn = conn
        self._exited = False
        self._folders: list[Path] = []  # of the builds loaded, the one in force last
        self._known: KnownCatalog | None = None  # the catalog in force, if known

    @classmethod
    def fork(cls, timeout: float = BUILD_TIMEOUT) -> ChildBuilds:
        """Fork the forker. Call it before any thread or event loop starts."""
        ours, theirs = Pipe()
        pid = os.fork()
        if pid == 0:
            ours.close()
            _run_forker(theirs, timeout)
        theirs.close()
        return cls(pid, ours, timeout)

    @classmethod
    @contextlib.contextmanager
    def forked(cls, timeout: float = BUILD_TIMEOUT) -> Iterator[ChildBuilds]:
        builds = cls.fork(timeout)
        try:
            yield builds
        finally:
            builds.close()

    def know(self, built: BuiltPolicy) -> None:
        """The policy built at start, in the server: a build whose catalog is the same
        is loaded with this one (never unpickled, never freed). Blocking (a few ms)."""
        if built.catalog is not None:
            self._known = KnownCatalog(catalog_digest(built.catalog)[0], built.catalog)

    @property
    def usable(self) -> bool:
        return not self._exited

    async def build(self, source: PolicySource, version: int) -> BuiltPolicy:
        """The policy of ``source``'s config, built by a builder process and loaded here
        (its metrics counted into ``source``). Raises PolicyError, and then nothing
        changed."""
        run = source.config.state_dir / "run"
        try:
            directory = await asyncio.to_thread(_fresh_folder, run)
        except OSError as error:
            raise PolicyError(f"no folder for the policy builder in {run}: {error}") from None
        request = BuildRequest(source.config, source.catalog_dir, directory, version)
        try:
            problem = await self._ask(request)
            if problem:
                raise PolicyError(f"the policy builder {problem}")
            built, self._known = await asyncio.to_thread(take_result, request, source, self._known)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, directory, True)
            raise
        self._folders.append(directory)
        return built

    async def retired(self) -> None:
        """The policy before the newest one is retired (its table unmapped): remove its
        files. Unmapping the table of a file already deleted would free its pages in
        the page cache there and then, holding the interpreter lock (measured 1.5-13 ms
        for 1M names); deleting the file once unmapped frees them without it."""
        while len(self._folders) > 1:
            await asyncio.to_thread(shutil.rmtree, self._folders.pop(0), True)

    async def _ask(self, request: BuildRequest) -> str:
        """Have the forker run one build; "" when the builder exited with success, else
        what went wrong."""
        deadline = time.monotonic() + self.timeout + FORKER_GRACE
        try:
            self._conn.send(("build", request))
            await self._receive(deadline)  # ("started", the builder's PID)
            _, problem = await self._receive(deadline)
        except (OSError, EOFError, TimeoutError) as error:
            self._lost(f"{error!r}" if str(error) else type(error).__name__)
            return "process is gone; nothing was built"
        except asyncio.CancelledError:
            self.close()  # the server stops: its builder goes too (the pipe's state is lost)
            raise
        return str(problem)

    async def _receive(self, deadline: float) -> Any:
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        fd = self._conn.fileno()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, ready)
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                await readable
        finally:
            loop.remove_reader(fd)
        return self._conn.recv()  # readable: a small message, or EOF

    def _lost(self, why: str) -> None:
        """The forker died or stopped answering: stop it (our own child, not yet
        reaped), and build in this process from now on."""
        log.error(
            "the policy builder process is gone (%s): reloads are built in the server "
            "process from now on, which holds up answering while they are; restart "
            "aiwall to have them built apart again",
            why,
        )
        self.close()

    def close(self) -> None:
        """Close the pipe (the forker stops its builder, if any, and exits); wait for it,
        at most a few seconds, then kill it."""
        if self._exited:
            return
        self._exited = True
        self._conn.close()
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)
        self._folders.clear()
        deadline = time.monotonic() + 5.0
        while True:
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                return
            time.sleep(0.02)


def _fresh_folder(run: Path) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="build-", dir=run))


# --- the forker and its builders (other processes) --------------------------------------


def _run_forker(conn: Connection, timeout: float) -> NoReturn:
    code = 0
    try:
        # A reload is the server's to do; ^C in a terminal reaches the whole group, and
        # the server's exit (the pipe's end) is what ends this process.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # A build takes a core for seconds; on a host short of cores it must not take
        # it from the server, whose event loop would wait for the CPU (the builders
        # inherit this).
        step_aside("the policy builders' forker", BUILDER_NICE)
        _serve_builds(conn, timeout)
    except BaseException:
        log.exception("the policy builder's forker failed")
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


def _serve_builds(conn: Connection, timeout: float) -> None:
    while True:
        try:
            _, request = conn.recv()
        except (EOFError, OSError):
            return  # the server is gone
        pid = os.fork()
        if pid == 0:
            _run_builder(conn, request)
        conn.send(("started", pid))
        problem, server_gone = _wait_builder(pid, conn, timeout)
        if server_gone:
            shutil.rmtree(request.directory, ignore_errors=True)
            return
        conn.send(("exited", problem))


def _wait_builder(pid: int, conn: Connection, timeout: float) -> tuple[str, bool]:
    """Wait for the builder ``pid`` (our child) to exit: (what went wrong, "" if
    nothing; whether the server went away meanwhile). Kills it past ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return _described(os.waitstatus_to_exitcode(status)), False
        if time.monotonic() > deadline:
            _kill(pid)
            return f"ran over {timeout:g} s and was stopped", False
        if conn.poll(_POLL):  # nothing is sent while a build runs: the server is gone
            _kill(pid)
            return "", True


def _described(code: int) -> str:
    if code == 0:
        return ""
    if code < 0:
        return f"was killed by signal {signal.Signals(-code).name}"
    return f"failed with exit status {code} (its error is logged above)"


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _run_builder(conn: Connection, request: BuildRequest) -> NoReturn:
    code = 1
    try:
        conn.close()
        build_published(request)
        code = 0
    except BaseException:
        log.exception("the policy builder failed")
    finally:
        logging.shutdown()
        os._exit(code)
