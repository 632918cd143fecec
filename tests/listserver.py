"""A loopback HTTP server publishing block lists, for tests of remote lists.

Each path has a body; a path can be made to fail with a status, to drip its body a byte
at a time (a server that never quite finishes), or be missing (404). ETag and
If-None-Match work, so refreshes can answer 304.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ListServer:
    def __init__(self, lists: dict[str, str] | None = None) -> None:
        self.lists = dict(lists or {})
        self.status: dict[str, int] = {}  # path -> an error status to answer instead
        self.drip: dict[str, float] = {}  # path -> seconds between bytes
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._stopping = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append((self.path, dict(self.headers)))
                status = owner.status.get(self.path)
                body = owner.lists.get(self.path)
                if status is not None or body is None:
                    self.send_error(status or 404)
                    return
                etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                data = body.encode()
                self.send_response(200)
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
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str) -> int:
        return sum(1 for requested, _ in self.requests if requested == path)

    def stop(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ListServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
