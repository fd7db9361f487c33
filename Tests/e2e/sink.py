"""A local OTLP/HTTP destination for the runtime tests: what sluice's `otlphttp`
exporter delivers to.

It accepts POST /v1/logs, /v1/traces and /v1/metrics with protobuf or OTLP/JSON
bodies (gzip, deflate or none), parses them with the pb2 classes, keeps every
request it answered 200, and answers with an empty Export*ServiceResponse. It can
be told to fail for a while (an outage: 503 with Retry-After) to test retries.
Anything it cannot parse is answered 400 and kept in `errors`, so a test can
assert that sluice never sent it garbage.
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field

from conftest import request_class

PATH_TO_SIGNAL = {"/v1/logs": "logs", "/v1/traces": "traces", "/v1/metrics": "metrics"}


@dataclass
class Outage:
    """Answer `status` (with Retry-After) for `seconds`, counted from the first
    request that arrives during the outage (or from when it was set, if
    `from_first_request` is false)."""

    seconds: float
    status: int = 503
    retry_after: int | None = 1
    from_first_request: bool = True
    started: float | None = None
    ended: float | None = None

    def active(self, now: float) -> bool:
        if self.started is None:
            self.started = now
        if now - self.started < self.seconds:
            return True
        if self.ended is None:
            self.ended = now
        return False


@dataclass
class Received:
    signal: str
    message: object
    content_type: str
    content_encoding: str
    raw_size: int
    at: float = field(default_factory=time.monotonic)


class OTLPSink:
    def __init__(self, host: str = "127.0.0.1"):
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.received: list[Received] = []
        self.errors: list[str] = []
        self.status_counts: Counter = Counter()
        self.outage: Outage | None = None
        # Seconds each accepted request takes (a slow destination).
        self.delay = 0.0
        # Bodies larger than this (as sent) are refused with 413, as a server or
        # proxy with a body limit does; None: no limit.
        self.max_body: int | None = None
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                pass

            def do_POST(self):  # noqa: N802 - the base class's name
                sink._handle(self)

        self._server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-sink", daemon=True)

    # -- life cycle -----------------------------------------------------------

    def start(self) -> OTLPSink:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OTLPSink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- control ----------------------------------------------------------------

    def set_outage(self, seconds: float, status: int = 503, retry_after: int | None = 1, from_first_request: bool = True) -> Outage:
        with self._lock:
            self.outage = Outage(seconds, status, retry_after, from_first_request, None if from_first_request else time.monotonic())
            return self.outage

    # -- request handling -----------------------------------------------------

    @staticmethod
    def _read_body(handler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(handler.rfile.read(size))
                handler.rfile.readline()
        return handler.rfile.read(int(handler.headers.get("Content-Length", "0")))

    def _answer(self, handler, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
        with self._lock:
            self.status_counts[status] += 1

    def _handle(self, handler) -> None:
        body = self._read_body(handler)
        path = handler.path.split("?")[0]
        signal = PATH_TO_SIGNAL.get(path)
        if signal is None:
            self._error(handler, 404, f"unknown path {handler.path}")
            return
        with self._lock:
            outage = self.outage
            failing = outage is not None and outage.active(time.monotonic())
        if failing:
            extra = {"Retry-After": str(outage.retry_after)} if outage.retry_after is not None else {}
            self._answer(handler, outage.status, b"", "application/x-protobuf", extra)
            return
        if self.max_body is not None and len(body) > self.max_body:
            self._answer(handler, 413, f"request body of {len(body)} bytes is over {self.max_body}".encode(), "text/plain")
            return
        content_type = handler.headers.get("Content-Type", "").split(";")[0].strip().lower()
        encoding = handler.headers.get("Content-Encoding", "").strip().lower()
        try:
            data = body
            if encoding == "gzip":
                data = gzip.decompress(body)
            elif encoding == "deflate":
                data = zlib.decompress(body)
            elif encoding not in ("", "identity"):
                raise ValueError(f"unexpected Content-Encoding {encoding!r}")
            if content_type in ("application/x-protobuf", "application/protobuf"):
                message = request_class(signal).FromString(data)
            elif content_type == "application/json":
                from otlp_samples import otlp_json_to_message

                message = otlp_json_to_message(data, request_class(signal))
            else:
                raise ValueError(f"unexpected Content-Type {content_type!r}")
        except Exception as error:  # noqa: BLE001 - everything unparsable is a finding
            self._error(handler, 400, f"{path} ({content_type}, {encoding or 'identity'}): {error!r}")
            return
        if self.delay:
            time.sleep(self.delay)
        with self._changed:
            self.received.append(Received(signal, message, content_type, encoding, len(body)))
            self._changed.notify_all()
        if content_type == "application/json":
            self._answer(handler, 200, b"{}", "application/json")
        else:
            # An empty Export*ServiceResponse is zero bytes of protobuf.
            self._answer(handler, 200, b"", "application/x-protobuf")

    def _error(self, handler, status: int, message: str) -> None:
        with self._lock:
            self.errors.append(message)
        self._answer(handler, status, message.encode(), "text/plain")

    # -- reading what arrived -------------------------------------------------

    def messages(self, signal: str) -> list:
        with self._lock:
            return [r.message for r in self.received if r.signal == signal]

    def requests(self, signal: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if signal is None or r.signal == signal]

    def wait_for(self, predicate, timeout: float, poll: float = 0.2) -> bool:
        """Waits until `predicate(self)` is true; returns whether it became true."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                self._changed.wait(min(poll, remaining))
