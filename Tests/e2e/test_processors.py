"""The attributes, resource and redaction processors in a running binary: records
sent over OTLP/HTTP come out of the file exporter changed, every line of the
redaction corpus is masked as the unit tests expect, mistakes are named by
`sluice validate`, and a redacted value never reaches the disk log's segment files,
not even across `kill -9` before delivery (issue 15, item 8)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import runtime_helpers as rt
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

CORPUS = Path(__file__).resolve().parents[1] / "SluiceComponentsTests" / "Fixtures" / "redaction-corpus.txt"
BASE_TIME = 1_763_712_000_000_000_000


def corpus() -> list[tuple[int, str, str, str]]:
    cases = []
    for number, line in enumerate(CORPUS.read_text().splitlines(), start=1):
        if not line or line.startswith("#"):
            continue
        parts = [part.replace("\\n", "\n") for part in line.split(" || ")]
        cases.append((number, parts[0], parts[1], parts[2] if len(parts) > 2 else parts[1]))
    return cases


def request(records: list[dict], resource: dict | None = None) -> bytes:
    """A logs request; each record is {"attributes": {key: str|int}, "body": str}."""
    message = ExportLogsServiceRequest()
    resource_logs = message.resource_logs.add()
    for key, value in (resource or {"service.name": "ai-gateway"}).items():
        resource_logs.resource.attributes.add(key=key).value.string_value = value
    scope = resource_logs.scope_logs.add()
    for fields in records:
        record = scope.log_records.add()
        record.time_unix_nano = BASE_TIME
        if "body" in fields:
            record.body.string_value = fields["body"]
        for key, value in fields.get("attributes", {}).items():
            target = record.attributes.add(key=key).value
            if isinstance(value, int):
                target.int_value = value
            else:
                target.string_value = value
    return message.SerializeToString()


def plain(value: dict):
    """An OTLP/JSON AnyValue as a Python value."""
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "boolValue" in value:
        return value["boolValue"]
    if "doubleValue" in value:
        return value["doubleValue"]
    if "arrayValue" in value:
        return [plain(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return {kv["key"]: plain(kv.get("value", {})) for kv in value["kvlistValue"].get("values", [])}
    return None


def written_records(path: Path) -> list[dict]:
    """Every record in the file exporter's OTLP/JSON lines: resource, attributes, body."""
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        for resource_logs in json.loads(line).get("resourceLogs", []):
            resource = {kv["key"]: plain(kv["value"]) for kv in resource_logs.get("resource", {}).get("attributes", [])}
            for scope_logs in resource_logs.get("scopeLogs", []):
                for record in scope_logs.get("logRecords", []):
                    out.append({"resource": resource,
                                "attributes": {kv["key"]: plain(kv.get("value", {})) for kv in record.get("attributes", [])},
                                "body": plain(record["body"]) if "body" in record else None})
    return out


def file_pipeline(out: Path, processors: dict, order: list[str]):
    def config(ports):
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "processors": processors,
            "exporters": {"file": {"path": str(out)}},
            "service": {"telemetry": {"metrics": {"address": ports.address("metrics")}},
                        "pipelines": {"logs": {"receivers": ["otlp"], "processors": order, "exporters": ["file"]}}},
        }
    return config


def test_attributes_and_resource_processors_change_what_is_written(tmp_path, track_sluice):
    out = tmp_path / "out.jsonl"
    processors = {
        "resource": {"attributes": [{"key": "deployment.environment", "value": "prod", "action": "upsert"},
                                    {"key": "host.name", "action": "delete"}]},
        "attributes/pii": {
            "include": {"match_type": "strict", "attributes": [{"key": "action", "value": "block"}]},
            "actions": [{"key": "user_id", "action": "hash"},
                        {"key": "http.url", "pattern": r"^(?P<url_scheme>\w+)://(?P<url_host>[^/]+)", "action": "extract"},
                        {"key": "tokens", "action": "convert", "converted_type": "int"},
                        {"key": "tenant", "from_attribute": "org_id", "action": "insert"},
                        {"pattern": "^debug\\.", "action": "delete"}]},
    }
    process = rt.start_sluice(tmp_path, file_pipeline(out, processors, ["resource", "attributes/pii"]), track_sluice)
    body = request([{"attributes": {"action": "block", "user_id": "u-42", "http.url": "https://api.example.com/v1/chat",
                                    "tokens": "128", "org_id": "org-7", "debug.trace": "x"}},
                    {"attributes": {"action": "allow", "user_id": "u-42"}}],
                   resource={"service.name": "ai-gateway", "host.name": "node-1"})
    assert rt.post(process.ports.url("otlp", "/v1/logs"), body).status == 200
    records = rt.wait_until(lambda: (lambda r: r if len(r) == 2 else None)(written_records(out)), 30, what="two records in the file")
    blocked, allowed = records
    assert blocked["resource"] == {"service.name": "ai-gateway", "deployment.environment": "prod"}
    # hashlib.sha256(b"u-42").hexdigest()
    assert blocked["attributes"]["user_id"] == "16ec525b74b75626eb93ecad8acc749885fcf4e83c95b139342769a4ab1828a3"
    assert blocked["attributes"]["url_scheme"] == "https" and blocked["attributes"]["url_host"] == "api.example.com"
    assert blocked["attributes"]["tokens"] == 128 and blocked["attributes"]["tenant"] == "org-7"
    assert "debug.trace" not in blocked["attributes"]
    assert allowed["attributes"] == {"action": "allow", "user_id": "u-42"}
    assert process.stop(timeout=30) == 0


def test_every_corpus_line_is_masked_by_the_running_binary(tmp_path, track_sluice):
    out = tmp_path / "out.jsonl"
    processors = {"redaction": {"allow_all_keys": True, "summary": "info"}}
    process = rt.start_sluice(tmp_path, file_pipeline(out, processors, ["redaction"]), track_sluice)
    cases = corpus()
    records = [{"attributes": {"case": number, "text": text}, "body": text} for number, _, text, _ in cases]
    assert rt.post(process.ports.url("otlp", "/v1/logs"), request(records)).status == 200
    written = rt.wait_until(lambda: (lambda r: r if len(r) == len(cases) else None)(written_records(out)), 30,
                            what=f"{len(cases)} records in the file")
    by_case = {record["attributes"]["case"]: record for record in written}
    wrong = []
    for number, label, text, expected in cases:
        record = by_case[number]
        if record["attributes"]["text"] != expected or record["body"] != expected:
            wrong.append(f"line {number} ({label}): {text!r} -> {record['attributes']['text']!r} / body {record['body']!r}, expected {expected!r}")
        masked = 0 if label == "-" else 1
        if record["attributes"].get("redaction.masked.count", 0) != masked:
            wrong.append(f"line {number}: redaction.masked.count {record['attributes'].get('redaction.masked.count')}, expected {masked}")
    assert not wrong, "\n".join(wrong)
    samples = rt.scrape(process.ports.url("metrics", "/metrics"))
    positives = sum(1 for _, label, _, _ in cases if label == "card")
    assert rt.metric(samples, "sluice_redaction_masked_values_total", processor="redaction", detector="card") == 2 * positives
    assert process.stop(timeout=30) == 0


def test_validate_names_processor_mistakes_by_line(tmp_path):
    config = tmp_path / "collector.yaml"
    config.write_text("""receivers:
  otlp: {protocols: {http: {}}}
processors:
  attributes:
    actions:
      - key: tenant
        from_context: metadata.x-tenant
        action: insert
  redaction:
    allow_all_keys: true
    detectors: [email, cards]
    hash_function: hmac-sha256
exporters:
  nop:
service:
  pipelines:
    logs:
      receivers: [otlp]
      processors: [attributes, redaction]
      exporters: [nop]
""")
    result = subprocess.run([str(rt.SLUICE_BIN), "validate", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "collector.yaml:7 processors.attributes.actions[0].from_context: Sluice's receivers do not pass client metadata" in output, output
    assert "collector.yaml:11 processors.redaction.detectors: 'cards' is not a detector (did you mean card?)" in output, output
    assert "collector.yaml:12 processors.redaction.hash_function: hmac-sha256 needs hmac_key of at least 32 bytes" in output, output


def test_a_redacted_value_never_reaches_the_disk_log_across_kill_9(tmp_path, track_sluice, otlp_sink):
    """Item 8 of issue 15: the disk log stores what the processors made of a request,
    not the request's bytes. The destination is down, so the record waits in the
    log; Sluice is killed with SIGKILL; the segment files hold the masked record
    only; after a restart with the destination up, the masked record is delivered."""
    storage = tmp_path / "storage"
    otlp_sink.set_outage(3600)
    ports = rt.Ports()
    settings = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
        "processors": {"redaction": {"allow_all_keys": True}},
        "exporters": {"otlphttp": {"endpoint": otlp_sink.endpoint, "compression": "none",
                                   "retry_on_failure": {"initial_interval": "100ms", "max_interval": "500ms"},
                                   "sending_queue": {"storage": "file_storage"}}},
        "extensions": {"file_storage": {"directory": str(storage), "fsync": "always"}},
        "service": {"extensions": ["file_storage"],
                    "telemetry": {"metrics": {"address": ports.address("metrics")}},
                    "pipelines": {"logs": {"receivers": ["otlp"], "processors": ["redaction"], "exporters": ["otlphttp"]}}},
    }
    process = rt.SluiceProcess(tmp_path, settings, ports)
    track_sluice(process)
    process.start()
    process.wait_running()
    email, card = b"ann.lee@example.com", b"4111 1111 1111 1111"
    body = request([{"attributes": {"event_id": "evt-pii", "user.email": email.decode(), "note": f"card {card.decode()}"},
                     "body": f"user {email.decode()} paid with {card.decode()}"}])
    # 200 with fsync: always: the entry is on the device.
    assert rt.post(ports.url("otlp", "/v1/logs"), body).status == 200
    # The exporter has tried (and failed) at least once: the record was read from the log.
    rt.wait_until(lambda: rt.metric(rt.scrape(ports.url("metrics", "/metrics")), "sluice_exporter_send_failed_items_total", exporter="otlphttp") > 0,
                  30, what="a failed delivery attempt")
    process.process.kill()
    process.process.wait(timeout=30)
    assert not otlp_sink.messages("logs")

    stored = b"".join(path.read_bytes() for path in storage.rglob("*") if path.is_file())
    assert b"[REDACTED:email]" in stored and b"[REDACTED:card]" in stored, "the record is not in the segment files"
    for raw in (email, card, card.replace(b" ", b"")):
        assert raw not in stored, f"{raw!r} is in the disk log"

    otlp_sink.set_outage(0)
    process.start()
    process.wait_running()
    rt.wait_until(lambda: otlp_sink.messages("logs"), 60, what="the record delivered after the restart")
    delivered = b"".join(message.SerializeToString() for message in otlp_sink.messages("logs"))
    assert b"evt-pii" in delivered and b"[REDACTED:email]" in delivered and b"[REDACTED:card]" in delivered
    for raw in (email, card, card.replace(b" ", b"")):
        assert raw not in delivered, f"{raw!r} was delivered"
    record = otlp_sink.messages("logs")[0].resource_logs[0].scope_logs[0].log_records[0]
    assert rt.attribute(record, "user.email") == "[REDACTED:email]"
    assert record.body.string_value == "user [REDACTED:email] paid with [REDACTED:card]"
    assert process.stop(timeout=30) == 0

