"""A webhook receiver for the e2e tests that verifies every request with the
Standard Webhooks algorithm (https://www.standardwebhooks.com/), written here
independently of Sluice's Swift code:

- `webhook-id`, `webhook-timestamp` and `webhook-signature` must be present;
- the timestamp must be within 5 minutes of the receiver's clock (401
  otherwise: a stale or future timestamp may be a replay);
- one of the space-separated `v1,<base64>` signatures must equal
  base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>")), the key being the base64
  after `whsec_` in the secret (compared in constant time; 401 otherwise);
- the body is JSON: an array of events (`mode: batch`) or one event (`single`),
  each `{"type", "timestamp", "data"}`.

Each webhook-id must always come with the same body (the id is what receivers
deduplicate on); a second delivery of an id that was answered 2xx is counted as
a redelivery, and its events are not stored twice.

On demand: answer 503 to the first attempt of a fraction of ids (`fail_first`,
seeded), so retries must reuse the id; and a clock `clock_offset` seconds off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from collections import Counter

from fixture_http import FixtureServer, Reply, Request

TOLERANCE = 5 * 60


def verify(secret: str, headers, body: bytes, now: float) -> str | None:
    """None when the request is authentic, else why not."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        sent = int(timestamp)
    except ValueError:
        return "webhook-timestamp is not an integer"
    if sent < now - TOLERANCE:
        return "message timestamp too old"
    if sent > now + TOLERANCE:
        return "message timestamp too new"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return None
    return "no matching signature"


class WebhookReceiver(FixtureServer):
    name = "webhook-receiver"

    def __init__(self, secret: str, path: str = "/hooks/sluice", seed: int = 20261205):
        super().__init__()
        self.secret = secret
        self.path = path
        self.endpoint = self.url + path
        self.events: list[dict] = []
        self.ids: Counter = Counter()  # event_id → times stored
        self.bodies: dict[str, str] = {}  # webhook-id → sha256 of its body
        self.delivered: set[str] = set()  # webhook-ids answered 2xx
        self.redeliveries = 0
        self.attempts: Counter = Counter()  # webhook-id → attempts
        self.refusals: Counter = Counter()
        self.fail_first = 0.0
        self.requests = 0
        self.random = random.Random(seed)

    def handle(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != self.path:
            return Reply(404, {"error": "not found"})
        try:
            body = request.body()
        except Exception as error:  # noqa: BLE001
            self.finding(f"unreadable body: {error}")
            return Reply(400, {"error": str(error)})
        problem = verify(self.secret, request.headers, body, self.now())
        if problem:
            with self.lock:
                self.refusals[problem] += 1
            return Reply(401, {"error": problem})
        msg_id = request.headers["webhook-id"]
        digest = hashlib.sha256(body).hexdigest()
        with self.lock:
            self.requests += 1
            self.attempts[msg_id] += 1
            if self.bodies.setdefault(msg_id, digest) != digest:
                self.errors.append(f"webhook-id {msg_id} came with two different bodies")
            first = self.attempts[msg_id] == 1
            fail = first and self.fail_first and self.random.random() < self.fail_first
        if fail:
            return Reply(503, {"error": "try again"})
        try:
            payload = json.loads(body)
        except ValueError as error:
            self.finding(f"not JSON: {error}")
            return Reply(400, {"error": "not JSON"})
        events = payload if isinstance(payload, list) else [payload]
        for event in events:
            if not (isinstance(event, dict) and isinstance(event.get("type"), str) and isinstance(event.get("timestamp"), str)
                    and isinstance(event.get("data"), dict)):
                self.finding(f"not a Standard Webhooks event: {str(event)[:200]}")
                return Reply(400, {"error": "bad event"})
        with self.lock:
            if msg_id in self.delivered:
                self.redeliveries += 1
            else:
                self.delivered.add(msg_id)
                self.events += events
                for event in events:
                    self.ids[event["data"].get("event_id")] += 1
        return Reply(204)
