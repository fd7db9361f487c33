"""The `filter` processor and the `routing` connector in the running binary:
gateway events over OTLP/HTTP (JSON and protobuf, as clients send them), noise
dropped and reported to the client as a partial success, block decisions routed
to one file exporter and everything else to another, and condition mistakes
reported by `sluice validate` at their line and column."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import runtime_helpers as rt
from conftest import SLUICE_BIN

DEADLINE = 60


def wait_until(predicate, what: str, timeout: float = DEADLINE):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def gateway_request(events: list[tuple[str, str, str]]) -> dict:
    """An OTLP/JSON logs request: one record per (event_id, action, body)."""
    return {
        "resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "ai-gateway"}}]},
            "scopeLogs": [{
                "scope": {"name": "ai-gateway.audit"},
                "logRecords": [{
                    "timeUnixNano": "1763712000000000000",
                    "body": {"stringValue": body},
                    "attributes": [
                        {"key": "event_id", "value": {"stringValue": event_id}},
                        {"key": "action", "value": {"stringValue": action}},
                    ],
                } for event_id, action, body in events],
            }],
        }],
    }


def file_events(path: Path) -> dict[str, str]:
    """event_id → action of every record a JSON file exporter wrote."""
    out = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        for rl in json.loads(line)["resourceLogs"]:
            for sl in rl["scopeLogs"]:
                for record in sl["logRecords"]:
                    attributes = {a["key"]: a["value"].get("stringValue") for a in record["attributes"]}
                    out[attributes["event_id"]] = attributes["action"]
    return out


def config(data: Path):
    def make(ports: rt.Ports) -> dict:
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "processors": {
                "filter": {
                    "error_mode": "ignore",
                    "logs": {"log_record": ['attributes["action"] == "allow"', 'IsMatch(body, "^health check")']},
                },
            },
            "connectors": {
                "routing": {
                    "default_pipelines": ["logs/rest"],
                    "table": [{"context": "log", "condition": 'attributes["action"] == "block"', "pipelines": ["logs/siem"]}],
                },
            },
            "exporters": {
                "file/siem": {"path": str(data / "siem.jsonl")},
                "file/rest": {"path": str(data / "rest.jsonl")},
            },
            "service": {
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {
                    "logs/in": {"receivers": ["otlp"], "processors": ["filter"], "exporters": ["routing"]},
                    "logs/siem": {"receivers": ["routing"], "exporters": ["file/siem"]},
                    "logs/rest": {"receivers": ["routing"], "exporters": ["file/rest"]},
                },
            },
        }

    return make


def test_noise_is_dropped_with_partial_success_and_blocks_routed(tmp_path, track_sluice):
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

    data = tmp_path / "out"
    data.mkdir()
    sluice = rt.start_sluice(tmp_path, config(data), track_sluice)
    url = sluice.ports.url("otlp", "/v1/logs")

    # OTLP/JSON: two of five records are noise.
    first = [("e1", "allow", "ok"), ("e2", "block", "prompt injection"), ("e3", "escalate", "health check ok"),
             ("e4", "escalate", "pii in prompt"), ("e5", "block", "jailbreak")]
    response = rt.post(url, json.dumps(gateway_request(first)).encode(), content_type="application/json")
    assert response.status == 200, response
    partial = json.loads(response.body)["partialSuccess"]
    assert partial["rejectedLogRecords"] == "2", partial
    assert "dropped on purpose" in partial["errorMessage"]

    # Protobuf, as the SDKs send it: the answer is an ExportLogsServiceResponse.
    second = [("e6", "allow", "ok"), ("e7", "redact", "email masked"), ("e8", "block", "exfiltration")]
    message = logs_service_pb2.ExportLogsServiceRequest()
    from google.protobuf import json_format

    json_format.ParseDict(gateway_request(second), message)
    response = rt.post(url, message.SerializeToString())
    assert response.status == 200, response
    answer = logs_service_pb2.ExportLogsServiceResponse.FromString(response.body)
    assert answer.partial_success.rejected_log_records == 1

    # Nothing filtered reaches either file; blocks go to the SIEM file only.
    wait_until(lambda: len(file_events(data / "siem.jsonl")) == 3 and len(file_events(data / "rest.jsonl")) == 2,
               "the routed records in both files")
    assert file_events(data / "siem.jsonl") == {"e2": "block", "e5": "block", "e8": "block"}
    assert file_events(data / "rest.jsonl") == {"e4": "escalate", "e7": "redact"}

    samples = rt.scrape(sluice.ports.url("metrics", "/metrics"))
    assert rt.metric(samples, "sluice_processor_filter_logs_filtered_total", processor="filter") == 3
    assert rt.metric(samples, "sluice_receiver_dropped_items_total", receiver="otlp", signal="logs", transport="http") == 3
    sluice.check_alive()


def test_validate_points_at_a_bad_condition(tmp_path):
    path = tmp_path / "collector.yaml"
    path.write_text(
        "receivers:\n"
        "  otlp:\n"
        "    protocols: {http: {endpoint: '127.0.0.1:0'}}\n"
        "processors:\n"
        "  filter:\n"
        "    logs:\n"
        "      log_record:\n"
        "        - 'attributes[\"action\"] == \"allow\" andd true'\n"
        "exporters:\n"
        "  nop: {}\n"
        "connectors:\n"
        "  routing:\n"
        "    default_pipelines: [logs/rest]\n"
        "    table:\n"
        "      - {condition: 'true', pipelines: [logs/siem]}\n"
        "service:\n"
        "  pipelines:\n"
        "    logs:\n"
        "      receivers: [otlp]\n"
        "      processors: [filter]\n"
        "      exporters: [routing]\n"
        "    logs/rest:\n"
        "      receivers: [routing]\n"
        "      exporters: [nop]\n"
    )
    result = subprocess.run([str(SLUICE_BIN), "validate", "--config", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    # The column of "andd" in the file: 11 for the quote, +1, +32 into the condition.
    assert "collector.yaml:8:44 processors.filter.logs.log_record[0]: expected and, or, or the end of the condition, found 'andd'" \
        " — in: attributes[\"action\"] == \"allow\" andd true" in lines, lines
    assert any(line.startswith("collector.yaml:15 connectors.routing.table[0].pipelines: pipeline logs/siem is not defined in service.pipelines")
               for line in lines), lines
