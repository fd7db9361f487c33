"""The `webhook` exporter end to end: the real `sluice` binary, the OpenTelemetry
Python SDK in front of it, and webhook_receiver.py — which verifies every
request with the Standard Webhooks algorithm written independently in Python and
refuses stale timestamps — behind it (issue 14).

1. Batch mode: 20,000 SDK records reach the receiver exactly once per event_id
   while a fifth of first attempts are answered 503; every retry carries the same
   webhook-id and body, with a fresh timestamp and a valid signature.
2. Single mode with `event_types` globs: one event per request, only the types
   asked for, the others counted as filtered.
3. A clock skew: the receiver's clock is 10 minutes ahead, so it refuses every
   timestamp as stale; /status and the log say the clocks disagree, by how much.
4. docs/webhooks.md's Python receiver and curl + openssl recipe, run as written.

No assertion is about time: timeouts only keep a broken build from hanging.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections import Counter

import destination_helpers as dh
import runtime_helpers as rt
from conftest import REPO_ROOT
from test_splunk_hec import dead_lettered_ids, gateway_attributes, log_request, send_sdk_logs
from webhook_receiver import WebhookReceiver

rt.env_without_proxies()

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
RECORDS = 20_000


def webhook_settings(receiver: WebhookReceiver, **more) -> dict:
    return {"endpoint": receiver.endpoint, "secret": SECRET, **more}


def test_batches_of_sdk_records_arrive_once_each_signed_with_stable_ids_across_retries(tmp_path, track_sluice):
    with WebhookReceiver(SECRET) as receiver:
        receiver.fail_first = 0.2
        process = rt.start_sluice(tmp_path, dh.logs_pipeline("webhook", webhook_settings(receiver)), track_sluice)
        results = send_sdk_logs(process.ports.url("otlp", "/v1/logs"), RECORDS, "wh")
        assert results == Counter({"SUCCESS": RECORDS}), results
        ids = {f"wh-{i:06d}" for i in range(RECORDS)}
        arrived = dh.wait_delivered(process, "webhook", receiver, ids, "the 20,000 events at the receiver")
        assert receiver.errors == [], receiver.errors[:5]
        assert receiver.refusals == Counter(), receiver.refusals
        assert set(arrived) == ids and all(n == 1 for n in arrived.values()), arrived.most_common(3)
        retried = [i for i, n in receiver.attempts.items() if n > 1]
        assert retried, "no webhook was retried"
        assert receiver.redeliveries == 0

        event = next(e for e in receiver.events if e["data"]["event_id"] == "wh-000002")
        expected = gateway_attributes("wh", 2)
        assert event["type"] == expected["event_type"] == "escalated"
        for name in ("action", "policy_name", "model", "user_id", "org_id"):
            assert event["data"][name] == expected[name], (name, event)
        assert event["data"]["resource"]["service.name"] == "ai-gateway"
        assert max(len(json.dumps(e)) for e in receiver.events) < 4096

        log = process.stderr()
        assert '"msg":"exporter degraded' in log and '"msg":"exporter recovered' in log
        assert dh.status(process, "webhook")["status"] == "active"
        print(f"\n{RECORDS} SDK records: {receiver.requests} signed requests, {len(retried)} webhook-ids retried "
              f"(each with its first body), {receiver.status_counts[503]} answered 503")
        assert process.stop(timeout=60) == 0
        assert SECRET not in process.stderr()


def test_single_mode_sends_one_event_per_request_and_only_the_types_asked_for(tmp_path, track_sluice):
    with WebhookReceiver(SECRET) as receiver:
        process = rt.start_sluice(tmp_path, dh.logs_pipeline("webhook", webhook_settings(receiver, mode="single", event_types=["block*", "esc?lated"])), track_sluice)
        ids, body = log_request("one", 0, 200)
        assert rt.post(process.ports.url("otlp", "/v1/logs"), body).status == 200
        wanted = {i for n, i in enumerate(ids) if gateway_attributes("one", n)["event_type"] in ("blocked", "escalated")}
        arrived = dh.wait_delivered(process, "webhook", receiver, wanted, "the blocked and escalated events")
        assert set(arrived) == wanted and all(n == 1 for n in arrived.values())
        assert receiver.requests == len(wanted), "single mode sends one event per request"
        assert {e["type"] for e in receiver.events} == {"blocked", "escalated"}
        assert receiver.errors == [] and receiver.refusals == Counter()
        m = rt.scrape(process.ports.url("metrics", "/metrics"))
        assert rt.metric(m, "sluice_webhook_filtered_items_total", exporter="webhook") == 200 - len(wanted)
        assert process.stop(timeout=60) == 0


def test_a_clock_skew_shows_in_status_as_the_clocks_disagreeing(tmp_path, track_sluice):
    with WebhookReceiver(SECRET) as receiver:
        receiver.clock_offset = 10 * 60
        process = rt.start_sluice(tmp_path, dh.logs_pipeline("webhook", webhook_settings(receiver)), track_sluice)
        ids, body = log_request("skew", 0, 40)
        assert rt.post(process.ports.url("otlp", "/v1/logs"), body).status == 200
        entry = rt.wait_until(lambda: (e := dh.status(process, "webhook"))["dead_lettered_items"] == 40 and e, dh.DELIVERY_TIMEOUT, what="40 events dead-lettered")
        assert entry["status"] == "failed", entry
        error = entry["last_error"]
        assert "HTTP 401" in error and "message timestamp too old" in error, error
        assert "s ahead of this host's" in error and "more than 5 minutes off" in error and "NTP" in error, error
        assert receiver.refusals["message timestamp too old"] >= 1 and receiver.ids == Counter()
        assert sorted(dead_lettered_ids(dh.dead_letters(process, "webhook"))) == sorted(ids)
        assert any(line.get("msg", "").startswith("exporter failed") and "ahead of this host" in json.dumps(line) for line in process.log_lines())
        print(f"\nclock skew: /status last_error {error!r}")
        assert process.stop(timeout=60) == 0


def _doc_blocks(language: str) -> list[str]:
    text = (REPO_ROOT / "docs" / "webhooks.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_the_receiver_and_the_openssl_recipe_in_docs_webhooks_md_work(tmp_path, track_sluice):
    """docs/webhooks.md's Python receiver takes what Sluice sends, and its curl +
    openssl recipe signs a request that receiver takes."""
    script = tmp_path / "receiver.py"
    script.write_text(_doc_blocks("python")[0])
    port = rt.free_port()
    out = open(tmp_path / "receiver.out", "w+")
    receiver = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "WEBHOOK_SECRET": SECRET, "PORT": str(port)},
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        rt.wait_until(lambda: _listening(port), 60, what="the documented receiver to listen")
        process = rt.start_sluice(tmp_path, dh.logs_pipeline("webhook", {"endpoint": f"http://127.0.0.1:{port}/sluice", "secret": SECRET}), track_sluice)
        ids, body = log_request("doc", 0, 50)
        dh.post_logs(process, body)

        def printed() -> set[str]:
            return {json.loads(line)["event_id"] for line in (tmp_path / "receiver.out").read_text().splitlines() if line.startswith("{")}

        rt.wait_until(lambda: set(ids) <= printed() and dh.status(process, "webhook")["lag"]["items"] == 0, dh.DELIVERY_TIMEOUT,
                      what="the documented receiver to print every event")
        assert dh.status(process, "webhook")["status"] == "active"
        assert process.stop(timeout=60) == 0

        # The recipe: its key line, then the "send a signed test event" block, to this receiver.
        key_line = _doc_blocks("sh")[0].splitlines()[0]
        send = _doc_blocks("sh")[1].replace("https://hooks.example.com/sluice", f"http://127.0.0.1:{port}/sluice")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", key_line + "\n" + send], env={**os.environ, "WEBHOOK_SECRET": SECRET},
                                capture_output=True, text=True, timeout=60)
        assert result.stdout.strip() == "204", (result.stdout, result.stderr)
        rt.wait_until(lambda: "test-1" in printed(), 30, what="the test event to be printed")
        # The same request with another body is refused.
        forged = subprocess.run(["bash", "-euo", "pipefail", "-c", key_line + "\n" + send.replace('--data-binary "$body"', "--data-binary \"${body/block/allow}\"")],
                                env={**os.environ, "WEBHOOK_SECRET": SECRET}, capture_output=True, text=True, timeout=60)
        assert forged.stdout.strip() == "401", (forged.stdout, forged.stderr)
    finally:
        receiver.kill()
        receiver.wait(timeout=30)
        out.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
