"""The integrity processor and `sluice verify` (docs/processors.md, "integrity"):
records sealed by a running sluice and delivered to a file or to Splunk HEC are
accepted by `sluice verify`; deleting or editing one delivered line makes it name
that line (or the missing sequence numbers) and fail."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

import runtime_helpers as rt
from conftest import SLUICE_BIN
from hec_server import HECServer

TOKEN = "11111111-2222-3333-4444-555555555555"


def events_request(first: int, count: int, body_map: bool = False) -> bytes:
    records = []
    for i in range(first, first + count):
        attributes = [
            {"key": "event_id", "value": {"stringValue": f"evt-{i:05d}"}},
            {"key": "action", "value": {"stringValue": ["allow", "block", "redact"][i % 3]}},
            {"key": "user_id", "value": {"stringValue": f"user_{i % 7}"}},
            {"key": "tokens", "value": {"kvlistValue": {"values": [{"key": "prompt", "value": {"intValue": str(100 + i)}}]}}},
            {"key": "matched_rules", "value": {"arrayValue": {"values": [{"stringValue": "email"}, {"intValue": "7"}]}}},
            {"key": "score", "value": {"doubleValue": 0.25 + i}},
            {"key": "cached", "value": {"boolValue": i % 2 == 0}},
        ]
        body = {"kvlistValue": {"values": [{"key": "decision", "value": {"stringValue": "block"}}, {"key": "n", "value": {"intValue": str(i)}}]}} \
            if body_map and i % 2 else {"stringValue": f"decision {i} — naïve ✓"}
        records.append({"timeUnixNano": str(1763712000123456789 + i * 1000), "severityNumber": 9, "severityText": "INFO",
                        "eventName": "gateway.decision", "body": body, "attributes": attributes,
                        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"})
    return json.dumps({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "ai-gateway"}},
                                    {"key": "k8s.pod.name", "value": {"stringValue": "gw-0"}}]},
        "scopeLogs": [{"scope": {"name": "gateway.audit"}, "logRecords": records}]}]}).encode()


def attr(record: dict, key: str) -> str | None:
    """An attribute of an OTLP/JSON log record, as text."""
    for kv in record.get("attributes", []):
        if kv["key"] == key:
            value = kv["value"]
            return str(value.get("stringValue", value.get("intValue")))
    return None


def verify(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SLUICE_BIN), "verify", *args], capture_output=True, text=True, timeout=120, env=env)


def integrity_config(tmp_path, processor: dict, exporters: dict, names: list[str]):
    def make(ports: rt.Ports) -> dict:
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "processors": {"integrity": processor},
            "exporters": exporters,
            "service": {"telemetry": {"metrics": {"address": ports.address("metrics")}},
                        "pipelines": {"logs": {"receivers": ["otlp"], "processors": ["integrity"], "exporters": names}}},
        }
    return make


def send_concurrently(process, requests: list[bytes]) -> None:
    errors = []

    def send(body):
        response = rt.post(process.ports.url("otlp", "/v1/logs"), body, "application/json")
        if response.status != 200:
            errors.append(response.status)

    threads = [threading.Thread(target=send, args=(body,)) for body in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"some requests were not accepted: {errors}"


def wait_sent(process, exporter: str, count: int) -> None:
    rt.wait_until(lambda: rt.metric(rt.scrape(process.ports.url("metrics", "/metrics")), "sluice_exporter_sent_items_total",
                                    exporter=exporter, signal="logs") >= count, timeout=60, what=f"{exporter} to deliver {count} records")


def test_a_sealed_chain_verifies_and_a_deleted_or_edited_line_is_named(tmp_path, track_sluice):
    out = tmp_path / "data" / "sealed.jsonl"
    process = rt.start_sluice(tmp_path, integrity_config(tmp_path, {"chain": True, "stream": "gw-0"},
                                                         {"file": {"path": str(out), "rotation": {}}}, ["file"]), track_sluice)
    # Eight requests at once from eight threads: the chain must still be one sequence.
    send_concurrently(process, [events_request(i * 25, 25, body_map=True) for i in range(8)])
    wait_sent(process, "file", 200)
    assert process.stop(timeout=30) == 0

    lines = out.read_text().splitlines()
    assert len(lines) == 8
    records = [r for line in lines for rl in json.loads(line)["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]
    seqs = sorted(int(attr(r, "integrity_seq")) for r in records)
    assert seqs == list(range(1, 201)), "one chain numbered 1…200 without gaps or repeats"
    assert all(attr(r, "integrity_hash").startswith("sha256:") for r in records)
    assert {attr(r, "integrity_stream").split("#")[0] for r in records} == {"gw-0/logs"}

    result = verify(str(out))
    assert result.returncode == 0, result.stderr
    assert "200 records intact, 1 chain without gaps" in result.stdout

    # Delivered twice (at least once) is not tampering.
    doubled = tmp_path / "doubled.jsonl"
    doubled.write_text("\n".join(lines + [lines[3]]) + "\n")
    assert verify(str(doubled)).returncode == 0

    # A deleted line: the missing sequence numbers are named.
    by_first_seq = sorted(lines, key=lambda l: min(int(attr(r, "integrity_seq"))
                                                   for rl in json.loads(l)["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]))
    deleted = tmp_path / "deleted.jsonl"
    deleted.write_text("\n".join(by_first_seq[:3] + by_first_seq[4:]) + "\n")
    result = verify(str(deleted))
    assert result.returncode == 1
    assert "records seq 76–100 are missing (between line 3, record 25 and line 4, record 1)" in result.stderr, result.stderr

    # An edited value: that line and record are named as altered.
    edited_lines = list(lines)
    edited_lines[5] = edited_lines[5].replace('"stringValue":"block"', '"stringValue":"allow"', 1)
    assert edited_lines[5] != lines[5]
    edited = tmp_path / "edited.jsonl"
    edited.write_text("\n".join(edited_lines) + "\n")
    result = verify(str(edited))
    assert result.returncode == 1
    assert "line 6, record" in result.stderr and "altered" in result.stderr, result.stderr

    # A record removed from inside a line (its neighbours kept) breaks the chain there.
    message = json.loads(lines[2])
    removed_seq = int(attr(message["resourceLogs"][0]["scopeLogs"][0]["logRecords"][10], "integrity_seq"))
    del message["resourceLogs"][0]["scopeLogs"][0]["logRecords"][10]
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:2] + [json.dumps(message)] + lines[3:]) + "\n")
    result = verify(str(cut))
    assert result.returncode == 1
    assert f"record seq {removed_seq} is missing" in result.stderr, result.stderr


def test_hmac_key_is_needed_to_verify(tmp_path, track_sluice):
    out = tmp_path / "data" / "sealed.jsonl"
    process = rt.start_sluice(tmp_path, integrity_config(tmp_path, {"chain": True, "key": "${env:INTEGRITY_KEY}"},
                                                         {"file": {"path": str(out), "rotation": {}}}, ["file"]),
                              track_sluice, env={"INTEGRITY_KEY": "s3cret-integrity-key"})
    assert rt.post(process.ports.url("otlp", "/v1/logs"), events_request(0, 10), "application/json").status == 200
    wait_sent(process, "file", 10)
    assert process.stop(timeout=30) == 0
    assert "s3cret-integrity-key" not in process.stderr()
    text = out.read_text()
    assert "hmac-sha256:" in text and "s3cret-integrity-key" not in text

    key_file = tmp_path / "key"
    key_file.write_text("s3cret-integrity-key\n")
    assert verify("--key-file", str(key_file), str(out)).returncode == 0
    unkeyed = verify(str(out))
    assert unkeyed.returncode == 1 and "altered" in unkeyed.stderr
    assert verify("--key-env", "K", str(out), env={"K": "s3cret-integrity-key", "PATH": "/usr/bin:/bin"}).returncode == 0


def test_events_delivered_to_splunk_hec_verify(tmp_path, track_sluice):
    with HECServer(token=TOKEN) as hec:
        exporters = {"splunk_hec": {"endpoint": hec.endpoint, "token": TOKEN, "index": "ai_gateway", "sourcetype": "ai:gateway:audit"}}
        process = rt.start_sluice(tmp_path, integrity_config(tmp_path, {"chain": True}, exporters, ["splunk_hec"]), track_sluice)
        for i in range(4):
            assert rt.post(process.ports.url("otlp", "/v1/logs"), events_request(i * 30, 30, body_map=True), "application/json").status == 200
        wait_sent(process, "splunk_hec", 120)
        assert process.stop(timeout=30) == 0
        events = hec.events()
    assert len(events) == 120
    assert TOKEN not in json.dumps(events, default=str)
    delivered = tmp_path / "hec-events.json"
    # As Splunk keeps them: each event as its JSON (map bodies stay objects).
    delivered.write_text("".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False, default=float) + "\n" for e in events))
    result = verify(str(delivered))
    assert result.returncode == 0, result.stderr
    assert "120 records intact" in result.stdout

    events[7]["fields"]["user_id"] = "someone_else"
    del events[50]
    tampered = tmp_path / "hec-tampered.json"
    tampered.write_text("".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False, default=float) + "\n" for e in events))
    result = verify(str(tampered))
    assert result.returncode == 1
    assert "line 8: altered" in result.stderr and "is missing" in result.stderr, result.stderr


def test_verify_names_what_it_cannot_read(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"resourceLogs": [}\nnot json\n{"hello": 1}\n')
    result = verify(str(bad))
    assert result.returncode == 1
    assert "line 1" in result.stderr and "line 2" in result.stderr and "line 3" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "Fatal error" not in result.stderr


# A SIEM-side script, written from docs/processors.md alone, recomputes the hash.

def _scalar(value: dict) -> str:
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return "true" if value["boolValue"] else "false"
    if "intValue" in value:
        return str(int(value["intValue"]))
    if "doubleValue" in value:
        d = float(value["doubleValue"])
        return str(int(d)) if d.is_integer() and abs(d) < 1e15 else repr(d)
    if "bytesValue" in value:
        return value["bytesValue"]
    raise AssertionError(f"not a scalar: {value}")


def _flatten(attributes: list, prefix: str, out: dict) -> None:
    for kv in attributes:
        key, value = kv["key"], kv.get("value", {})
        if not value or (not key and not prefix):
            continue
        if "kvlistValue" in value:
            _flatten(value["kvlistValue"].get("values", []), f"{prefix}{key}.", out)
        elif "arrayValue" in value:
            items = [v for v in value["arrayValue"].get("values", []) if v]
            if any("arrayValue" in v or "kvlistValue" in v for v in items):
                raise AssertionError("nested arrays are not in this sample")
            if items:
                out[prefix + key] = [_scalar(v) for v in items]
        else:
            out[prefix + key] = _scalar(value)


def reference_hash(resource: dict, record: dict) -> str:
    import hashlib
    fields: dict = {}
    _flatten(resource.get("attributes", []), "", fields)
    _flatten(record.get("attributes", []), "", fields)
    chain = {k: v for k, v in fields.items() if k.startswith("integrity_") and k != "integrity_hash"}
    fields = {k: v for k, v in fields.items() if not k.startswith("integrity_") and not k.startswith("com.splunk.")}
    nanos = int(record.get("timeUnixNano") or record.get("observedTimeUnixNano") or 0)
    if nanos:
        fields["@time"] = str(nanos // 10**6 + (1 if nanos % 10**6 >= 500_000 else 0))
    body = record.get("body")
    if body and "stringValue" in body and body["stringValue"].strip(" \t\r\n"):
        fields["@body"] = body["stringValue"]
    elif body and "kvlistValue" in body:
        plain = {kv["key"]: (kv["value"].get("stringValue") if "stringValue" in kv["value"] else int(kv["value"]["intValue"]))
                 for kv in body["kvlistValue"]["values"]}
        fields["@body"] = json.dumps(plain, separators=(",", ":"), ensure_ascii=False)
    for name, key in (("severityText", "@severity_text"), ("eventName", "@event_name")):
        if record.get(name):
            fields[key] = record[name]
    if record.get("severityNumber"):
        fields["@severity_number"] = str(record["severityNumber"])
    for name, key in (("traceId", "@trace_id"), ("spanId", "@span_id")):
        if record.get(name) and set(record[name]) != {"0"}:
            fields[key] = record[name].lower()
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if chain:
        # The link form: the chain attributes beside the record's own hash.
        link = {**chain, "@content": hashlib.sha256(canonical).hexdigest()}
        canonical = json.dumps(link, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


@pytest.mark.parametrize("chain", [True, False])
def test_a_script_following_the_documented_canonical_form_recomputes_every_hash(tmp_path, track_sluice, chain):
    out = tmp_path / "data" / "sealed.jsonl"
    process = rt.start_sluice(tmp_path, integrity_config(tmp_path, {"chain": chain},
                                                         {"file": {"path": str(out), "rotation": {}}}, ["file"]), track_sluice)
    assert rt.post(process.ports.url("otlp", "/v1/logs"), events_request(0, 40, body_map=True), "application/json").status == 200
    wait_sent(process, "file", 40)
    assert process.stop(timeout=30) == 0
    checked = 0
    for line in out.read_text().splitlines():
        for resource_logs in json.loads(line)["resourceLogs"]:
            for scope_logs in resource_logs["scopeLogs"]:
                for record in scope_logs["logRecords"]:
                    assert reference_hash(resource_logs.get("resource", {}), record) == attr(record, "integrity_hash")
                    checked += 1
    assert checked == 40


def test_elasticsearch_otel_documents_verify(tmp_path, track_sluice):
    from es_server import ESServer
    with ESServer() as es:
        exporters = {"elasticsearch": {"endpoint": es.endpoint, "mapping": {"mode": "otel"}, "logs_index": "sealed"}}
        process = rt.start_sluice(tmp_path, integrity_config(tmp_path, {"chain": True}, exporters, ["elasticsearch"]), track_sluice)
        assert rt.post(process.ports.url("otlp", "/v1/logs"), events_request(0, 30, body_map=True), "application/json").status == 200
        wait_sent(process, "elasticsearch", 30)
        assert process.stop(timeout=30) == 0
        documents = es.documents("sealed")
    assert len(documents) == 30
    # As Elasticsearch returns _source: the bytes the exporter sent.
    delivered = tmp_path / "es.jsonl"
    delivered.write_text("".join(json.dumps(d, separators=(",", ":"), ensure_ascii=False) + "\n" for d in documents))
    result = verify(str(delivered))
    assert result.returncode == 0, result.stderr
    documents[4]["attributes"]["action"] = "allow" if documents[4]["attributes"]["action"] != "allow" else "block"
    delivered.write_text("".join(json.dumps(d, separators=(",", ":"), ensure_ascii=False) + "\n" for d in documents))
    result = verify(str(delivered))
    assert result.returncode == 1 and "line 5: altered" in result.stderr, result.stderr


def test_a_restart_continues_the_chain_and_a_removed_run_is_named(tmp_path, track_sluice):
    out = tmp_path / "data" / "sealed.jsonl"
    make = integrity_config(tmp_path, {"chain": True, "stream": "gw-0"}, {"file": {"path": str(out), "rotation": {}}}, ["file"])
    for run in range(2):
        process = rt.start_sluice(tmp_path, make, track_sluice, name=f"run{run}")
        assert rt.post(process.ports.url("otlp", "/v1/logs"), events_request(run * 10, 10), "application/json").status == 200
        wait_sent(process, "file", 10)
        assert process.stop(timeout=30) == 0
    head = next((tmp_path / "data" / "integrity").glob("*.chain"))
    assert oct(head.stat().st_mode & 0o777) == "0o600"

    lines = out.read_text().splitlines()
    assert len(lines) == 2
    second = json.loads(lines[1])["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    first_stream = attr(json.loads(lines[0])["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0], "integrity_stream")
    assert attr(second[0], "integrity_prev_stream") == first_stream
    assert attr(second[0], "integrity_prev_seq") == "10"
    result = verify(str(out))
    assert result.returncode == 0, result.stderr
    assert "20 records intact, 2 chains without gaps" in result.stdout

    only_second = tmp_path / "second.jsonl"
    only_second.write_text(lines[1] + "\n")
    result = verify(str(only_second))
    assert result.returncode == 1
    assert f"continues stream {first_stream} at seq 10, which is not in these files" in result.stderr, result.stderr
