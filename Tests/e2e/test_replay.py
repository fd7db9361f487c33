"""`sluice replay`: what a destination refused for good goes to the dead-letter
file, and replay sends it through the exporter again once the destination is
fixed, with the records' own ids so the destination can deduplicate."""

from __future__ import annotations

import json
import subprocess

import otlp_samples as samples
import runtime_helpers as rt
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest


def _request(event_ids: list[str]) -> bytes:
    message = ExportLogsServiceRequest()
    scope = message.resource_logs.add().scope_logs.add()
    for event_id in event_ids:
        record = scope.log_records.add()
        record.time_unix_nano = samples.BASE_TIME
        record.body.string_value = f"decision {event_id}"
        record.attributes.add(key="event_id").value.string_value = event_id
    return message.SerializeToString()


def _event_ids(sink) -> list[str]:
    ids = []
    for message in sink.messages("logs"):
        for resource_logs in message.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    ids += [a.value.string_value for a in record.attributes if a.key == "event_id"]
    return ids


def test_dead_letter_then_replay_delivers_every_record(tmp_path, track_sluice, otlp_sink):
    # The destination refuses everything for good (400): the data is dead-lettered.
    otlp_sink.set_outage(3600, status=400, retry_after=None)

    def config(ports):
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "exporters": {"otlphttp": {"endpoint": otlp_sink.endpoint, "retry_on_failure": {"initial_interval": "100ms"}}},
            "service": {
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["otlphttp"]}},
            },
        }

    process = rt.start_sluice(tmp_path, config, track_sluice)
    sent = [f"evt-{i:04d}" for i in range(300)]
    for chunk in range(0, len(sent), 100):
        assert rt.post(process.ports.url("otlp", "/v1/logs"), _request(sent[chunk:chunk + 100])).status == 200
    dead_letter = process.data_dir / "dead-letter" / "otlphttp.ndjson"
    # Complete lines only: a line is written a part at a time. 120 s: a guard only.
    rt.wait_until(lambda: dead_letter.exists() and dead_letter.read_text().count("\n") == 3, 120, what="3 dead-letter lines")
    lines = [json.loads(line) for line in dead_letter.read_text().splitlines()]
    assert all(line["exporter"] == "otlphttp" and "HTTP 400" in line["reason"] and line["signal"] == "logs" for line in lines)
    assert process.stop(timeout=30) == 0

    # The destination is fixed; replay through the same exporter.
    otlp_sink.set_outage(0)
    result = process.replay("otlphttp")
    assert result.returncode == 0, result.stderr
    assert "done: 300 delivered, 0 failed again" in result.stdout, result.stdout
    assert "replaying 3 request(s), 300 item(s)" in result.stderr
    assert sorted(_event_ids(otlp_sink)) == sent


def test_replay_reports_bad_lines_and_unknown_exporters(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "receivers: {otlp: {protocols: {http: {endpoint: 127.0.0.1:0}}}}\n"
        "exporters: {nop: {}}\n"
        "service: {pipelines: {logs: {receivers: [otlp], exporters: [nop]}}}\n")
    lines = tmp_path / "in.ndjson"
    good = json.dumps(samples.message_to_otlp_json(ExportLogsServiceRequest.FromString(_request(["a", "b"]))))
    lines.write_text(good + "\n{not json\n")
    result = subprocess.run([str(rt.SLUICE_BIN), "replay", "--config", str(config), "--exporter", "nop", "--from", str(lines)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{lines}:2: skipped" in result.stderr
    assert "done: 2 delivered, 0 failed again" in result.stdout and "1 line(s) skipped" in result.stdout
    missing = subprocess.run([str(rt.SLUICE_BIN), "replay", "--config", str(config), "--exporter", "splunk_hec"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no exporter splunk_hec" in missing.stderr
