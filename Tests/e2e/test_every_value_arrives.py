"""Every value a client sends arrives (issue 16): 1,000 OTLP log records whose
values are the awkward ones — strings with U+0000 (valid OTLP: strings carry a
length, protobuf-c's string_as_bytes), U+2028 and U+2029, 70 KB strings, NaN and
±Infinity doubles, empty maps and arrays nested in each other, bytes — sent as
protobuf, gzip protobuf and OTLP/JSON, arrive field for field (bit for bit, as
serialized protobuf) through the file exporter in JSON and in protobuf, and
through otlp_http.

No assertion is about time: timeouts only keep a broken build from hanging.
"""

from __future__ import annotations

import gzip
import json
import math
import struct

import otlp_samples as samples
import runtime_helpers as rt

RECORDS = 1000
PER_REQUEST = 50
TIMEOUT = 180


def awkward_value(i: int):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    kind = i % 9
    v = AnyValue()
    if kind == 0:
        v.string_value = f"admin\x00; rm -rf / #{i}\x00"
    elif kind == 1:
        v.string_value = f"line\u2028separator\u2029paragraph {i} \x01\x1f\"\\"
    elif kind == 2:
        v.string_value = ("x" * 70_000) + str(i)
    elif kind == 3:
        v.double_value = math.nan
    elif kind == 4:
        v.double_value = math.inf
    elif kind == 5:
        v.double_value = -math.inf
    elif kind == 6:
        # {"empty": {}, "list": [[], {}, [""]]}
        v.kvlist_value.values.add(key="empty").value.kvlist_value.SetInParent()
        outer = v.kvlist_value.values.add(key="list").value.array_value
        outer.values.add().array_value.SetInParent()
        outer.values.add().kvlist_value.SetInParent()
        outer.values.add().array_value.values.add(string_value="")
    elif kind == 7:
        v.array_value.SetInParent()
    else:
        v.bytes_value = bytes(range(256)) + b"\x00" * 3
    return KeyValue(key=f"value\x00key {kind}", value=v)


def requests():
    """(ids, ExportLogsServiceRequest) per request."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    out = []
    for start in range(0, RECORDS, PER_REQUEST):
        message = ExportLogsServiceRequest()
        resource_logs = message.resource_logs.add()
        resource_logs.resource.attributes.add(key="service.name").value.string_value = "ai-gateway\x00edge"
        scope = resource_logs.scope_logs.add()
        scope.scope.name = "audit\u2028scope"
        ids = []
        for i in range(start, start + PER_REQUEST):
            record = scope.log_records.add()
            record.time_unix_nano = samples.BASE_TIME + i
            record.severity_number = 9
            record.body.CopyFrom(awkward_value(i).value)
            record.attributes.add(key="event_id").value.string_value = f"ev-{i:05d}"
            record.attributes.append(awkward_value(i + 1))
            record.attributes.add(key="nested").value.kvlist_value.values.append(awkward_value(i + 2))
            ids.append(f"ev-{i:05d}")
        out.append((ids, message))
    return out


def records_by_id(messages) -> dict[str, bytes]:
    """Each record serialized (NaN compares by bits there), keyed by event_id."""
    found = {}
    for message in messages:
        for resource_logs in message.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    event_id = next(kv.value.string_value for kv in record.attributes if kv.key == "event_id")
                    found[event_id] = (resource_logs.resource.SerializeToString(), scope_logs.scope.SerializeToString(),
                                       record.SerializeToString(deterministic=True))
    return found


def proto_frames(data: bytes) -> list[bytes]:
    frames, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        frames.append(data[offset + 4:offset + 4 + length])
        offset += 4 + length
    return frames


def test_awkward_values_arrive_field_for_field_through_file_and_otlp_http(tmp_path, track_sluice, otlp_sink):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    json_path, proto_path = tmp_path / "out.jsonl", tmp_path / "out.bin"

    def make(ports: rt.Ports) -> dict:
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp"), "max_request_body_size": 64 << 20}}}},
            "exporters": {
                "file/json": {"path": str(json_path), "format": "json"},
                "file/proto": {"path": str(proto_path), "format": "proto"},
                "otlp_http": {"endpoint": otlp_sink.endpoint, "compression": "gzip"},
            },
            "service": {"telemetry": {"metrics": {"address": ports.address("metrics")}},
                        "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["file/json", "file/proto", "otlp_http"]}}},
        }

    process = rt.start_sluice(tmp_path, make, track_sluice)
    sent = {}
    url = process.ports.url("otlp", "/v1/logs")
    for n, (ids, message) in enumerate(requests()):
        sent.update(records_by_id([message]))
        body = message.SerializeToString()
        if n % 3 == 0:
            response = rt.post(url, body)
        elif n % 3 == 1:
            response = rt.post(url, gzip.compress(body), encoding="gzip")
        else:
            response = rt.post(url, json.dumps(samples.message_to_otlp_json(message)).encode(), content_type="application/json")
        assert response.status == 200, (n, response)
    assert len(sent) == RECORDS

    def arrived_everywhere():
        process.check_alive("the awkward records")
        if len(rt.flatten_logs(otlp_sink.messages("logs"))) < RECORDS:
            return False
        try:
            lines = [line for line in json_path.read_bytes().split(b"\n") if line]
            frames = proto_frames(proto_path.read_bytes())
        except FileNotFoundError:
            return False
        json_messages = [samples.otlp_json_to_message(json.loads(line), ExportLogsServiceRequest) for line in lines]
        proto_messages = [ExportLogsServiceRequest.FromString(f) for f in frames]
        counts = [len(records_by_id(m)) for m in (json_messages, proto_messages)]
        return counts == [RECORDS, RECORDS] and (json_messages, proto_messages)

    json_messages, proto_messages = rt.wait_until(arrived_everywhere, TIMEOUT, what="1,000 records in both files and at the sink")
    for name, got in (("file json", records_by_id(json_messages)), ("file proto", records_by_id(proto_messages)),
                      ("otlp_http", records_by_id(otlp_sink.messages("logs")))):
        assert set(got) == set(sent), f"{name}: {len(set(sent) - set(got))} records missing"
        different = [k for k in sent if got[k] != sent[k]]
        assert not different, f"{name}: {len(different)} records changed, e.g. {different[:3]}"
    # The JSON file writes U+0000 as an escape, and the doubles as proto3 JSON names them.
    text = json_path.read_bytes()
    assert b"\\u0000" in text and b'"NaN"' in text and b'"-Infinity"' in text
