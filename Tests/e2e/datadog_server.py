"""A local Datadog logs intake (POST /api/v2/logs) for the e2e tests: it checks
requests as Datadog documents them (https://docs.datadoghq.com/api/latest/logs/#send-logs)
and misbehaves on demand.

Checked on every request:
- the `DD-API-KEY` header is the expected key (403 `Forbidden` otherwise, as
  Datadog answers a bad key);
- Content-Type application/json; Content-Encoding gzip or none;
- at most 5,000,000 bytes of content before compression (413 otherwise);
- a JSON array of at most 1,000 objects (400 otherwise);
- each entry at most 1,000,000 bytes as JSON: Datadog would truncate a larger one
  and still answer 202, so the fixture records it as a finding (data lost);
- each entry's `timestamp` at most 18 hours old: Datadog drops older logs after a
  202, so that is a finding too.
Accepted: 202 `{}`.

On demand: 503/429 for a while (`outage`), and `revoke()` the key.
"""

from __future__ import annotations

import json
import time
from collections import Counter

from fixture_http import FixtureServer, Reply, Request

MAX_CONTENT = 5_000_000
MAX_ENTRIES = 1000
MAX_ENTRY = 1_000_000
MAX_AGE = 18 * 3600


class DatadogServer(FixtureServer):
    name = "datadog-intake"

    def __init__(self, api_key: str):
        super().__init__()
        self.api_key = api_key
        self.entries: list[dict] = []
        self.ids: Counter = Counter()
        self.requests: list[dict] = []  # per accepted request: entries, raw and content bytes, headers
        self.bad_keys = 0
        self.outage_until = 0.0
        self.outage_status = 503

    def outage(self, seconds: float, status: int = 503) -> None:
        with self.lock:
            self.outage_until = time.monotonic() + seconds
            self.outage_status = status

    def revoke(self) -> None:
        with self.lock:
            self.api_key = "revoked"

    def handle(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/api/v2/logs":
            return Reply(404, {"errors": ["Not found"]})
        with self.lock:
            key_ok = request.headers.get("DD-API-KEY") == self.api_key
            failing = time.monotonic() < self.outage_until
            outage_status = self.outage_status
        if not key_ok:
            with self.lock:
                self.bad_keys += 1
            return Reply(403, {"errors": ["Forbidden"]})
        if failing:
            return Reply(outage_status, {"errors": ["Service Unavailable"]}, {"Retry-After": "1"} if outage_status == 429 else {})
        if (request.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            self.finding(f"Content-Type {request.headers.get('Content-Type')!r}")
            return Reply(400, {"errors": ["Bad Request"]})
        try:
            content = request.body()
        except Exception as error:  # noqa: BLE001
            self.finding(f"unreadable body: {error}")
            return Reply(400, {"errors": ["Bad Request"]})
        if len(content) > MAX_CONTENT:
            return Reply(413, {"errors": ["Payload Too Large"]})
        try:
            entries = json.loads(content)
        except ValueError as error:
            self.finding(f"not JSON: {error}")
            return Reply(400, {"errors": ["Bad Request"]})
        if isinstance(entries, dict):
            entries = [entries]
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            self.finding("the body is not an array of objects")
            return Reply(400, {"errors": ["Bad Request"]})
        if len(entries) > MAX_ENTRIES:
            self.finding(f"{len(entries)} entries in one request")
            return Reply(400, {"errors": ["Bad Request"]})
        for entry in entries:
            size = len(json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode())
            if size > MAX_ENTRY:
                self.finding(f"an entry of {size} bytes (Datadog truncates it at 1 MB): {entry.get('event_id')}")
            if isinstance(entry.get("timestamp"), int) and entry["timestamp"] < (self.now() - MAX_AGE) * 1000:
                self.finding(f"an entry {self.now() - entry['timestamp'] / 1000:.0f} s old (Datadog drops logs over 18 h old): {entry.get('event_id')}")
        with self.lock:
            self.entries += entries
            for entry in entries:
                self.ids[entry.get("event_id")] += 1
            self.requests.append({"entries": len(entries), "raw": len(request.raw), "content": len(content),
                                  "encoding": request.headers.get("Content-Encoding")})
        return Reply(202, {})
