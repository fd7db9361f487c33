"""The HTTP plumbing the destination fixtures share (datadog_server.py,
azure_server.py, webhook_receiver.py): a threaded HTTP/1.1 server on 127.0.0.1
that hands each request to the fixture's `handle` and writes its reply, with a
clock of its own (`clock_offset` seconds from this host's) in the `Date` header,
so a test can play a destination whose clock is off.
"""

from __future__ import annotations

import email.utils
import gzip
import http.server
import json
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: object  # http.client.HTTPMessage: case-insensitive .get()
    raw: bytes

    def body(self) -> bytes:
        """The body after its Content-Encoding (gzip or none); ValueError otherwise."""
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        if encoding in ("", "identity"):
            return self.raw
        if encoding == "gzip":
            return gzip.decompress(self.raw)
        raise ValueError(f"unsupported Content-Encoding {encoding}")


@dataclass
class Reply:
    status: int
    body: object = None  # dict/list → JSON, bytes as they are, None → empty
    headers: dict = field(default_factory=dict)


class FixtureServer:
    name = "fixture"

    def __init__(self):
        self.lock = threading.RLock()
        self.clock_offset = 0.0
        self.status_counts: Counter = Counter()
        self.errors: list[str] = []  # protocol violations by the client: a test asserts there are none
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                pass

            def date_time_string(self, timestamp=None):
                return email.utils.formatdate(server.now(), usegmt=True)

            def do_POST(self):  # noqa: N802 - the base class's name
                server._serve(self)

            def do_GET(self):  # noqa: N802
                server._serve(self)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.name, daemon=True)

    def now(self) -> float:
        return time.time() + self.clock_offset

    def start(self):
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def finding(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)

    def handle(self, request: Request) -> Reply:
        raise NotImplementedError

    def _serve(self, handler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        raw = handler.rfile.read(length)
        path, _, query = handler.path.partition("?")
        request = Request(handler.command, path, dict(urllib.parse.parse_qsl(query)), handler.headers, raw)
        try:
            reply = self.handle(request)
        except Exception as error:  # noqa: BLE001 - a fixture bug must show, not hang the client
            self.finding(f"fixture error: {error!r}")
            reply = Reply(500, {"error": repr(error)})
        body = reply.body
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            content_type = "application/json"
        else:
            data = body or b""
            content_type = "text/plain"
        handler.send_response(reply.status)
        if data:
            handler.send_header("Content-Type", reply.headers.pop("Content-Type", content_type))
        handler.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
        with self.lock:
            self.status_counts[reply.status] += 1
