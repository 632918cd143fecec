"""A loopback HTTP server publishing block lists, for remote lists in tests.

Each path has a body (``lists``); a path can be made to fail with a status (``status``),
to drip its body a byte at a time (``drip``: a server that never quite finishes), or be
missing (404). Failures can come late (``fail_delay``), which bounds how fast a client
that retries can fail. ETag and If-None-Match work, so refreshes can answer 304.
Every request is kept (path, headers) in ``requests``.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ListServer:
    def __init__(self, lists: dict[str, str] | None = None, *, fail_delay: float = 0.0) -> None:
        self.lists = dict(lists or {})
        self.status: dict[str, int] = {}  # path -> an error status to answer instead
        self.drip: dict[str, float] = {}  # path -> seconds between bytes
        self.fail_delay = fail_delay  # seconds before an error status is sent
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._stopping = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append((self.path, dict(self.headers)))
                status = owner.status.get(self.path)
                body = owner.lists.get(self.path)
                if status is not None or body is None:
                    if owner.fail_delay and owner._stopping.wait(owner.fail_delay):
                        return
                    self.send_error(status or 404)
                    return
                etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                pause = owner.drip.get(self.path)
                if pause is None:
                    self.wfile.write(data)
                    return
                for index in range(len(data)):
                    if owner._stopping.wait(pause):
                        return
                    self.wfile.write(data[index : index + 1])
                    self.wfile.flush()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return self.base_url + path

    def stop(self) -> None:
        """Stop serving (the port closes); calling it again does nothing."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> ListServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
