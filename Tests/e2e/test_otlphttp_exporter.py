"""The `otlphttp` exporter against a destination with a body limit (the exporter
kit's split on 413, issue 12): a request over the limit ends in smaller accepted
requests, never a loop; a record too large even alone goes to the dead-letter file
with the reason, and its neighbours are delivered."""

from __future__ import annotations

import json

import otlp_samples as samples
import runtime_helpers as rt
from test_durability import _arrived
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

LIMIT = 1 << 20


def _request(ids: list[str], padding: int, big: dict[str, int] | None = None) -> bytes:
    message = ExportLogsServiceRequest()
    scope = message.resource_logs.add().scope_logs.add()
    for event_id in ids:
        record = scope.log_records.add()
        record.time_unix_nano = samples.BASE_TIME
        record.body.string_value = f"decision {event_id}"
        record.attributes.add(key="event_id").value.string_value = event_id
        record.attributes.add(key="prompt").value.string_value = "p" * (big or {}).get(event_id, padding)
    return message.SerializeToString()


def _send(url: str, body: bytes) -> None:
    """Posts as an OTLP client does: a 429/503 (the log is full while the exporter
    splits) is retried after a pause."""
    rt.wait_until(lambda: rt.post(url, body).status == 200, 120, poll=0.2, what="the request accepted")


def _config(sink):
    def config(ports):
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            # Batches of up to 8 requests of ~400 KB: most payloads are over the limit.
            "processors": {"batch": {"send_batch_size": 8000, "timeout": "200ms"}},
            "exporters": {"otlphttp": {"endpoint": sink.endpoint, "compression": "none",
                                       "retry_on_failure": {"initial_interval": "100ms", "max_interval": "1s"}}},
            "service": {
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {"logs": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["otlphttp"]}},
            },
        }
    return config


def test_requests_over_the_destinations_body_limit_are_split_until_they_fit(tmp_path, track_sluice, otlp_sink):
    otlp_sink.max_body = LIMIT
    process = rt.start_sluice(tmp_path, _config(otlp_sink), track_sluice)
    url = process.ports.url("otlp", "/v1/logs")
    sent: list[str] = []
    for n in range(40):
        ids = [f"evt-s-{n:03d}-{i:04d}" for i in range(1000)]
        _send(url, _request(ids, padding=300))
        sent += ids
    # One record of 1.5 MiB: over the limit even alone.
    big = "evt-big-0000"
    _send(url, _request([big, "evt-big-0001"], padding=300, big={big: 3 << 19}))
    sent.append("evt-big-0001")
    status_url = process.ports.url("metrics", "/status")

    def done():
        arrived = _arrived(otlp_sink)
        return set(sent) <= set(arrived) and rt.exporter_status(status_url)["otlphttp"]["lag"]["items"] == 0

    rt.wait_until(done, 120, what=f"all {len(sent)} records under the {LIMIT}-byte limit")
    arrived = _arrived(otlp_sink)
    duplicated = {k: n for k, n in arrived.items() if n > 1}
    assert not duplicated, f"{len(duplicated)} records arrived twice, e.g. {list(duplicated.items())[:5]}"
    assert big not in arrived
    assert all(r.raw_size <= LIMIT for r in otlp_sink.requests("logs")), "a body over the limit was taken"
    refused = otlp_sink.status_counts[413]
    accepted = len(otlp_sink.requests("logs"))
    print(f"\notlphttp under a {LIMIT}-byte limit: {accepted} accepted requests, {refused} answered 413")
    assert refused >= 1
    # Halving bounds the 413s: at most one per accepted request and one per halving
    # of the oversized record's request; a loop would make thousands.
    assert refused <= 2 * accepted + 24, (refused, accepted)
    path = process.data_dir / "dead-letter" / "otlphttp.ndjson"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    ids = [kv["value"]["stringValue"] for line in lines for r in line["request"]["resourceLogs"]
           for s in r["scopeLogs"] for rec in s["logRecords"] for kv in rec["attributes"] if kv["key"] == "event_id"]
    assert ids == [big], ids
    assert "413" in lines[0]["reason"], lines[0]["reason"]
    assert process.stop(timeout=30) == 0
