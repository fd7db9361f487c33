"""Issue 15's whole pipeline, as its Done-when states it: a gateway's JSON events
→ `events` receiver → `resourcedetection` → `redaction` → `filter` → `integrity`
→ `file`, with the disk log (`file_storage`). No unmasked email or card number is
in the delivered records or in the disk log's files, the dropped noise is
reported to the client, and `sluice verify` accepts the hash chain."""

from __future__ import annotations

import json
import re
import subprocess

import runtime_helpers as rt
from conftest import SLUICE_BIN

POD_ENV = {"K8S_POD_NAME": "ai-gateway-7d9f-x2k4", "K8S_NAMESPACE_NAME": "ai", "K8S_NODE_NAME": "node-3",
           "K8S_POD_UID": "0b6f2c1e-5f0c-11ee-8c99-0242ac120002", "K8S_APP_NAME": "ai-gateway"}
EMAILS = ["jane.doe@example.com", "m.muller@firma.de", "ops+alerts@corp.example.org"]
CARDS = ["4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009"]
EMAIL_PATTERN = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def gateway_events(batch: int) -> list[dict]:
    events = []
    for i in range(50):
        n = batch * 50 + i
        if i % 5 == 4:
            # Noise the filter drops.
            events.append({"event_id": f"hb-{n}", "timestamp": "2026-11-21T10:00:00Z", "event_type": "heartbeat", "action": "allow"})
            continue
        events.append({
            "event_id": f"evt-{n:05d}", "timestamp": f"2026-11-21T10:{n % 60:02d}:00.250Z", "event_type": "blocked",
            "action": ["block", "redact", "allow", "escalate"][i % 4], "policy_name": "pii-guard", "model": "gpt-4o",
            "gateway_id": "gw-1", "user_id": f"user_{n % 9}", "org_id": "org-7",
            "prompt_excerpt": f"contact {EMAILS[n % 3]} and charge {CARDS[n % 3]} today",
            "customer": {"email": EMAILS[(n + 1) % 3], "cards": [CARDS[(n + 2) % 3], "order-1234"]},
        })
    return events


def test_gateway_events_arrive_masked_filtered_and_chained(tmp_path, track_sluice):
    out = tmp_path / "delivered.jsonl"
    log_directory = tmp_path / "disk-log"

    def config(ports):
        return {
            "extensions": {"file_storage": {"directory": str(log_directory)}},
            "receivers": {"events": {"endpoint": ports.address("events")}},
            "processors": {
                "resourcedetection": {"detectors": ["env", "system", "k8s_downward"]},
                "redaction": {"allow_all_keys": True, "summary": "info"},
                "filter": {"error_mode": "ignore", "logs": {"log_record": ['attributes["event_type"] == "heartbeat"']}},
                "integrity": {"chain": True, "stream": "gw-1"},
            },
            "exporters": {"file": {"path": str(out), "format": "json", "sending_queue": {"storage": "file_storage"}}},
            "service": {
                "extensions": ["file_storage"],
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {"logs": {"receivers": ["events"],
                                       "processors": ["resourcedetection", "redaction", "filter", "integrity"],
                                       "exporters": ["file"]}},
            },
        }

    process = rt.start_sluice(tmp_path, config, track_sluice, env=POD_ENV)
    url = process.ports.url("events", "/v1/events")
    for batch in range(6):
        body = "".join(json.dumps(e) + "\n" for e in gateway_events(batch)).encode()
        response = rt.request("POST", url, body, {"Content-Type": "application/x-ndjson"})
        assert response.status == 200, response
        answer = json.loads(response.body)
        assert answer["accepted"] == 40 and answer["rejected"] == 10, answer
    metrics_url = process.ports.url("metrics", "/metrics")
    rt.wait_until(lambda: rt.metric(rt.scrape(metrics_url), "sluice_exporter_sent_items_total", exporter="file", signal="logs") >= 240,
                  timeout=120, what="the file exporter to write 240 records")
    assert rt.metric(rt.scrape(metrics_url), "sluice_processor_filter_logs_filtered_total", processor="filter") == 60

    # The disk log's files held the records (their event ids are there) but no
    # personal data: the log stores the edited batches.
    stored = b"".join(p.read_bytes() for p in log_directory.rglob("*") if p.is_file())
    assert b"evt-00007" in stored, "the disk log's segments should hold the records"
    for secret in EMAILS + CARDS:
        assert secret.encode() not in stored, f"{secret} is in the disk log's files"
    assert not EMAIL_PATTERN.search(stored), EMAIL_PATTERN.search(stored)
    assert process.stop(timeout=60) == 0

    delivered = out.read_bytes()
    for secret in EMAILS + CARDS:
        assert secret.encode() not in delivered, f"{secret} was delivered unmasked"
    assert not EMAIL_PATTERN.search(delivered), EMAIL_PATTERN.search(delivered)
    assert not re.search(rb"\b4111[ -]?1111", delivered)
    records = [(rl["resource"], r) for line in out.read_text().splitlines()
               for rl in json.loads(line)["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]
    assert len(records) == 240
    assert not any(r["eventName"] == "heartbeat" for _, r in records)
    text = out.read_text()
    assert "[REDACTED:email]" in text and "[REDACTED:card]" in text
    assert "order-1234" in text, "values that are not personal data stay"
    resource = {kv["key"]: kv["value"].get("stringValue") for kv in records[0][0]["attributes"]}
    assert resource["k8s.pod.name"] == POD_ENV["K8S_POD_NAME"] and resource["k8s.namespace.name"] == "ai"

    result = subprocess.run([str(SLUICE_BIN), "verify", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "240 records intact, 1 chain without gaps" in result.stdout, result.stdout
