"""Hostile and broken input: every case is refused with exit status 2 and a
message a client's operator can act on, never a crash, and with bounded memory.
(Invalid UTF-8 inside protobuf strings is the exception: it is accepted, and
the JSON written for it is still valid UTF-8.)"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import zlib

import pytest

import otlp_samples as samples
from conftest import assert_refused, convert, convert_ok, convert_with_rusage, request_class

GIB = 1 << 30
DEFAULT_MAX_DEPTH = 64

# ----------------------------------------------------------------------------
# Building protobuf by hand (the python protobuf runtime refuses deep nesting).


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def nest(inner: bytes, field_numbers_inside_out: list[int], repeat: int) -> bytes:
    """`inner` wrapped `repeat` times in the chain of length-delimited fields
    (innermost first). Only the headers are built per level and joined once at
    the end, so this is linear in the output size."""
    headers = []
    length = len(inner)
    for _ in range(repeat):
        for number in field_numbers_inside_out:
            header = tag(number, 2) + varint(length)
            length += len(header)
            headers.append(header)
    return b"".join(reversed(headers)) + inner


ANY_STRING_X = length_delimited(1, b"x")  # AnyValue{string_value: "x"}
# AnyValue -> KeyValue.value(2) -> KeyValueList.values(1) -> AnyValue.kvlist_value(6)
KVLIST_LEVEL = [2, 1, 6]
# AnyValue -> ArrayValue.values(1) -> AnyValue.array_value(5)
ARRAY_LEVEL = [1, 5]


def logs_request_with_body(any_value: bytes) -> bytes:
    """ExportLogsServiceRequest{resource_logs{scope_logs{log_records{body}}}}."""
    record = length_delimited(5, any_value)
    return length_delimited(1, length_delimited(2, length_delimited(2, record)))


def traces_request_with_attribute(any_value: bytes) -> bytes:
    """ExportTraceServiceRequest{resource_spans{scope_spans{spans{attributes{key, value}}}}}."""
    key_value = length_delimited(1, b"deep") + length_delimited(2, any_value)
    span = length_delimited(1, bytes(16)) + length_delimited(2, bytes(8)) + length_delimited(9, key_value)
    return length_delimited(1, length_delimited(2, length_delimited(2, span)))


def json_deep_kvlist(levels: int) -> bytes:
    opening = '{"kvlistValue":{"values":[{"key":"k","value":' * levels
    closing = "}]}}" * levels
    body = opening + '{"stringValue":"x"}' + closing
    return ('{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":%s}]}]}]}' % body).encode()


def json_deep_array(levels: int) -> bytes:
    body = '{"arrayValue":{"values":[' * levels + '{"intValue":"1"}' + "]}}" * levels
    return ('{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":%s}]}]}]}' % body).encode()


# ----------------------------------------------------------------------------
# Nesting without end.

DEEP = 100_000


@pytest.mark.parametrize(
    "name, body, signal",
    [
        ("logs-body-kvlist", lambda: logs_request_with_body(nest(ANY_STRING_X, KVLIST_LEVEL, DEEP)), "logs"),
        ("logs-body-array", lambda: logs_request_with_body(nest(ANY_STRING_X, ARRAY_LEVEL, DEEP)), "logs"),
        ("span-attribute-kvlist", lambda: traces_request_with_attribute(nest(ANY_STRING_X, KVLIST_LEVEL, DEEP)), "traces"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
@pytest.mark.parametrize("to", ["json", "proto"])
def test_deep_protobuf_refused(name, body, signal, to):
    data = body()
    assert len(data) > DEEP  # really that deep
    result = convert(data, signal=signal, frm="proto", to=to)
    assert_refused(result, "nest", "deeper than 64")


def test_deep_unknown_field_is_skipped():
    """The logs bytes read as metrics: the deep part lands in a field number
    Gauge does not have, which protobuf skips without looking inside. Accepted,
    not recursed into."""
    data = logs_request_with_body(nest(ANY_STRING_X, KVLIST_LEVEL, DEEP))
    out = convert_ok(data, signal="metrics", frm="proto", to="json")
    assert json.loads(out) == {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"gauge": {}}]}]}]}


@pytest.mark.parametrize(
    "name, body",
    [
        ("kvlist", lambda: json_deep_kvlist(DEEP)),
        ("array", lambda: json_deep_array(DEEP)),
        # A field sluice does not know is skipped, not parsed into anything; it
        # must still not recurse without end.
        ("unknown-field-arrays", lambda: ('{"resourceLogs":[],"future":%s}' % ("[" * DEEP + "]" * DEEP)).encode()),
        ("unknown-field-objects", lambda: ('{"future":%s1%s}' % ('{"a":' * DEEP, "}" * DEEP)).encode()),
        ("unclosed", lambda: ("[" * DEEP).encode()),
        ("unclosed-in-body", lambda: json_deep_kvlist(DEEP)[: -DEEP * 4]),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_deep_json_refused(name, body):
    result = convert(body(), signal="logs", frm="json", to="proto")
    if name == "unclosed":
        assert_refused(result, "json")
    else:
        assert_refused(result, "nest", "deeper than 64")


def message_depth(message) -> int:
    """Nesting depth of a pb2 message, the request itself being level 1."""
    from google.protobuf.descriptor import FieldDescriptor

    deepest = 0
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                deepest = max(deepest, message_depth(item))
    return 1 + deepest


def nested_body(maps: int, arrays: int):
    value = "leaf"
    for _ in range(arrays):
        value = [value]
    for i in range(maps):
        value = {f"level{i}": value}
    return value


def logs_request(body):
    from opentelemetry.exporter.otlp.proto.common._internal import _encode_value
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    message = ExportLogsServiceRequest()
    record = message.resource_logs.add().scope_logs.add().log_records.add()
    record.body.CopyFrom(_encode_value(body))
    return message


def request_of_depth(target: int, measure) -> object:
    """A logs request whose depth, as `measure` counts it, is exactly `target`."""
    for maps in range(0, 40):
        for arrays in range(0, 4):
            message = logs_request(nested_body(maps, arrays))
            if measure(message) == target:
                return message
    raise AssertionError(f"no request of depth {target}")


def proto_depth(message) -> int:
    return message_depth(message)


@pytest.mark.parametrize("frm", ["proto", "json"])
def test_nesting_limit_boundary(frm):
    """--max-depth counts nested messages, the request being level 1, in
    protobuf and in OTLP/JSON alike (a JSON array is not a level of its own):
    64 levels pass, 65 are refused, and a legit 20 levels pass."""
    measure = proto_depth

    def body(message):
        if frm == "proto":
            return message.SerializeToString()
        return json.dumps(samples.message_to_otlp_json(message)).encode()

    for depth in [20, DEFAULT_MAX_DEPTH]:
        message = request_of_depth(depth, measure)
        out = convert_ok(body(message), signal="logs", frm=frm, to="proto")
        assert request_class("logs").FromString(out) == message, f"depth {depth}"

    too_deep = request_of_depth(DEFAULT_MAX_DEPTH + 1, measure)
    assert_refused(convert(body(too_deep), signal="logs", frm=frm, to="proto"), "deeper than 64")

    # The option moves the limit both ways.
    assert_refused(convert(body(request_of_depth(20, measure)), signal="logs", frm=frm, to="proto", max_depth=19), "deeper than 19")
    convert_ok(body(too_deep), signal="logs", frm=frm, to="proto", max_depth=DEFAULT_MAX_DEPTH + 1)


def test_65_nested_maps_refused():
    """65 maps inside each other in a log body (too deep for the python
    protobuf runtime to even build, hence by hand)."""
    as_proto = logs_request_with_body(nest(ANY_STRING_X, KVLIST_LEVEL, 65))
    assert_refused(convert(as_proto, signal="logs", frm="proto", to="json"), "deeper than 64")
    assert_refused(convert(json_deep_kvlist(65), signal="logs", frm="json", to="proto"), "deeper than 64")


def test_depth_limit_same_for_protobuf_and_json():
    """The same request is accepted in both formats or refused in both: a batch
    sluice writes as JSON always reads back."""
    for maps in range(1, 25):
        message = logs_request(nested_body(maps, 0))
        as_proto = convert(message.SerializeToString(), signal="logs", frm="proto", to="proto").returncode
        as_json = convert(json.dumps(samples.message_to_otlp_json(message)).encode(), signal="logs", frm="json", to="proto").returncode
        assert as_proto == as_json, f"{maps} nested maps: exit {as_proto} as protobuf, {as_json} as JSON"


@pytest.mark.parametrize("frm", ["proto", "json"])
def test_huge_max_depth_option_does_not_crash(frm):
    if frm == "proto":
        body = logs_request_with_body(nest(ANY_STRING_X, KVLIST_LEVEL, 10_000))
    else:
        body = json_deep_kvlist(10_000)
    result = convert(body, signal="logs", frm=frm, to="proto", max_depth=1_000_000)
    # Refusing the option, capping it, or decoding: all fine. Crashing is not.
    assert result.returncode >= 0


# ----------------------------------------------------------------------------
# Compression bombs: refused at the 1 GiB limit, with memory near that limit.

BOMB_SIZE = 2 * GIB
MAX_RSS = int(1.2 * GIB)


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """2 GiB of zeros as gzip (about 2 MiB), compressed chunk by chunk."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + 15)
    chunk = bytes(8 << 20)
    parts = [compressor.compress(chunk) for _ in range(BOMB_SIZE // len(chunk))]
    parts.append(compressor.flush())
    bomb = b"".join(parts)
    assert len(bomb) < 8 << 20
    return bomb


def _zstd_bomb(declare_size: bool) -> bytes:
    if shutil.which("zstd") is None:
        pytest.fail("the zstd command is needed: apt-get install zstd", pytrace=False)
    command = ["zstd", "-q", "-c", "-1"]
    if declare_size:
        command.append(f"--stream-size={BOMB_SIZE}")  # the frame header states 2 GiB
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    chunk = bytes(8 << 20)
    import threading

    def feed():
        for _ in range(BOMB_SIZE // len(chunk)):
            process.stdin.write(chunk)
        process.stdin.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    bomb = process.stdout.read()
    feeder.join()
    assert process.wait() == 0
    assert len(bomb) < 1 << 20
    return bomb


@pytest.fixture(scope="module")
def bomb_results(gzip_bomb):
    """Each bomb is run once; the tests below look at different aspects."""
    results = {}
    results["gzip"] = convert_with_rusage(gzip_bomb, signal="logs", frm="proto", to="json", encoding="gzip")
    for declared in (False, True):
        name = "zstd-declared-size" if declared else "zstd"
        results[name] = convert_with_rusage(_zstd_bomb(declared), signal="logs", frm="proto", to="json", encoding="zstd")
    return results


@pytest.mark.parametrize("bomb", ["gzip", "zstd", "zstd-declared-size"])
def test_compression_bomb_refused(bomb_results, bomb):
    result, _ = bomb_results[bomb]
    assert_refused(result, "decompresses to more than", "1024 MiB", "limit")


@pytest.mark.parametrize(
    "bomb",
    [
        "gzip",
        "zstd",
        "zstd-declared-size",
    ],
)
def test_compression_bomb_memory_bounded(bomb_results, bomb):
    _, max_rss = bomb_results[bomb]
    assert max_rss < MAX_RSS, f"peak RSS {max_rss / GIB:.2f} GiB while refusing a {bomb} bomb"


def test_bomb_below_limit_is_decoded_then_refused_as_protobuf():
    """64 MiB of zeros is under the size limit: it decompresses, and then the
    protobuf decoder refuses it (field number 0)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + 15)
    body = b"".join(compressor.compress(bytes(8 << 20)) for _ in range(8)) + compressor.flush()
    assert_refused(convert(body, signal="logs", frm="proto", to="json", encoding="gzip"), "protobuf")


# ----------------------------------------------------------------------------
# Broken compression.

def _valid_logs_proto() -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    message = ExportLogsServiceRequest()
    resource_logs = message.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name").value.string_value = "svc"
    record = resource_logs.scope_logs.add().log_records.add()
    record.time_unix_nano = samples.BASE_TIME
    record.body.string_value = "hello " * 50
    record.trace_id = bytes(range(16))
    record.span_id = bytes(range(8))
    record.attributes.add(key="k").value.int_value = -5
    return message.SerializeToString()


VALID = _valid_logs_proto()


def _zstd_of(data: bytes, *options: str) -> bytes:
    return subprocess.run(["zstd", "-q", "-c", *options], input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize(
    "encoding, body, keywords",
    [
        ("gzip", lambda: b"definitely not gzip", ["gzip"]),
        ("gzip", lambda: __import__("gzip").compress(VALID)[:-12], ["gzip", "truncated"]),
        ("gzip", lambda: __import__("gzip").compress(VALID)[:-4] + b"\x00\x00\x00\x00", ["gzip"]),  # wrong size
        ("gzip", lambda: __import__("gzip").compress(VALID) + b"garbage!", ["gzip"]),
        ("gzip", lambda: (lambda g: g[:-8] + bytes([g[-8] ^ 0xFF]) + g[-7:])(__import__("gzip").compress(VALID)), ["gzip"]),  # bad CRC
        ("deflate", lambda: b"\x78\x9c\xff\xff\xff", ["deflate"]),
        ("deflate", lambda: zlib.compress(VALID)[:-10], ["deflate", "truncated"]),
        ("zstd", lambda: b"\x28\xb5\x2f\xfd garbage", ["zstd"]),
        ("zstd", lambda: _zstd_of(VALID)[:-5], ["zstd"]),
        ("zstd", lambda: b"not zstd at all", ["zstd"]),
        # A frame asking for a 1 GiB window: refused instead of obeyed.
        ("zstd", lambda: _zstd_of(random.Random(7).randbytes(1 << 16), "--long=30", "--no-content-size"), ["zstd"]),
        ("gzip", lambda: b"", ["gzip", "truncated"]),
    ],
    ids=[
        "gzip-garbage",
        "gzip-truncated",
        "gzip-wrong-length",
        "gzip-trailing-garbage",
        "gzip-bad-crc",
        "deflate-garbage",
        "deflate-truncated",
        "zstd-garbage",
        "zstd-truncated",
        "zstd-not-zstd",
        "zstd-huge-window",
        "gzip-empty",
    ],
)
def test_broken_compression_refused(encoding, body, keywords):
    if encoding == "zstd" and shutil.which("zstd") is None:
        pytest.fail("the zstd command is needed", pytrace=False)
    assert_refused(convert(body(), signal="logs", frm="proto", to="json", encoding=encoding), *keywords)


# ----------------------------------------------------------------------------
# Broken protobuf.

@pytest.mark.parametrize(
    "body, keywords",
    [
        (VALID[:-3], ["protobuf"]),
        (VALID[:1], ["protobuf"]),
        (VALID[:2], ["protobuf"]),
        (b"\x0a", ["protobuf"]),
        # resource_logs (field 1, length-delimited) sent with the other wire types
        (tag(1, 0) + varint(5), ["protobuf"]),
        (tag(1, 1) + bytes(8), ["protobuf"]),
        (tag(1, 5) + bytes(4), ["protobuf"]),
        (tag(1, 3) + tag(1, 4), ["protobuf"]),
        (tag(1, 6), ["protobuf", "wire type"]),
        (tag(1, 7), ["protobuf", "wire type"]),
        # LogRecord.time_unix_nano (fixed64) as a varint, deep inside
        (length_delimited(1, length_delimited(2, length_delimited(2, tag(1, 0) + varint(5)))), ["protobuf"]),
        # AnyValue.string_value as a varint
        (logs_request_with_body(tag(1, 0) + varint(1)), ["protobuf"]),
        # a length prefix past the end, at the top and nested
        (tag(1, 2) + varint(1000) + b"\x12\x00", ["protobuf", "past the end"]),
        (length_delimited(1, tag(2, 2) + varint(50) + b"\x00"), ["protobuf"]),
        (tag(1, 2) + varint(2**32 + 5) + b"xx", ["protobuf"]),
        (tag(1, 2) + varint(2**63) + b"xx", ["protobuf"]),
        # a varint that never ends
        (b"\x08" + b"\xff" * 20, ["protobuf", "varint"]),
        (b"\x0a" + b"\xff" * 10 + b"\x01", ["protobuf"]),
        # field number 0
        (b"\x00\x00", ["protobuf", "field number 0"]),
        (b"\x02\x00", ["protobuf"]),
    ],
    ids=[
        "truncated-3",
        "truncated-to-1",
        "truncated-to-2",
        "tag-only",
        "wire-varint",
        "wire-fixed64",
        "wire-fixed32",
        "wire-group",
        "wire-type-6",
        "wire-type-7",
        "nested-fixed64-as-varint",
        "string-as-varint",
        "length-past-end",
        "nested-length-past-end",
        "length-over-4GiB",
        "length-2pow63",
        "endless-varint",
        "overlong-length-varint",
        "field-zero",
        "field-zero-len",
    ],
)
def test_broken_protobuf_refused(body, keywords):
    for to in ["json", "proto"]:
        assert_refused(convert(body, signal="logs", frm="proto", to=to), *keywords)


def test_every_truncation_of_a_valid_request():
    """Cut anywhere: either a valid shorter request (cut between top-level
    fields) or a refusal; never a crash."""
    data = samples.proto_logs(samples.sdk_log_records()[:3]).SerializeToString()
    step = max(1, len(data) // 150)
    refused = 0
    for cut in range(0, len(data), step):
        result = convert(data[:cut], signal="logs", frm="proto", to="json")
        assert result.returncode in (0, 2), result.stderr
        if result.returncode == 2:
            refused += 1
            assert_refused(result, "protobuf")
    assert refused > 0


@pytest.mark.parametrize("seed", range(20))
def test_random_garbage_never_crashes(seed):
    rng = random.Random(seed)
    data = rng.randbytes(rng.choice([1, 7, 64, 1000, 50_000]))
    for signal in ["logs", "traces", "metrics"]:
        result = convert(data, signal=signal, frm="proto", to="json")
        assert result.returncode in (0, 2), result.stderr
        if result.returncode == 2:
            assert_refused(result, "protobuf")
        else:
            result.stdout.decode("utf-8")
        result = convert(data, signal=signal, frm="json", to="proto")
        assert_refused(result, "json")


def test_mutated_requests_never_crash():
    """Bit flips, byte changes and splices of a real SDK request."""
    base = samples.proto_spans(samples.sdk_spans()[:4]).SerializeToString()
    rng = random.Random(1234)
    for _ in range(150):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.5:
                data[position] ^= 1 << rng.randrange(8)
            elif choice < 0.8:
                data[position] = rng.choice([0x00, 0x7F, 0x80, 0xFF, 0x0A, 0x12])
            else:
                data[position:position] = data[rng.randrange(len(data)):][: rng.randint(1, 40)]
        result = convert(bytes(data), signal="traces", frm="proto", to="json")
        assert result.returncode in (0, 2), result.stderr
        if result.returncode == 0:
            json.loads(result.stdout.decode("utf-8"))


def test_mutated_json_never_crashes():
    base = samples.json_logs(samples.sdk_log_records()[:4])
    rng = random.Random(99)
    alphabet = b'{}[]":,\\0123456789.eE+-tfnul \x00\xff'
    for _ in range(150):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(data))
            if rng.random() < 0.7:
                data[position] = rng.choice(alphabet)
            else:
                del data[position : position + rng.randint(1, 30)]
        result = convert(bytes(data), signal="logs", frm="json", to="json")
        assert result.returncode in (0, 2), result.stderr
        if result.returncode == 0:
            json.loads(result.stdout.decode("utf-8"))


# ----------------------------------------------------------------------------
# Broken JSON.

def _record_json(fields: str) -> bytes:
    return ('{"resourceLogs":[{"scopeLogs":[{"logRecords":[{%s}]}]}]}' % fields).encode()


@pytest.mark.parametrize(
    "body, keywords",
    [
        (_record_json('"body":{"stringValue":"abc'), ["json", "unterminated"]),
        (b'{"resourceLogs":[]} trailing', ["json", "after"]),
        (b'{"resourceLogs":[]}{}', ["json", "after"]),
        (_record_json('"body":{"stringValue":"a\x01b"}'), ["json", "control character"]),
        (_record_json('"body":{"stringValue":"tab\there"}'), ["json", "control character"]),
        (_record_json('"body":{"stringValue":"nl\nhere"}'), ["json", "control character"]),
        (_record_json('"body":{"stringValue":"\\x41"}'), ["json"]),
        (_record_json('"body":{"stringValue":"\\u12G4"}'), ["json"]),
        (b'{"resourceLogs":[', ["json"]),
        (b'{"resourceLogs" []}', ["json"]),
        (b"{'resourceLogs': []}", ["json"]),
        (b'{"resourceLogs":[],}', ["json"]),
        (b'{"resourceLogs":[{},]}', ["json"]),
        (_record_json('"body":{"doubleValue":NaN}'), ["json"]),
        (_record_json('"body":{"boolValue":tru}'), ["json"]),
        (b"", ["json"]),
        (b"   ", ["json"]),
        (b"null", ["json"]),
        (b"[]", ["json"]),
        (b'"resourceLogs"', ["json"]),
        (b"\xef\xbb\xbf\xef\xbb\xbf{}", ["json"]),
    ],
    ids=[
        "unterminated-string",
        "trailing-garbage",
        "two-documents",
        "control-char",
        "raw-tab",
        "raw-newline",
        "bad-escape",
        "bad-unicode-escape",
        "unterminated-array",
        "missing-colon",
        "single-quotes",
        "trailing-comma-object",
        "trailing-comma-array",
        "bare-nan",
        "bad-literal",
        "empty",
        "whitespace",
        "null-root",
        "array-root",
        "string-root",
        "double-bom",
    ],
)
def test_invalid_json_refused(body, keywords):
    assert_refused(convert(body, signal="logs", frm="json", to="proto"), *keywords)


@pytest.mark.parametrize(
    "fields",
    ['"timeUnixNano":01', '"body":{"doubleValue":.5}', '"body":{"doubleValue":1.}', '"body":{"doubleValue":1e99999}'],
    ids=["leading-zero", "leading-dot", "trailing-dot", "double-overflow"],
)
def test_json_number_syntax_is_strict(fields):
    assert_refused(convert(_record_json(fields), signal="logs", frm="json", to="proto"))


@pytest.mark.parametrize(
    "fields, field_name",
    [
        ('"body":{"intValue":"9223372036854775808"}', "intValue"),
        ('"body":{"intValue":9223372036854775808}', "intValue"),
        ('"body":{"intValue":"-9223372036854775809"}', "intValue"),
        ('"body":{"intValue":-9223372036854775809}', "intValue"),
        ('"body":{"intValue":"99999999999999999999999999999"}', "intValue"),
        ('"body":{"intValue":1.5}', "intValue"),
        ('"timeUnixNano":"18446744073709551616"', "timeUnixNano"),
        ('"timeUnixNano":18446744073709551616', "timeUnixNano"),
        ('"timeUnixNano":"-1"', "timeUnixNano"),
        ('"observedTimeUnixNano":"12abc"', "observedTimeUnixNano"),
        ('"droppedAttributesCount":4294967296', "droppedAttributesCount"),
        ('"droppedAttributesCount":-1', "droppedAttributesCount"),
        ('"severityNumber":2147483648', "severityNumber"),
        ('"flags":"0x1"', "flags"),
    ],
)
def test_json_number_out_of_range_refused(fields, field_name):
    stderr = assert_refused(convert(_record_json(fields), signal="logs", frm="json", to="proto"))
    assert field_name in stderr, stderr


@pytest.mark.parametrize(
    "body, field_name",
    [
        (b'{"resourceLogs":"oops"}', "resourceLogs"),
        (b'{"resourceLogs":{"scopeLogs":[]}}', "resourceLogs"),
        (b'{"resourceLogs":["oops"]}', "resourceLogs"),
        (b'{"resourceLogs":[{"resource":"oops"}]}', "resource"),
        (b'{"resourceLogs":[{"scopeLogs":"oops"}]}', "scopeLogs"),
        (_record_json('"body":"just a string"'), "body"),
        (_record_json('"body":{"kvlistValue":"oops"}'), "kvlistValue"),
        (_record_json('"body":{"kvlistValue":{"values":[{"key":"k","value":5}]}}'), "value"),
        (_record_json('"attributes":{"key":"k"}'), "attributes"),
        (_record_json('"attributes":[{"key":7,"value":{}}]'), "key"),
        (_record_json('"body":{"stringValue":7}'), "stringValue"),
        (_record_json('"body":{"boolValue":"true"}'), "boolValue"),
        (_record_json('"body":{"bytesValue":"not base64!!"}'), "bytesValue"),
        (_record_json('"traceId":"not hex"'), "traceId"),
        (_record_json('"spanId":12345'), "spanId"),
        (_record_json('"severityNumber":"SEVERITY_NUMBER_NO_SUCH_LEVEL"'), "severityNumber"),
        (_record_json('"severityNumber":{}'), "severityNumber"),
    ],
)
def test_json_wrong_type_refused(body, field_name):
    stderr = assert_refused(convert(body, signal="logs", frm="json", to="proto"))
    assert field_name in stderr, stderr


def test_json_two_values_in_a_oneof_refused_or_last_wins():
    """proto3 JSON says a oneof set twice is an error; some readers keep the
    last. Either is acceptable, a crash or a mix is not."""
    body = _record_json('"body":{"stringValue":"a","intValue":"5"}')
    result = convert(body, signal="logs", frm="json", to="proto")
    if result.returncode == 2:
        assert_refused(result, "body")
    else:
        record = request_class("logs").FromString(result.stdout).resource_logs[0].scope_logs[0].log_records[0]
        assert record.body.WhichOneof("value") in ("string_value", "int_value")


# ----------------------------------------------------------------------------
# Invalid UTF-8 in protobuf strings: accepted, and the JSON stays valid UTF-8.

INVALID_UTF8 = [
    b"\xff\xfe",  # never valid
    b"\xc0\x80",  # overlong NUL
    b"\xe0\x80\xaf",  # overlong '/'
    b"\xed\xa0\x80",  # UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf8\x88\x80\x80\x80",  # 5-byte form
    b"\x80",  # lone continuation byte
    b"\xe6\x97",  # cut multi-byte sequence
]


def _with_invalid_utf8(build, invalid: bytes):
    """Serializes the message `build(placeholder)` makes, then swaps each ASCII
    placeholder for text around the invalid bytes, of the same length."""
    replacement = b"ok:" + invalid + b":end"
    placeholder = "Q" * len(replacement)
    message = build(placeholder)
    data = message.SerializeToString()
    count = data.count(placeholder.encode())
    assert count >= 1
    return data.replace(placeholder.encode(), replacement), replacement, count


def _logs_with_strings(text: str):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    message = ExportLogsServiceRequest()
    resource_logs = message.resource_logs.add()
    resource_logs.schema_url = text
    resource_logs.resource.attributes.add(key=text).value.string_value = text
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = text
    scope_logs.scope.version = text
    record = scope_logs.log_records.add()
    record.severity_text = text
    record.event_name = text
    record.body.kvlist_value.values.add(key=text).value.array_value.values.add().string_value = text
    record.attributes.add(key="plain").value.string_value = text
    return message


def _spans_with_strings(text: str):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    message = ExportTraceServiceRequest()
    span = message.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = bytes(range(1, 17))
    span.span_id = bytes(range(1, 9))
    span.name = text
    span.trace_state = text
    span.status.message = text
    span.events.add(name=text).attributes.add(key=text).value.string_value = text
    span.links.add(trace_id=bytes(16), span_id=bytes(8), trace_state=text)
    return message


def _collapse(text: str) -> str:
    return re.sub("\ufffd+", "\ufffd", text)


@pytest.mark.parametrize("invalid", INVALID_UTF8, ids=lambda b: b.hex())
@pytest.mark.parametrize("signal, build", [("logs", _logs_with_strings), ("traces", _spans_with_strings)], ids=["logs", "traces"])
def test_invalid_utf8_in_protobuf_strings_is_replaced(signal, build, invalid):
    data, replacement, count = _with_invalid_utf8(build, invalid)
    out = convert_ok(data, signal=signal, frm="proto", to="json")
    text = out.decode("utf-8")  # strict: must be valid UTF-8
    assert "\ufffd" in text
    document = json.loads(text)
    expected = _collapse(replacement.decode("utf-8", errors="replace"))
    found = [s for s in _strings(document) if "ok:" in s]
    assert len(found) == count, found
    for value in found:
        assert _collapse(value) == expected, value

    # proto -> proto passes the bytes through (it is not sluice's job to fix them there).
    assert convert(data, signal=signal, frm="proto", to="proto").returncode == 0
    # and the JSON it wrote reads back.
    convert_ok(out, signal=signal, frm="json", to="proto")


def _strings(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize("invalid", INVALID_UTF8[:4], ids=lambda b: b.hex())
def test_invalid_utf8_in_json_input_never_yields_invalid_json(invalid):
    body = _record_json('"body":{"stringValue":"ok:%s:end"}' % invalid.decode("latin-1")).replace(
        invalid.decode("latin-1").encode("utf-8"), invalid
    )
    assert invalid in body
    result = convert(body, signal="logs", frm="json", to="json")
    if result.returncode == 2:
        assert_refused(result, "utf-8")
    else:
        assert result.returncode == 0
        json.loads(result.stdout.decode("utf-8"))
