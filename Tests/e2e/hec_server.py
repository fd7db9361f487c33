"""A local Splunk HTTP Event Collector for the splunk_hec tests: strict about the
protocol, and able to misbehave on demand.

It answers as Splunk's HEC does (docs/splunk-hec.md):

- POST /services/collector/event (also /services/collector and .../event/1.0):
  `Authorization: Splunk <token>` exactly, a body of JSON event objects one after
  another (no array, no commas), gzipped when Content-Encoding says so. Each
  event is checked: only HEC's keys; `event` present and not blank; `time` a
  number with at most three decimals; host/source/sourcetype/index non-empty
  strings when present (empty metadata must be left out); `fields` a flat object
  of strings or arrays of strings. A request that breaks any of it is answered
  400 code 6 and kept in `errors`: a test asserts there are none.
- With `acks=True`: every request must carry `X-Splunk-Request-Channel` (a GUID;
  else 400 code 10/11); a 200 carries `ackId`; POST /services/collector/ack
  `{"acks":[…]}` answers which ids are indexed, each true once `ack_delay` has
  passed (an id answered true is forgotten, as Splunk does).
- POST /services/collector/raw (also .../raw/1.0): the raw endpoint. A channel is
  required (`X-Splunk-Request-Channel`, a GUID; else 400 code 10), the body (gzip
  when Content-Encoding says so) is split at newlines and each non-empty line is
  one event, kept as {"event": <line>, "raw": True}.
- GET /services/collector/health: 200 {"text":"HEC is healthy","code":17}.

Misbehaviour, switched on by the test: a 503 (code 9, Retry-After) period; 413
for any body over `max_body` bytes; 400 code 6 for payloads holding a chosen
event_id (with `invalid-event-number`); 401 for every request after `revoke()`;
acks that never turn true for the next N payloads (`lose_acks`).

A well-formed `Authorization: Splunk <token>` with another token is answered as
Splunk answers it, 403 code 4 "Invalid token", and counted in `wrong_tokens` (a
test gives Sluice a wrong token on purpose); a malformed header is a protocol
error (401 code 3, kept in `errors`).

Events are kept only from payloads answered 200; `events()` returns them in
arrival order, each as parsed, with the request it came in.
"""

from __future__ import annotations

import gzip
import http.server
import json
import re
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

EVENT_PATHS = {"/services/collector", "/services/collector/event", "/services/collector/event/1.0"}
RAW_PATHS = {"/services/collector/raw", "/services/collector/raw/1.0"}
ACK_PATH = "/services/collector/ack"
HEALTH_PATHS = {"/services/collector/health", "/services/collector/health/1.0"}
EVENT_KEYS = {"time", "host", "source", "sourcetype", "index", "event", "fields"}
METADATA_KEYS = ("host", "source", "sourcetype", "index")
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class ProtocolError(Exception):
    """What a real HEC would refuse: (status, code, text), and which event."""

    def __init__(self, text: str, code: int = 6, status: int = 400, event_number: int | None = None):
        super().__init__(text)
        self.text, self.code, self.status, self.event_number = text, code, status, event_number


@dataclass
class Received:
    """One payload HEC accepted."""

    events: list
    raw_size: int
    content_encoding: str
    channel: str | None
    ack_id: int | None
    headers: dict
    at: float = field(default_factory=time.monotonic)


class HECServer:
    def __init__(self, token: str = "00000000-0000-0000-0000-000000000000", acks: bool = False, ack_delay: float = 0.0):
        self.token = token
        self.acks = acks
        self.ack_delay = ack_delay
        self._lock = threading.Lock()
        self.received: list[Received] = []
        self.errors: list[str] = []
        self.status_counts: Counter = Counter()
        self.request_sizes: list[tuple[int, int]] = []  # (status, body bytes as sent)
        self.health_checks = 0
        self.ack_polls = 0
        self.revoked = False
        self.wrong_tokens = 0
        self.max_body: int | None = None
        self.bad_event_ids: set[str] = set()
        self._outage_until: float | None = None
        self._outage_seconds: float = 0.0
        self.outage_retry_after = 1
        self._lost_acks = 0
        # channel -> {ack id: time it turns true (None: never)}
        self._pending_acks: dict[str, dict[int, float | None]] = {}
        self._next_ack: dict[str, int] = {}
        self.seen_headers: list[dict] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                pass

            def do_POST(self):  # noqa: N802 - the base class's name
                server._handle(self, "POST")

            def do_GET(self):  # noqa: N802
                server._handle(self, "GET")

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    # ------------------------------------------------------------------ control

    def start(self) -> HECServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    @property
    def port(self) -> int:
        return self._http.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_outage(self, seconds: float, retry_after: int = 1) -> None:
        """503 (code 9, server is busy) for `seconds` from the next event request."""
        with self._lock:
            self._outage_seconds = seconds
            self._outage_until = None
            self.outage_retry_after = retry_after

    @property
    def in_outage(self) -> bool:
        with self._lock:
            return self._outage_seconds > 0 and (self._outage_until is None or time.monotonic() < self._outage_until)

    def revoke(self) -> None:
        """Every request from now on is answered 401, as for a deleted token."""
        with self._lock:
            self.revoked = True

    def lose_acks(self, payloads: int) -> None:
        """The next `payloads` accepted payloads get ack ids that never turn true
        (an indexer that failed before writing them)."""
        with self._lock:
            self._lost_acks = payloads

    # ------------------------------------------------------------------ reading

    def events(self) -> list[dict]:
        with self._lock:
            return [event for r in self.received for event in r.events]

    def payloads(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def event_ids(self) -> Counter:
        """How often each event_id arrived (from `fields`, or from an `event` object)."""
        ids: Counter = Counter()
        for event in self.events():
            event_id = event_id_of(event)
            if event_id is not None:
                ids[event_id] += 1
        return ids

    # ------------------------------------------------------------------ handling

    def _reply(self, handler, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, str(value))
        handler.end_headers()
        handler.wfile.write(data)
        with self._lock:
            self.status_counts[status] += 1

    def _handle(self, handler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = handler.path.split("?")[0]
        with self._lock:
            self.seen_headers.append(dict(handler.headers))
        try:
            if path in HEALTH_PATHS and method == "GET":
                with self._lock:
                    self.health_checks += 1
                return self._reply(handler, 200, {"text": "HEC is healthy", "code": 17})
            self._authorize(handler)
            if method != "POST":
                raise ProtocolError("Method not allowed", code=6, status=405)
            channel = self._channel(handler)
            if path == ACK_PATH:
                return self._handle_ack(handler, body, channel)
            if path in RAW_PATHS:
                return self._handle_raw(handler, body, channel)
            if path not in EVENT_PATHS:
                raise ProtocolError("The requested URL was not found on this server.", code=404, status=404)
            self._handle_events(handler, body, channel)
        except ProtocolError as error:
            if error.status == 400 and error.code == 6 and error.event_number is None:
                with self._lock:
                    self.errors.append(error.text)
            reply = {"text": error.text, "code": error.code}
            if error.event_number is not None:
                reply["invalid-event-number"] = error.event_number
            self._reply(handler, error.status, reply)

    def _authorize(self, handler) -> None:
        value = handler.headers.get("Authorization")
        if value is None:
            raise ProtocolError("Token is required", code=2, status=401)
        scheme, _, token = value.partition(" ")
        if scheme != "Splunk" or not token or token != token.strip():
            with self._lock:
                self.errors.append(f"malformed Authorization header: {value[:8]}…")
            raise ProtocolError("Invalid authorization", code=3, status=401)
        if token != self.token:
            with self._lock:
                self.wrong_tokens += 1
            raise ProtocolError("Invalid token", code=4, status=403)
        if self.revoked:
            raise ProtocolError("Invalid token", code=4, status=401)

    def _channel(self, handler) -> str | None:
        channel = handler.headers.get("X-Splunk-Request-Channel")
        if not self.acks:
            return channel
        if channel is None:
            with self._lock:
                self.errors.append("acknowledgement is on and a request came without X-Splunk-Request-Channel")
            raise ProtocolError("Data channel is missing", code=10)
        if not GUID.match(channel):
            with self._lock:
                self.errors.append(f"invalid channel {channel!r}")
            raise ProtocolError("Invalid data channel", code=11)
        return channel

    def _handle_events(self, handler, body: bytes, channel: str | None) -> None:
        with self._lock:
            if self._outage_seconds > 0:
                now = time.monotonic()
                if self._outage_until is None:
                    self._outage_until = now + self._outage_seconds
                if now < self._outage_until:
                    self.request_sizes.append((503, len(body)))
                    retry_after = self.outage_retry_after
                else:
                    self._outage_seconds = 0
                    retry_after = None
            else:
                retry_after = None
        if retry_after is not None:
            return self._reply(handler, 503, {"text": "Server is busy", "code": 9}, {"Retry-After": retry_after})
        if self.max_body is not None and len(body) > self.max_body:
            with self._lock:
                self.request_sizes.append((413, len(body)))
            return self._reply(handler, 413, {"text": "Content-Length of %d too large (maximum is %d)" % (len(body), self.max_body), "code": 27})
        encoding, text = self._decoded(handler, body)
        if handler.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise ProtocolError(f"Content-Type {handler.headers.get('Content-Type')!r}, expected application/json")
        events = parse_events(text)
        if not events:
            raise ProtocolError("No data", code=5)
        for number, event in enumerate(events):
            if event_id_of(event) in self.bad_event_ids:
                raise ProtocolError("Invalid data format", code=6, event_number=number)
        with self._lock:
            self.request_sizes.append((200, len(body)))
            ack_id = None
            if self.acks:
                ack_id = self._next_ack.get(channel, 0)
                self._next_ack[channel] = ack_id + 1
                if self._lost_acks > 0:
                    self._lost_acks -= 1
                    ready = None
                else:
                    ready = time.monotonic() + self.ack_delay
                self._pending_acks.setdefault(channel, {})[ack_id] = ready
            self.received.append(Received(events, len(body), encoding, channel, ack_id, dict(handler.headers)))
        reply = {"text": "Success", "code": 0}
        if ack_id is not None:
            reply["ackId"] = ack_id
        self._reply(handler, 200, reply)

    @staticmethod
    def _decoded(handler, body: bytes) -> tuple[str, bytes]:
        """(Content-Encoding, the body decompressed), as HEC reads it."""
        encoding = (handler.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            try:
                return encoding, gzip.decompress(body)
            except (OSError, EOFError, zlib.error) as error:
                raise ProtocolError(f"body is not gzip: {error}") from None
        if encoding:
            raise ProtocolError(f"unsupported Content-Encoding {encoding}")
        if body[:2] == b"\x1f\x8b":
            raise ProtocolError("a gzip body without Content-Encoding: gzip")
        return encoding, body

    def _handle_raw(self, handler, body: bytes, channel: str | None) -> None:
        if channel is None or not GUID.match(channel):
            with self._lock:
                self.errors.append(f"a raw request without a valid X-Splunk-Request-Channel ({channel!r})")
            raise ProtocolError("Data channel is missing", code=10)
        encoding, text = self._decoded(handler, body)
        events = [{"event": line.decode("utf-8", errors="replace"), "raw": True} for line in text.split(b"\n") if line.strip()]
        if not events:
            raise ProtocolError("No data", code=5)
        with self._lock:
            self.request_sizes.append((200, len(body)))
            self.received.append(Received(events, len(body), encoding, channel, None, dict(handler.headers)))
        self._reply(handler, 200, {"text": "Success", "code": 0})

    def _handle_ack(self, handler, body: bytes, channel: str | None) -> None:
        if not self.acks:
            raise ProtocolError("ACK is disabled", code=14)
        try:
            request = json.loads(body)
            ids = request["acks"]
            assert isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        except (ValueError, KeyError, TypeError, AssertionError):
            with self._lock:
                self.errors.append(f"malformed ack request {body[:200]!r}")
            raise ProtocolError("Invalid data format") from None
        now = time.monotonic()
        answer = {}
        with self._lock:
            self.ack_polls += 1
            pending = self._pending_acks.setdefault(channel, {})
            for ack_id in ids:
                ready = pending.get(ack_id)
                done = ready is not None and now >= ready
                answer[str(ack_id)] = done
                if done:
                    del pending[ack_id]
        self._reply(handler, 200, {"acks": answer})


def event_id_of(event: dict):
    fields = event.get("fields") or {}
    if "event_id" in fields:
        return fields["event_id"]
    inner = event.get("event")
    if isinstance(inner, dict):
        return inner.get("event_id")
    return None


def _number_text(text: str):
    return Decimal(text)


_DECODER = json.JSONDecoder(parse_float=_number_text)
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def parse_events(data: bytes) -> list[dict]:
    """HEC's body: JSON objects one after another, checked one by one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProtocolError(f"body is not valid UTF-8: {error}") from None
    events = []
    position = _WHITESPACE.match(text, 0).end()
    while position < len(text):
        try:
            event, end = _DECODER.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise ProtocolError(f"event {len(events)} is not JSON: {error}") from None
        check_event(event, len(events))
        events.append(event)
        position = _WHITESPACE.match(text, end).end()
    return events


def check_event(event, number: int) -> None:
    def fail(why: str, code: int = 6):
        raise ProtocolError(f"event {number}: {why}", code=code)

    if not isinstance(event, dict):
        fail(f"not an object but {type(event).__name__}")
    unknown = set(event) - EVENT_KEYS
    if unknown:
        fail(f"unknown keys {sorted(unknown)}")
    if "event" not in event:
        fail("no event field", code=12)
    body = event["event"]
    if body is None or (isinstance(body, str) and not body.strip()) or body in ({}, []):
        fail("event field is blank", code=13)
    if "time" in event:
        value = event["time"]
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            fail(f"time {value!r} is not a number")
        if isinstance(value, Decimal) and value.as_tuple().exponent < -3:
            fail(f"time {value} has more than three decimals")
    for key in METADATA_KEYS:
        if key in event and (not isinstance(event[key], str) or not event[key]):
            fail(f"{key} {event[key]!r} must be a non-empty string (leave empty metadata out)")
    if "fields" in event:
        fields = event["fields"]
        if not isinstance(fields, dict):
            fail("fields is not an object", code=15)
        for key, value in fields.items():
            if isinstance(value, str):
                continue
            if isinstance(value, list) and all(isinstance(item, str) for item in value):
                continue
            fail(f"fields[{key!r}] = {value!r}: indexed fields must be strings or arrays of strings", code=15)
