"""The OTLP codecs against the OpenTelemetry Python SDK.

The SDK's two encoders (protobuf, as opentelemetry-exporter-otlp-proto-* sends,
and OTLP/JSON, as opentelemetry-exporter-otlp-json-http sends) are the
reference. Whatever the SDK sends, `sluice convert` must carry field for field,
in either direction, compressed or not.
"""

from __future__ import annotations

import copy
import gzip
import json
import logging
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

import otlp_samples as samples
from conftest import assert_messages_equal, assert_refused, convert, convert_ok, request_class

# The SDK warns (through logging) about the attribute limits the samples hit on
# purpose; keep the test output readable.
logging.getLogger("opentelemetry").setLevel(logging.ERROR)

BULK = 1200


class Dataset:
    def __init__(self, signal: str, message, sdk_json: bytes):
        self.signal = signal
        self.message = message
        self.proto = message.SerializeToString()
        self.sdk_json = sdk_json


def _build(name: str) -> Dataset:
    if name == "logs":
        records = samples.sdk_log_records()
        return Dataset("logs", samples.proto_logs(records), samples.json_logs(records))
    if name == "logs-bulk":
        records = samples.sdk_log_records(bulk=BULK)
        return Dataset("logs", samples.proto_logs(records), samples.json_logs(records))
    if name == "traces":
        spans = samples.sdk_spans()
        return Dataset("traces", samples.proto_spans(spans), samples.json_spans(spans))
    if name == "traces-bulk":
        spans = samples.sdk_spans(bulk=BULK)
        return Dataset("traces", samples.proto_spans(spans), samples.json_spans(spans))
    if name == "metrics":
        data = samples.sdk_metrics_data()
        return Dataset("metrics", samples.proto_metrics(data), samples.json_metrics(data))
    raise KeyError(name)


DATASET_NAMES = ["logs", "traces", "metrics", "logs-bulk", "traces-bulk"]
_datasets: dict[str, Dataset] = {}


@pytest.fixture(params=DATASET_NAMES)
def dataset(request) -> Dataset:
    if request.param not in _datasets:
        _datasets[request.param] = _build(request.param)
    return _datasets[request.param]


def get_dataset(name: str) -> Dataset:
    if name not in _datasets:
        _datasets[name] = _build(name)
    return _datasets[name]


def parse_proto(signal: str, data: bytes):
    return request_class(signal).FromString(data)


# ----------------------------------------------------------------------------
# The samples themselves: make sure they cover what they claim to.

def _all_values(message):
    """Every AnyValue in a request (attributes, bodies, nested values)."""
    from opentelemetry.proto.common.v1 import common_pb2

    stack = [message]
    while stack:
        current = stack.pop()
        if isinstance(current, common_pb2.AnyValue):
            yield current
        for field, value in current.ListFields():
            if field.type != FieldDescriptor.TYPE_MESSAGE:
                continue
            stack.extend(value if field.is_repeated else [value])


def test_samples_cover_the_cases():
    logs = get_dataset("logs").message
    kinds = {value.WhichOneof("value") for value in _all_values(logs)}
    assert kinds >= {"string_value", "bool_value", "int_value", "double_value", "array_value", "kvlist_value", "bytes_value", None}
    records = [r for rl in logs.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    assert len(records) >= 20
    assert any(r.trace_id == b"" and r.span_id == b"" for r in records)
    assert any(len(r.trace_id) == 16 and len(r.span_id) == 8 for r in records)
    assert any(r.event_name for r in records)
    assert any(r.dropped_attributes_count for r in records)
    assert any(r.observed_time_unix_nano and not r.time_unix_nano for r in records)
    assert any(kv.key == "" for r in records for kv in r.attributes)
    assert {kv.key for r in records for kv in r.attributes} >= {
        "event_id", "event_type", "action", "policy_name", "model", "gateway_id", "user_id", "org_id"
    }
    ints = {value.int_value for value in _all_values(logs) if value.WhichOneof("value") == "int_value"}
    assert {samples.INT64_MIN, samples.INT64_MAX, 0, -42} <= ints
    assert any(rl.schema_url for rl in logs.resource_logs)
    assert any(sl.scope.attributes and sl.scope.version and sl.schema_url for rl in logs.resource_logs for sl in rl.scope_logs)

    traces = get_dataset("traces").message
    spans = [s for rs in traces.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert {s.kind for s in spans} == {1, 2, 3, 4, 5}
    assert any(s.status.message for s in spans)
    assert any(s.events and any(e.attributes for e in s.events) for s in spans)
    assert any(s.links and any(link.attributes for link in s.links) for s in spans)
    assert any(s.dropped_attributes_count and s.dropped_events_count and s.dropped_links_count for s in spans)
    assert any(s.parent_span_id for s in spans) and any(not s.parent_span_id for s in spans)
    assert any(s.trace_state for s in spans)


# ----------------------------------------------------------------------------
# a. SDK protobuf -> sluice proto->json -> pb2 == the SDK's message.

def test_proto_to_json_carries_every_field(dataset):
    out = convert_ok(dataset.proto, signal=dataset.signal, frm="proto", to="json")
    parsed = samples.otlp_json_to_message(out, request_class(dataset.signal))
    assert_messages_equal(parsed, dataset.message, f"{dataset.signal} proto -> json")


def test_proto_to_json_is_canonical_otlp_json(dataset):
    """Beyond carrying the data: lowerCamelCase keys, hex ids, 64-bit integers
    as strings, enums as integers, defaults left out, exactly as the protobuf
    library's own JSON printer (with hex ids) writes it."""
    out = convert_ok(dataset.proto, signal=dataset.signal, frm="proto", to="json")
    text = out.decode("utf-8")  # strict: the output must be valid UTF-8
    assert json.loads(text) == samples.message_to_otlp_json(dataset.message)
    for hex_id in re.findall(r'"(?:traceId|spanId|parentSpanId)":"([^"]*)"', text):
        assert re.fullmatch(r"(?:[0-9a-f]{16}|[0-9a-f]{32})", hex_id), hex_id


# ----------------------------------------------------------------------------
# b. SDK OTLP/JSON -> sluice json->proto -> pb2 == the SDK's protobuf encoding.

def test_sdk_json_to_proto(dataset):
    out = convert_ok(dataset.sdk_json, signal=dataset.signal, frm="json", to="proto")
    assert_messages_equal(parse_proto(dataset.signal, out), dataset.message, f"{dataset.signal} SDK JSON -> proto")


def test_sdk_json_to_json(dataset):
    """JSON in, JSON out: the same canonical form as from protobuf."""
    from_json = convert_ok(dataset.sdk_json, signal=dataset.signal, frm="json", to="json")
    from_proto = convert_ok(dataset.proto, signal=dataset.signal, frm="proto", to="json")
    assert from_json == from_proto


# ----------------------------------------------------------------------------
# c. Round trips.

def test_round_trip(dataset):
    direct = convert_ok(dataset.proto, signal=dataset.signal, frm="proto", to="proto")
    assert_messages_equal(parse_proto(dataset.signal, direct), dataset.message, f"{dataset.signal} proto -> proto")

    as_json = convert_ok(dataset.proto, signal=dataset.signal, frm="proto", to="json")
    via_json = convert_ok(as_json, signal=dataset.signal, frm="json", to="proto")
    assert via_json == direct, "proto -> json -> proto must give the same bytes as proto -> proto"

    # And the encoding is stable: converting sluice's own output again changes nothing.
    assert convert_ok(direct, signal=dataset.signal, frm="proto", to="proto") == direct
    assert convert_ok(as_json, signal=dataset.signal, frm="json", to="json") == as_json


# ----------------------------------------------------------------------------
# e. Compressed input decodes exactly like the plain one.

def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def _zstd(data: bytes) -> bytes:
    if shutil.which("zstd") is None:
        pytest.fail("the zstd command is needed: apt-get install zstd", pytrace=False)
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, capture_output=True, check=True).stdout


def _gzip_two_members(data: bytes) -> bytes:
    half = len(data) // 2
    return gzip.compress(data[:half]) + gzip.compress(data[half:])


COMPRESSIONS = {
    "gzip": ("gzip", gzip.compress),
    "gzip-level9-mtime0": ("gzip", lambda d: gzip.compress(d, compresslevel=9, mtime=0)),
    "gzip-two-members": ("gzip", _gzip_two_members),
    "deflate-zlib": ("deflate", zlib.compress),
    "deflate-raw": ("deflate", _raw_deflate),
    "zstd": ("zstd", _zstd),
}


@pytest.mark.parametrize("name", ["logs", "traces", "logs-bulk"])
@pytest.mark.parametrize("frm", ["proto", "json"])
@pytest.mark.parametrize("compression", list(COMPRESSIONS))
def test_compressed_input(name, frm, compression):
    dataset = get_dataset(name)
    encoding, compress = COMPRESSIONS[compression]
    body = dataset.proto if frm == "proto" else dataset.sdk_json
    plain = convert_ok(body, signal=dataset.signal, frm=frm, to="proto")
    compressed = convert_ok(compress(body), signal=dataset.signal, frm=frm, to="proto", encoding=encoding)
    assert compressed == plain
    assert_messages_equal(parse_proto(dataset.signal, compressed), dataset.message)


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate", "zstd"])
def test_empty_request(encoding):
    """An export request with nothing in it is valid (and is what a client's
    health check sends)."""
    body = {"identity": b"", "gzip": gzip.compress(b""), "deflate": zlib.compress(b""), "zstd": _zstd(b"")}[encoding]
    for signal in ["logs", "traces", "metrics"]:
        assert convert_ok(body, signal=signal, frm="proto", to="proto", encoding=encoding) == b""
        assert convert_ok(body, signal=signal, frm="proto", to="json", encoding=encoding) == b"{}\n"
    json_body = {"identity": b"{}", "gzip": gzip.compress(b"{}"), "deflate": zlib.compress(b"{}"), "zstd": _zstd(b"{}")}[encoding]
    assert convert_ok(json_body, signal="logs", frm="json", to="proto", encoding=encoding) == b""


# ----------------------------------------------------------------------------
# f. OTLP/JSON as other senders write it: everything proto3 JSON allows must
#    decode to the same message.

def _json_name_map(descriptor):
    by_key = {}
    for field in descriptor.fields:
        by_key[field.json_name] = field
        by_key[field.name] = field
    return by_key


def _rewrite(value, descriptor, on_message=None, on_field=None):
    """Walks OTLP/JSON alongside the message descriptor. `on_field(field, key,
    value) -> (key, value)` rewrites each known field; `on_message(descriptor,
    dict)` may add keys to each message object."""
    if value is None:
        return None
    fields = _json_name_map(descriptor)
    out = {}
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            out[key] = item
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE and item is not None:
            if field.is_repeated:
                item = [_rewrite(element, field.message_type, on_message, on_field) for element in item]
            else:
                item = _rewrite(item, field.message_type, on_message, on_field)
        if on_field is not None:
            key, item = on_field(field, key, item)
        out[key] = item
    if on_message is not None:
        on_message(descriptor, out)
    return out


INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_SINT64,
}
ID_FIELDS = {"trace_id", "span_id", "parent_span_id"}


def variant_snake_case(field, key, value):
    return field.name, value


def variant_int64_as_numbers(field, key, value):
    if field.type in INT64_TYPES:
        value = [int(v) for v in value] if field.is_repeated else int(value)
    return key, value


def variant_enums_by_name(field, key, value):
    if field.enum_type is not None:
        names = field.enum_type.values_by_number
        value = [names[v].name for v in value] if field.is_repeated else names[value].name
    return key, value


def variant_uppercase_hex_ids(field, key, value):
    if field.name in ID_FIELDS:
        value = value.upper()
    return key, value


def variant_numbers_as_strings(field, key, value):
    """proto3 JSON accepts every number as a string too."""
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_INT32) and field.enum_type is None:
        value = [repr(v) for v in value] if field.is_repeated else repr(value)
    return key, value


def add_unknown_fields(descriptor, obj):
    obj["someFutureField"] = {"nested": [1, "two", {"three": None}, [], {}], "flag": True, "n": -1.5e300}
    obj["some_future_scalar"] = "ignored"
    obj["zzzUnknownNull"] = None


def add_nulls(descriptor, obj):
    """null for every absent field outside a oneof: proto3 JSON reads it as the
    default value."""
    for field in descriptor.fields:
        if field.containing_oneof is not None:
            continue
        if field.json_name not in obj and field.name not in obj:
            obj[field.json_name] = None


def add_explicit_defaults(descriptor, obj):
    """Default values written out instead of left out."""
    for field in descriptor.fields:
        if field.containing_oneof is not None or field.json_name in obj:
            continue
        if field.is_repeated:
            obj[field.json_name] = []
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            continue  # an empty message is not the same as an absent one
        elif field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
            obj[field.json_name] = ""
        elif field.type == FieldDescriptor.TYPE_BOOL:
            obj[field.json_name] = False
        elif field.type in INT64_TYPES:
            obj[field.json_name] = "0"
        else:
            obj[field.json_name] = 0


def _reverse_keys(value):
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


JSON_VARIANTS = {
    "snake_case_keys": dict(on_field=variant_snake_case),
    "int64_as_json_numbers": dict(on_field=variant_int64_as_numbers),
    "enums_by_name": dict(on_field=variant_enums_by_name),
    "unknown_fields_ignored": dict(on_message=add_unknown_fields),
    "null_values": dict(on_message=add_nulls),
    "explicit_default_values": dict(on_message=add_explicit_defaults),
    "uppercase_hex_ids": dict(on_field=variant_uppercase_hex_ids),
    "all_at_once": dict(
        on_field=lambda f, k, v: variant_snake_case(f, *variant_enums_by_name(f, *variant_int64_as_numbers(f, k, v))),
        on_message=lambda d, o: (add_unknown_fields(d, o), add_nulls(d, o)),
    ),
}


@pytest.mark.parametrize("name", ["logs", "traces", "metrics"])
@pytest.mark.parametrize("variant", list(JSON_VARIANTS))
@pytest.mark.parametrize("layout", ["compact", "pretty"])
def test_json_variants(name, variant, layout):
    dataset = get_dataset(name)
    canonical = samples.message_to_otlp_json(dataset.message)
    rewritten = _rewrite(copy.deepcopy(canonical), request_class(dataset.signal).DESCRIPTOR, **JSON_VARIANTS[variant])
    if layout == "compact":
        body = json.dumps(rewritten, separators=(",", ":"), ensure_ascii=False).encode()
    else:
        body = json.dumps(_reverse_keys(rewritten), indent="\t", ensure_ascii=True).encode()
    # The variant must itself be valid proto3 JSON (as the protobuf library reads it).
    reference = samples.otlp_json_to_message(body, request_class(dataset.signal), ignore_unknown_fields=True)
    assert_messages_equal(reference, dataset.message, "test bug: the variant changed the data")

    out = convert_ok(body, signal=dataset.signal, frm="json", to="proto")
    assert_messages_equal(parse_proto(dataset.signal, out), dataset.message, f"{variant} JSON -> proto")
    assert convert_ok(body, signal=dataset.signal, frm="json", to="json") == convert_ok(
        dataset.proto, signal=dataset.signal, frm="proto", to="json"
    )


def test_json_numbers_as_strings():
    """proto3 JSON lets every number be a string ("1.5", "9")."""
    dataset = get_dataset("metrics")
    canonical = samples.message_to_otlp_json(dataset.message)
    rewritten = _rewrite(canonical, request_class("metrics").DESCRIPTOR, on_field=variant_numbers_as_strings)
    body = json.dumps(rewritten).encode()
    reference = samples.otlp_json_to_message(body, request_class("metrics"))
    assert_messages_equal(reference, dataset.message, "test bug: the variant changed the data")
    out = convert_ok(body, signal="metrics", frm="json", to="proto")
    assert_messages_equal(parse_proto("metrics", out), dataset.message)


def test_json_escapes_and_surrogate_pairs():
    """Strings in any escaped form proto3 JSON readers accept."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    text = 'a"\\/\b\f\n\r\t\x01 é 日本 🔥'
    escaped = json.dumps(text, ensure_ascii=True)  # \ud83d\udd25 for the emoji, \u00e9, ...
    body = (
        '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":%s},'
        '"attributes":[{"key":"\\u006b\\/","value":{"stringValue":"\\u00E9\\uD83D\\uDD25"}}]}]}]}]}' % escaped
    ).encode()
    out = convert_ok(body, signal="logs", frm="json", to="proto")
    message = ExportLogsServiceRequest.FromString(out)
    record = message.resource_logs[0].scope_logs[0].log_records[0]
    assert record.body.string_value == text
    assert record.attributes[0].key == "k/"
    assert record.attributes[0].value.string_value == "é🔥"


# ----------------------------------------------------------------------------
# Values at the edges of the JSON mapping.

def _single_value_request(**value):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    message = ExportLogsServiceRequest()
    record = message.resource_logs.add().scope_logs.add().log_records.add()
    for key, item in value.items():
        setattr(record.body, key, item)
    return message


@pytest.mark.parametrize(
    "value, json_text",
    [
        (float("inf"), '"Infinity"'),
        (float("-inf"), '"-Infinity"'),
        (float("nan"), '"NaN"'),
        (1e300, None),
        (-1e-300, None),
        (123456789012345.0, None),
        (2.0**53, None),
        (0.1 + 0.2, None),
    ],
    ids=["inf", "-inf", "nan", "1e300", "-1e-300", "1e14ish", "2pow53", "0.1+0.2"],
)
def test_double_values(value, json_text):
    message = _single_value_request(double_value=value)
    out = convert_ok(message.SerializeToString(), signal="logs", frm="proto", to="json")
    if json_text is not None:
        assert f'"doubleValue":{json_text}'.encode() in out
    back = convert_ok(out, signal="logs", frm="json", to="proto")
    assert back == message.SerializeToString(), "the double must survive proto -> json -> proto bit for bit"


def test_negative_zero_double():
    message = _single_value_request(double_value=-0.0)
    out = convert_ok(message.SerializeToString(), signal="logs", frm="proto", to="json")
    back = convert_ok(out, signal="logs", frm="json", to="proto")
    assert back == message.SerializeToString(), f"-0.0 became {out!r}"


@pytest.mark.parametrize("frm", ["proto", "json"])
def test_nul_inside_strings_arrives_whole(frm):
    """U+0000 is valid in an OTLP string (protobuf and JSON). Strings are kept with
    their length (protobuf-c's string_as_bytes), so the value and what follows the
    NUL survive both codecs, bit for bit; JSON writes it as \\u0000."""
    message = _single_value_request(string_value="admin\x00; rm -rf /")
    if frm == "proto":
        body = message.SerializeToString()
    else:
        body = json.dumps(samples.message_to_otlp_json(message)).encode()
    assert convert_ok(body, signal="logs", frm=frm, to="proto") == message.SerializeToString()
    out = convert_ok(body, signal="logs", frm=frm, to="json")
    assert b'"admin\\u0000; rm -rf /"' in out, out


def test_int64_and_uint64_extremes_in_json():
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    for text, expected in [
        ('"9223372036854775807"', samples.INT64_MAX),
        ('"-9223372036854775808"', samples.INT64_MIN),
        ("9223372036854775807", samples.INT64_MAX),
        ("-9223372036854775808", samples.INT64_MIN),
        ('"-0"', 0),
        ("0", 0),
    ]:
        body = ('{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"18446744073709551615","body":{"intValue":%s}}]}]}]}' % text).encode()
        out = convert_ok(body, signal="logs", frm="json", to="proto")
        record = ExportLogsServiceRequest.FromString(out).resource_logs[0].scope_logs[0].log_records[0]
        assert record.body.int_value == expected, text
        assert record.time_unix_nano == 2**64 - 1


# ----------------------------------------------------------------------------
# The fixtures the Swift unit tests use (scripts/make-fixtures.py).

FIXTURES = Path(__file__).resolve().parent.parent / "SluiceOTLPTests" / "Fixtures"


def test_fixtures_are_current(tmp_path):
    """Regenerating the fixtures gives the committed bytes (run
    scripts/make-fixtures.py when the samples change)."""
    script = FIXTURES.parent.parent.parent / "scripts" / "make-fixtures.py"
    subprocess.run(["python3", str(script), str(tmp_path)], check=True, capture_output=True)
    names = ["logs.pb", "logs.json", "logs.expected.json", "traces.pb", "traces.json", "traces.expected.json"]
    for name in names:
        assert (FIXTURES / name).exists(), f"missing fixture {name}: run scripts/make-fixtures.py"
        assert (FIXTURES / name).read_bytes() == (tmp_path / name).read_bytes(), f"{name} is stale: run scripts/make-fixtures.py"


@pytest.mark.parametrize("signal", ["logs", "traces"])
def test_fixtures_through_sluice(signal):
    expected = json.loads((FIXTURES / f"{signal}.expected.json").read_bytes())
    assert json.loads(convert_ok((FIXTURES / f"{signal}.pb").read_bytes(), signal=signal, frm="proto", to="json")) == expected
    assert json.loads(convert_ok((FIXTURES / f"{signal}.json").read_bytes(), signal=signal, frm="json", to="json")) == expected
