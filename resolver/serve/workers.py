"""Several processes answering on the same ports, one metrics endpoint for all of them.

Python runs one thread of bytecode at a time, so more cores need more processes. The
supervisor starts ``workers`` copies of the server, each binding the DNS ports with
SO_REUSEPORT (the kernel spreads clients across them), and keeps the HTTP listener for
itself. On a scrape it asks every worker for its exposition over a pipe and merges them,
so Prometheus sees one server whose counters are the sums of the workers' counters.
Workers that die are restarted; SIGHUP and SIGTERM are passed on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from resolver.config import Config, ConfigError, load_config
from resolver.logs import setup_logging
from resolver.policy.loading import PolicyError
from resolver.serve.http import StatusServer
from resolver.serve.merge import Merged, merge_expositions
from resolver.serve.server import Server, serve_until_stopped
from resolver.serve.sockets import DnsSockets, bind_dns

log = logging.getLogger(__name__)

_EXCHANGE_TIMEOUT = 2.0
# Stats each worker counts for itself; the rest (policy size, pause) are the same in all.
_SUMMED_STATS = ("queries", "blocked", "reported", "cache_hits")
# A reload parses every list again: seconds for a million names.
_RELOAD_TIMEOUT = 120.0
_RESTART_BACKOFF = 1.0


def _worker_config(config: Config) -> Config:
    # The supervisor serves HTTP for all workers.
    return dataclasses.replace(config, listen=dataclasses.replace(config.listen, http=None))


def _worker_main(
    config: Config,
    index: int,
    conn: multiprocessing.connection.Connection,
    config_path: Path | None,
    sockets: list[DnsSockets],
) -> None:
    setup_logging(config.logging)
    try:
        asyncio.run(_serve_worker(config, index, conn, config_path, sockets))
    except KeyboardInterrupt:
        pass
    except (PolicyError, ConfigError, OSError) as error:
        log.error("worker %d not starting: %s", index, error)
        raise SystemExit(1) from None


async def _serve_worker(
    config: Config,
    index: int,
    conn: multiprocessing.connection.Connection,
    config_path: Path | None,
    sockets: list[DnsSockets],
) -> None:
    loop = asyncio.get_running_loop()
    server = Server(
        _worker_config(config),
        config_path=config_path,
        adjust=_worker_config,
        sockets=sockets,
        worker=index,
    )

    async def answer(request: bytes) -> None:
        if request == b"metrics":
            conn.send_bytes(generate_latest(server.metrics.registry))
        elif request == b"ready":
            ready, detail = await server.ready()
            conn.send_bytes((b"1" if ready else b"0") + detail.encode())
        elif request == b"reload":
            accepted, detail = await server.reload()
            conn.send_bytes((b"1" if accepted else b"0") + detail.encode())
        elif request.startswith(b"pause "):
            accepted, detail = await server.pause(float(request[6:]))
            conn.send_bytes((b"1" if accepted else b"0") + detail.encode())
        elif request.startswith(b"check "):
            name, client = json.loads(request[6:])
            try:
                conn.send_bytes(json.dumps(await server.check(name, client)).encode())
            except ValueError as error:
                conn.send_bytes(json.dumps({"error": str(error)}).encode())
        elif request == b"stats":
            conn.send_bytes(json.dumps(await server.stats()).encode())

    pending: set[asyncio.Task[None]] = set()
    gone = asyncio.Event()

    def on_request() -> None:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            # The supervisor is gone: a worker must not outlive it.
            loop.remove_reader(conn.fileno())
            gone.set()
            return
        task = loop.create_task(answer(request))
        pending.add(task)
        task.add_done_callback(pending.discard)

    def started() -> None:
        conn.send_bytes(b"started")
        loop.add_reader(conn.fileno(), on_request)

    watch = loop.create_task(gone.wait())
    watch.add_done_callback(lambda _: os.kill(os.getpid(), signal.SIGTERM))
    try:
        await serve_until_stopped(server, started, f"worker {index}")
    finally:
        watch.cancel()


class WorkerStartError(RuntimeError):
    """A worker exited before it was serving: its own log line says why."""


@dataclasses.dataclass
class _Worker:
    index: int
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def exchange(self, request: bytes, timeout: float = _EXCHANGE_TIMEOUT) -> bytes | None:
        """One request and its answer; None when the worker does not answer in time."""
        with self.lock:
            try:
                self.conn.send_bytes(request)
                if not self.conn.poll(timeout):
                    return None
                return self.conn.recv_bytes()
            except (EOFError, OSError):
                return None


class Supervisor:
    def __init__(self, config: Config, config_path: Path | None = None) -> None:
        self.config = config
        self._config_path = config_path
        self._api_token = config.api_token()
        self.count = config.worker_count
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._registry = CollectorRegistry()
        self._restarts = Counter(
            "aiwall_worker_restarts_total",
            "Worker processes restarted after they died.",
            registry=self._registry,
        )
        Gauge("aiwall_workers", "Worker processes configured.", registry=self._registry).set(
            self.count
        )
        self._status: StatusServer | None = None
        self._stopping = False
        self._sockets: list[DnsSockets] = []
        # Set by SIGTERM: a worker still starting is not waited for.
        self._halt = threading.Event()

    def _spawn(self, index: int) -> _Worker:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(self.config, index, child_end, self._config_path, self._sockets),
            name=f"aiwall-worker-{index}",
            daemon=True,
        )
        process.start()
        child_end.close()
        worker = _Worker(index, process, parent_end)
        # The worker loads its policy before it opens a port (and may wait for a required
        # list); wait for that, so a failed start is an error here, not a restart loop.
        started = False
        while not started and process.is_alive() and not self._halt.is_set():
            try:
                started = parent_end.poll(0.2) and parent_end.recv_bytes() == b"started"
            except (EOFError, OSError):
                break
        if not started:
            if process.is_alive():
                process.terminate()
            process.join(5)
            raise WorkerStartError(f"worker {index} did not start (exit code {process.exitcode})")
        return worker

    def api_token(self) -> str:
        return self._api_token

    async def exposition(self) -> bytes:
        texts = await asyncio.gather(
            *(asyncio.to_thread(w.exchange, b"metrics") for w in self._workers)
        )
        families = merge_expositions(t.decode() for t in texts if t is not None)
        merged = CollectorRegistry()
        merged.register(Merged(families))
        return generate_latest(merged) + generate_latest(self._registry)

    async def ready(self) -> tuple[bool, str]:
        answers = await asyncio.gather(
            *(asyncio.to_thread(w.exchange, b"ready") for w in self._workers)
        )
        for worker, answer in zip(self._workers, answers, strict=True):
            if answer is None or not answer.startswith(b"1"):
                detail = answer[1:].decode() if answer else "no answer"
                return False, f"worker {worker.index}: {detail}"
        return True, "ready"

    async def reload(self) -> tuple[bool, str]:
        """POST /api/reload: every worker reloads its config and lists; all must accept."""
        answers = await asyncio.gather(
            *(asyncio.to_thread(w.exchange, b"reload", _RELOAD_TIMEOUT) for w in self._workers)
        )
        for worker, answer in zip(self._workers, answers, strict=True):
            if answer is None or not answer.startswith(b"1"):
                detail = answer[1:].decode() if answer else "no answer"
                return False, f"worker {worker.index}: {detail}"
        self._reread_config()
        return True, answers[0][1:].decode() if answers and answers[0] else "reloaded"

    async def _ask_all(self, request: bytes) -> list[bytes | None]:
        return await asyncio.gather(
            *(asyncio.to_thread(w.exchange, request) for w in self._workers)
        )

    async def pause(self, minutes: float) -> tuple[bool, str]:
        """POST /api/pause: every worker pauses (each audits it); all must accept."""
        answers = await self._ask_all(f"pause {minutes}".encode())
        for worker, answer in zip(self._workers, answers, strict=True):
            if answer is None or not answer.startswith(b"1"):
                detail = answer[1:].decode() if answer else "no answer"
                return False, f"worker {worker.index}: {detail}"
        return True, answers[0][1:].decode() if answers and answers[0] else "paused"

    async def check(self, name: str, client: str) -> dict[str, object]:
        """GET /api/check: every worker holds the same policy; the first one explains."""
        answer = await asyncio.to_thread(
            self._workers[0].exchange, b"check " + json.dumps([name, client]).encode()
        )
        document: dict[str, object] = json.loads(answer) if answer else {"error": "no answer"}
        if "error" in document:
            raise ValueError(str(document["error"]))
        return document

    async def stats(self) -> dict[str, object]:
        """GET /api/stats: the workers' counts added up."""
        total: dict[str, object] = {}
        by_service: dict[str, int] = {}
        for answer in await self._ask_all(b"stats"):
            if answer is None:
                continue
            document = json.loads(answer)
            for key, value in document.items():
                if key == "blocked_by_service":
                    for service, count in value.items():
                        by_service[service] = by_service.get(service, 0) + count
                elif key in _SUMMED_STATS:
                    previous = total.get(key, 0)
                    total[key] = (previous if isinstance(previous, int) else 0) + value
                else:
                    total.setdefault(key, value)
        total["blocked_by_service"] = dict(sorted(by_service.items(), key=lambda kv: -kv[1]))
        return total

    def _on_sighup(self) -> None:
        self._signal_all(signal.SIGHUP)
        self._reread_config()

    def _reread_config(self) -> None:
        """Workers started from now on (restarts) get the new config, and the API its
        new token; a file that does not load is the workers' to report."""
        if self._config_path is None:
            return
        try:
            config = load_config(self._config_path)
            self._api_token = config.api_token()
        except ConfigError:
            return
        # Sockets and processes stay as started (the workers refuse such a reload anyway).
        self.config = dataclasses.replace(
            config, listen=self.config.listen, workers=self.config.workers
        )

    def _signal_all(self, signum: int) -> None:
        for worker in self._workers:
            if worker.process.pid is not None and worker.process.is_alive():
                os.kill(worker.process.pid, signum)

    async def _watch(self) -> None:
        """Restart workers that die, for as long as we are not stopping."""
        while not self._stopping:
            await asyncio.sleep(0.5)
            for position, worker in enumerate(self._workers):
                if worker.process.is_alive() or self._stopping:
                    continue
                log.error(
                    "worker %d died (exit code %s); restarting it",
                    worker.index,
                    worker.process.exitcode,
                )
                self._restarts.inc()
                await asyncio.sleep(_RESTART_BACKOFF)
                try:
                    self._workers[position] = await asyncio.to_thread(self._spawn, worker.index)
                except WorkerStartError as error:
                    log.error("%s", error)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # Before anything else: a signal during start-up must never take its default
        # action (SIGHUP would kill the supervisor).
        stop = asyncio.Event()

        def halt() -> None:
            stop.set()
            self._halt.set()

        loop.add_signal_handler(signal.SIGTERM, halt)
        loop.add_signal_handler(signal.SIGINT, halt)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        # Bound here, once, after checking nobody serves the addresses: the workers get
        # their sockets from us, so no other process can join them (resolver.serve.sockets).
        self._sockets = bind_dns(self.config.listen.dns, self.count)
        try:
            for index in range(self.count):
                try:
                    self._workers.append(await asyncio.to_thread(self._spawn, index))
                except WorkerStartError:
                    if stop.is_set():
                        break
                    raise
            http = self.config.listen.http
            if http is not None and not stop.is_set():
                self._status = StatusServer(self)
                await self._status.start(http.host, http.port)
            watcher = loop.create_task(self._watch())
            log.info("%d workers serving", len(self._workers))
            await stop.wait()
            self._stopping = True
            watcher.cancel()
            log.info("shutting down: finishing answers in flight")
        finally:
            self._stopping = True
            await self._stop_workers()
            for sockets in self._sockets:
                sockets.close()
        if self._status is not None:
            await self._status.stop()
        return 0

    async def _stop_workers(self) -> None:
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for worker in self._workers:
            await asyncio.to_thread(worker.process.join, max(deadline - time.monotonic(), 0.1))
            if worker.process.is_alive():
                worker.process.kill()
