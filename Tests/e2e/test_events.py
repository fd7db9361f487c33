"""The `events` receiver and the `resourcedetection` processor against the real
binary (issue 15, items 6 and 7): a gateway's own JSON decision events posted to
/v1/events as one object, an array, NDJSON (labelled as such or as JSON), or
gzipped, arrive in the `file` exporter as OTLP log records — attributes, time,
event name, map body, severity — with the pod's Kubernetes attributes that
`resourcedetection` (`k8s_downward`, `env`) read from the process environment;
bad bodies get 400 with the byte offset and line, 413 and 415; a full pipeline
log gets 429 with Retry-After; an events receiver in a traces pipeline is a
configuration error.
"""

from __future__ import annotations

import gzip
import json
import subprocess

import pytest

import receiver_setup as rs
import runtime_helpers as rt
from conftest import SLUICE_BIN, request_class
from test_runtime import _read_file_exporter

POD_ENV = {
    "K8S_POD_NAME": "ai-gateway-7d9f-x2k4",
    "K8S_NAMESPACE_NAME": "ai",
    "K8S_NODE_NAME": "node-3",
    "K8S_POD_UID": "0b6f2c1e-5f0c-11ee-8c99-0242ac120002",
    "K8S_POD_IP": "10.1.2.3",
    "K8S_APP_NAME": "ai-gateway",
    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=s%C3%A9curit%C3%A9",
}
BODY_LIMIT = 64 * 1024


def events_config(ports: rt.Ports, out, **receiver) -> dict:
    return {
        "receivers": {"events": {"endpoint": ports.address("events"), "max_request_body_size": BODY_LIMIT, **receiver}},
        "processors": {"resourcedetection": {"detectors": ["env", "system", "k8s_downward"]}},
        "exporters": {"file": {"path": str(out / "logs.jsonl"), "format": "json"}},
        "service": {
            "telemetry": {"metrics": {"address": ports.address("metrics")}},
            "pipelines": {"logs": {"receivers": ["events"], "processors": ["resourcedetection"], "exporters": ["file"]}},
        },
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, track_sluice_module):
    workdir = tmp_path_factory.mktemp("events")
    process = rt.start_sluice(workdir, lambda ports: events_config(ports, workdir / "out"), track_sluice_module, env=POD_ENV)
    process.out = workdir / "out" / "logs.jsonl"
    process.url = process.ports.url("events", "/v1/events")
    yield process
    process.stop(timeout=60)


def post(process, body: bytes, content_type: str = "application/json", **headers) -> rt.Response:
    return rt.request("POST", process.url, body, {"Content-Type": content_type, **headers})


def event(event_id: str, **fields) -> dict:
    return {"event_id": event_id, "timestamp": "2026-11-21T10:00:00.250Z", "event_type": "blocked", "action": "block",
            "policy_name": "pii-guard", "model": "gpt-4o", "gateway_id": "gw-1", "user_id": "u-42", "org_id": "org-7", **fields}


def delivered(process) -> dict:
    """Every record the file exporter wrote, by event_id, with its resource."""
    rs.wait_exported(process)
    out = {}
    for message in _read_file_exporter(process.out, "json", "logs") if process.out.exists() else []:
        for resource_logs in message.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    attributes = {kv.key: kv.value for kv in record.attributes}
                    out[attributes["event_id"].string_value] = (record, attributes, resource_logs.resource, scope_logs.scope)
    return out


def text(value) -> str:
    return value.string_value


def test_object_array_and_ndjson_become_log_records(gateway):
    one = post(gateway, json.dumps(event("obj-1", severity="WARN", risk={"score": 0.93, "labels": ["pii", "email"]},
                                         tokens=9007199254740993, blocked=True, reason=None)).encode())
    assert one.status == 200 and json.loads(one.body) == {"accepted": 1}, one
    array = post(gateway, json.dumps([event("arr-1"), event("arr-2", timestamp=1795255200123)]).encode())
    assert array.status == 200 and json.loads(array.body) == {"accepted": 2}, array
    lines = "\n".join(json.dumps(event(f"nd-{i}", level="error")) for i in range(3)) + "\n"
    ndjson = post(gateway, lines.encode(), "application/x-ndjson")
    assert ndjson.status == 200 and json.loads(ndjson.body) == {"accepted": 3}, ndjson
    # NDJSON sent as application/json is recognised too.
    sniffed = post(gateway, (json.dumps(event("sniff-1")) + "\n" + json.dumps(event("sniff-2")) + "\n").encode())
    assert sniffed.status == 200 and json.loads(sniffed.body) == {"accepted": 2}, sniffed

    records = delivered(gateway)
    assert {"obj-1", "arr-1", "arr-2", "nd-0", "nd-1", "nd-2", "sniff-1", "sniff-2"} <= set(records), sorted(records)
    record, attributes, resource, scope = records["obj-1"]
    assert record.time_unix_nano == 1795255200_250_000_000
    assert record.observed_time_unix_nano > record.time_unix_nano  # when it arrived
    assert record.event_name == "blocked"
    assert record.severity_number == 13 and record.severity_text == "WARN"
    for field in ("action", "policy_name", "model", "gateway_id", "user_id", "org_id", "event_type"):
        assert text(attributes[field]) == event("x")[field], field
    assert attributes["tokens"].int_value == 9007199254740993  # exact, not through a double
    assert attributes["blocked"].bool_value is True
    risk = {kv.key: kv.value for kv in attributes["risk"].kvlist_value.values}
    assert risk["score"].double_value == 0.93
    assert [v.string_value for v in risk["labels"].array_value.values] == ["pii", "email"]
    assert not attributes["reason"].HasField("string_value")  # null: an empty value
    body = {kv.key: kv.value for kv in record.body.kvlist_value.values}
    assert text(body["event_id"]) == "obj-1" and text(body["action"]) == "block" and len(body) == len(attributes)
    assert scope.name == "sluice.events"
    assert records["arr-2"][0].time_unix_nano == 1795255200_123_000_000  # epoch milliseconds
    assert records["nd-1"][0].severity_number == 17

    # resourcedetection: the pod's identity from the downward API's variables, and OTEL_RESOURCE_ATTRIBUTES.
    resource_attributes = {kv.key: kv.value.string_value for kv in resource.attributes}
    assert resource_attributes["k8s.pod.name"] == POD_ENV["K8S_POD_NAME"]
    assert resource_attributes["k8s.namespace.name"] == "ai"
    assert resource_attributes["k8s.node.name"] == "node-3"
    assert resource_attributes["k8s.pod.uid"] == POD_ENV["K8S_POD_UID"]
    assert resource_attributes["service.name"] == "ai-gateway"
    assert resource_attributes["team"] == "sécurité" and resource_attributes["deployment.environment"] == "prod"
    assert resource_attributes["os.type"] == "linux" and resource_attributes["host.name"]


def test_gzip_body(gateway):
    body = gzip.compress(json.dumps([event(f"gz-{i}") for i in range(50)]).encode())
    response = post(gateway, body, **{"Content-Encoding": "gzip"})
    assert response.status == 200 and json.loads(response.body) == {"accepted": 50}, response
    records = delivered(gateway)
    assert all(f"gz-{i}" in records for i in range(50))


def test_malformed_bodies_are_400_with_offset_and_line(gateway):
    body = (json.dumps(event("bad-1")) + "\n" + '{"event_id":"bad-2","action":}' + "\n").encode()
    response = post(gateway, body, "application/x-ndjson")
    assert response.status == 400, response
    answer = json.loads(response.body)
    first_line = len(json.dumps(event("bad-1"))) + 1
    assert answer["offset"] == first_line + len('{"event_id":"bad-2","action":'), answer
    assert "expected a value" in answer["error"] and "on line 2" in answer["error"], answer
    late = post(gateway, json.dumps(event("bad-3", timestamp="next tuesday")).encode())
    assert late.status == 400 and "event 1: timestamp: expected RFC 3339" in json.loads(late.body)["error"], late
    twice = post(gateway, b'{"event_id":"bad-4","action":"allow","action":"block"}')
    assert twice.status == 400 and '"action" appears twice' in json.loads(twice.body)["error"], twice
    deep = post(gateway, b'{"event_id":"bad-5","x":' + b"[" * 200 + b"]" * 200 + b"}")
    assert deep.status == 400 and "deeper than" in json.loads(deep.body)["error"], deep
    invalid = post(gateway, b'{"event_id":"bad-6","x":"\xff"}')
    assert invalid.status == 400 and "not UTF-8" in json.loads(invalid.body)["error"], invalid
    # None of them reached the file; the receiver is still up.
    records = delivered(gateway)
    assert not any(k.startswith("bad-") for k in records), sorted(records)
    gateway.check_alive("hostile bodies")


def test_limits_and_types_are_413_and_415(gateway):
    big = json.dumps([event(f"big-{i}", padding="x" * 1000) for i in range(80)]).encode()
    assert len(big) > BODY_LIMIT
    assert post(gateway, big).status == 413
    # Over the limit once decompressed: 413 too.
    assert post(gateway, gzip.compress(big), **{"Content-Encoding": "gzip"}).status == 413
    assert post(gateway, json.dumps(event("t-1")).encode(), "text/plain").status == 415
    assert post(gateway, json.dumps(event("t-2")).encode(), **{"Content-Encoding": "br"}).status == 415
    assert rt.request("POST", gateway.ports.url("events", "/v1/logs"), b"{}", {"Content-Type": "application/json"}).status == 404
    records = delivered(gateway)
    assert not any(k.startswith(("big-", "t-")) for k in records)


def test_full_log_is_429_with_retry_after(tmp_path, track_sluice):
    """An exporter that cannot deliver (nothing listens) behind a small memory log:
    once the log is full, events are refused with 429 and Retry-After."""
    dead = rt.free_port()

    def config(ports):
        base = events_config(ports, tmp_path / "out")
        base["exporters"] = {"otlp_http": {
            "endpoint": f"http://127.0.0.1:{dead}",
            "retry_on_failure": {"initial_interval": "1s", "max_interval": "1s"},
            "sending_queue": {"sizer": "bytes", "queue_size": 20_000},
        }}
        base["service"]["pipelines"]["logs"]["exporters"] = ["otlp_http"]
        return base

    process = rt.start_sluice(tmp_path, config, track_sluice)
    url = process.ports.url("events", "/v1/events")
    answers = [rt.request("POST", url, json.dumps([event(f"full-{n}-{i}") for i in range(5)]).encode(), {"Content-Type": "application/json"})
               for n in range(20)]
    assert answers[0].status == 200, answers[0]
    refused = [a for a in answers if a.status != 200]
    assert refused, f"twenty requests into a log of about two, all 200: {[a.status for a in answers]}"
    assert all(a.status == 429 and int(a.headers["retry-after"]) >= 1 for a in refused), refused
    assert "is full" in json.loads(refused[0].body)["error"]
    process.check_alive("a full log")


def test_events_in_a_traces_pipeline_is_a_config_error(tmp_path):
    config = tmp_path / "collector.yaml"
    config.write_text(
        "receivers:\n  events:\nexporters:\n  nop:\nservice:\n  pipelines:\n    traces:\n      receivers: [events]\n      exporters: [nop]\n"
    )
    result = subprocess.run([str(SLUICE_BIN), "validate", "--config", str(config)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result
    assert "service.pipelines.traces.receivers: events does not receive traces (it receives logs only)" in result.stdout + result.stderr, result


def test_events_through_resourcedetection_and_integrity_verify(tmp_path, track_sluice):
    """The issue's pipeline without the processors other items bring: events →
    resourcedetection → integrity (chain) → file, with the disk log; the
    delivered file passes `sluice verify`, and every record carries the pod's
    attributes and its integrity seal."""
    out = tmp_path / "delivered.jsonl"

    def config(ports):
        base = events_config(ports, tmp_path / "out")
        base["extensions"] = {"file_storage": {"directory": str(tmp_path / "log")}}
        base["processors"]["integrity"] = {"chain": True, "stream": "gw-1"}
        base["exporters"] = {"file": {"path": str(out), "format": "json", "sending_queue": {"storage": "file_storage"}}}
        base["service"]["extensions"] = ["file_storage"]
        base["service"]["pipelines"]["logs"]["processors"] = ["resourcedetection", "integrity"]
        return base

    process = rt.start_sluice(tmp_path, config, track_sluice, env=POD_ENV)
    url = process.ports.url("events", "/v1/events")
    for n in range(4):
        body = "\n".join(json.dumps(event(f"chain-{n}-{i}", user_id=f"u-{i}")) for i in range(25)) + "\n"
        response = rt.request("POST", url, body.encode(), {"Content-Type": "application/x-ndjson"})
        assert response.status == 200 and json.loads(response.body) == {"accepted": 25}, response
    rt.wait_until(lambda: rt.metric(rt.scrape(process.ports.url("metrics", "/metrics")), "sluice_exporter_sent_items_total",
                                    exporter="file", signal="logs") >= 100, timeout=120, what="the file exporter to write 100 records")
    assert process.stop(timeout=60) == 0

    messages = [json.loads(line) for line in out.read_text().splitlines()]
    records = [(rl["resource"], r) for m in messages for rl in m["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]
    assert len(records) == 100
    for resource, record in records:
        resource_attributes = {kv["key"]: kv["value"].get("stringValue") for kv in resource["attributes"]}
        assert resource_attributes["k8s.pod.name"] == POD_ENV["K8S_POD_NAME"], resource_attributes
        attributes = {kv["key"]: kv["value"] for kv in record["attributes"]}
        assert attributes["integrity_hash"]["stringValue"].startswith("sha256:")
        assert record["eventName"] == "blocked"
    result = subprocess.run([str(SLUICE_BIN), "verify", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "100 records intact, 1 chain without gaps" in result.stdout, result.stdout
