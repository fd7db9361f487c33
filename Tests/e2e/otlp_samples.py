"""Telemetry built with the OpenTelemetry Python SDK, for the codec tests and the
fixture generator (scripts/make-fixtures.py).

Everything here is deterministic: fixed timestamps, fixed ids (a counting id
generator), resources built without the SDK's detectors. The same call returns
the same records, so the fixtures it produces are stable across runs.

The records go through the real SDK pipeline (providers, loggers, tracers,
attribute limits, an in-memory exporter) wherever the SDK can express a case;
the few cases the SDK's own checks refuse (an empty attribute key) are built as
ReadableLogRecord / ReadableSpan objects directly, which is what an exporter
receives either way.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import Context
from opentelemetry.sdk._logs import (
    LoggerProvider,
    LogRecordLimits,
    ReadableLogRecord,
)
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

# 2023-11-14T22:13:20Z, in nanoseconds.
BASE_TIME = 1_700_000_000_000_000_000

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

CJK = "日本語のログ 中文日志 한국어 로그"
EMOJI = "🔥 👩‍💻 🏳️‍🌈 🇯🇵 👍🏽"
COMBINING = "e\u0301 n\u0303 a\u030a\u0323 Z\u0351\u0352\u0357"
# (No NUL here: see test_codec_sdk.py::test_nul_inside_strings_survives.)
ESCAPES = 'quote" backslash\\ slash/ nl\n cr\r tab\t bs\b ff\f ctl\x01\x1f del\x7f ls\u2028 ps\u2029 bom\ufeff'

# One attribute of every kind the SDK accepts, with the edge values of each.
ALL_ATTRIBUTE_TYPES: dict = {
    "str": "hello",
    "str.empty": "",
    "bool.true": True,
    "bool.false": False,
    "int.zero": 0,
    "int.one": 1,
    "int.negative": -42,
    "int.max": INT64_MAX,
    "int.min": INT64_MIN,
    "int.2pow53plus1": 2**53 + 1,
    "float.zero": 0.0,
    "float.negative": -1.5,
    "float.fraction": 0.1,
    "float.third": 1 / 3,
    "float.integral": 3.0,
    "float.1e15": 1e15,
    "float.1e16": 1e16,
    "float.large": 1.7976931348623157e308,
    "float.tiny": 5e-324,
    "float.negative.small": -2.5e-10,
    "bytes": b"\x00\x01\x7f\x80\xfe\xff",
    "bytes.empty": b"",
    "seq.str": ("a", "", CJK),
    "seq.bool": (True, False),
    "seq.int": (0, -1, INT64_MAX, INT64_MIN),
    "seq.float": (0.0, -1.5, 2.25),
    "seq.bytes": (b"\x00", b"\xff\xfe"),
    "seq.empty": (),
    "unicode.cjk": CJK,
    "unicode.emoji": EMOJI,
    "unicode.combining": COMBINING,
    "unicode.rtl": "שלום مرحبا",
    "unicode.escapes": ESCAPES,
    "unicode.key.日本語.🔥": "key with unicode",
}

# Log records (and, since SDK 1.3x, all attributes) may also hold maps and
# heterogeneous sequences.
EXTENDED_ATTRIBUTES: dict = {
    "map": {"inner": {"deeper": [1, {"x": "y"}, None]}, "n": None, "list": ["a", 1]},
    "map.empty": {},
    "seq.mixed": ("a", 1, 2.5, True, None, b"x", ("nested", 2)),
    "seq.nested": ((1, 2), (), ("x",)),
    "none": None,
}

AUDIT_EVENTS = [
    {
        "event_id": "0f9c5a3e-8f0b-4c39-9d4e-5b1f2a7c9e01",
        "event_type": "policy.decision",
        "action": "block",
        "policy_name": "pii-redaction/strict",
        "model": "gpt-4o-2024-08-06",
        "gateway_id": "gw-eu-west-1-a",
        "user_id": "user_48213",
        "org_id": "org_ACME",
        "tokens.prompt": 1532,
        "tokens.completion": 0,
        "cost.usd": 0.004596,
        "blocked": True,
        "matched_rules": ("email", "iban", "phone"),
    },
    {
        "event_id": "0f9c5a3e-8f0b-4c39-9d4e-5b1f2a7c9e02",
        "event_type": "request.completed",
        "action": "allow",
        "policy_name": "default",
        "model": "claude-3-5-sonnet-20241022",
        "gateway_id": "gw-us-east-1-b",
        "user_id": "用户_7",
        "org_id": "org_Ünïcödé",
        "tokens.prompt": 88,
        "tokens.completion": 512,
        "cost.usd": 0.0,
        "blocked": False,
    },
    {
        "event_id": "0f9c5a3e-8f0b-4c39-9d4e-5b1f2a7c9e03",
        "event_type": "prompt.redacted",
        "action": "redact",
        "policy_name": "secrets",
        "model": "llama-3.1-70b-instruct",
        "gateway_id": "gw-ap-south-1-c",
        "user_id": "",
        "org_id": "org_ACME",
        "redacted.spans": (12, 40, 97),
        "redacted.kinds": ("aws_access_key", "jwt"),
    },
]

RESOURCE_MAIN = Resource(
    {
        "service.name": "ai-gateway",
        "service.namespace": "edge",
        "service.version": "2.14.0",
        "service.instance.id": "pod-7f9c-xk2lp",
        "k8s.pod.name": "ai-gateway-7f9c-xk2lp",
        "deployment.environment.name": "prod",
        "host.cpu.count": 8,
        "process.runtime.cpython": True,
        "resource.ratio": 0.75,
        "resource.tags": ("a", "b"),
        "resource.unicode": CJK,
    },
    schema_url="https://opentelemetry.io/schemas/1.26.0",
)
RESOURCE_LIMITED = Resource({"service.name": "limited"}, schema_url="")
RESOURCE_EMPTY = Resource({})


def _context(trace_id: int, span_id: int, flags: int = 0x01, remote: bool = False, state: TraceState | None = None):
    span_context = SpanContext(
        trace_id=trace_id,
        span_id=span_id,
        is_remote=remote,
        trace_flags=TraceFlags(flags),
        trace_state=state,
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context), Context())


# Trace ids / span ids that exercise the hex encoding: leading zeros, all ones,
# a mix.
TRACE_CONTEXTS = [
    (0x5B8EFFF798038103D269B633813FC60C, 0xEEE19B7EC3C1B174),
    (0x00000000000000000000000000000001, 0x0000000000000001),
    (0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF),
    (0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7),
]


def _logger_records(provider: LoggerProvider, exporter: InMemoryLogRecordExporter) -> list[ReadableLogRecord]:
    provider.force_flush()
    records = list(exporter.get_finished_logs())
    provider.shutdown()
    return records


def _readable(records) -> list[ReadableLogRecord]:
    """The exporter hands out ReadWriteLogRecords in some SDK versions; the
    encoders take ReadableLogRecords (same fields, frozen)."""
    out = []
    for record in records:
        if isinstance(record, ReadableLogRecord):
            out.append(record)
        else:
            out.append(
                ReadableLogRecord(
                    log_record=record.log_record,
                    resource=record.resource,
                    instrumentation_scope=record.instrumentation_scope,
                    limits=record.limits,
                )
            )
    return out


def sdk_log_records(bulk: int = 0) -> list[ReadableLogRecord]:
    """Log records covering every case the codecs must carry. `bulk` adds that
    many more ordinary records (for the large-request tests)."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE_MAIN, shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))

    app = provider.get_logger(
        "sluice.e2e.app",
        version="1.2.3",
        schema_url="https://opentelemetry.io/schemas/1.24.0",
        attributes={"scope.attr": "x", "scope.int": 7, "scope.unicode": EMOJI},
    )
    bare = provider.get_logger("")
    audit = provider.get_logger("ai-gateway.audit", version="0.9.0")

    t = BASE_TIME
    ctx = [_context(tid, sid) for tid, sid in TRACE_CONTEXTS]
    no_trace = Context()

    app.emit(
        LogRecord(
            timestamp=t + 1,
            observed_timestamp=t + 2,
            context=ctx[0],
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body="every attribute type",
            attributes={**ALL_ATTRIBUTE_TYPES, **EXTENDED_ATTRIBUTES},
        )
    )
    bodies = [
        {"user": {"id": 42, "name": CJK, "tags": ["a", "b"], "ok": True, "ratio": -0.5, "none": None}},
        {"level1": {"level2": {"level3": {"level4": {"level5": "deep"}}}}},
        INT64_MIN,
        INT64_MAX,
        -1.5,
        0.0,
        True,
        False,
        b"\x00binary\xff",
        ["x", 1, 2.5, None, {"k": "v"}],
        "",
        None,
        EMOJI + " " + COMBINING,
        ESCAPES,
    ]
    for i, body in enumerate(bodies):
        app.emit(
            LogRecord(
                timestamp=t + 1000 * (i + 1),
                observed_timestamp=t + 1000 * (i + 1) + 7,
                context=ctx[i % len(ctx)],
                severity_number=list(SeverityNumber)[i % len(SeverityNumber)],
                severity_text=["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "", "致命"][i % 8],
                body=body,
                attributes={"body.index": i},
            )
        )
    # No trace context at all: empty trace and span ids, flags 0; no timestamp.
    bare.emit(
        LogRecord(
            observed_timestamp=t + 5,
            context=no_trace,
            body="no trace context",
        )
    )
    # Nothing but an observed timestamp.
    bare.emit(LogRecord(observed_timestamp=t + 6, context=no_trace))
    # Event records.
    app.emit(
        LogRecord(
            timestamp=t + 10,
            observed_timestamp=t + 11,
            context=ctx[1],
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            event_name="user.login",
            body={"outcome": "failure", "reason": "bad password"},
            attributes={"user.id": "u1", "client.address": "192.0.2.1"},
        )
    )
    # Unsampled trace context (flags 0) still carries the ids.
    app.emit(
        LogRecord(
            timestamp=t + 12,
            observed_timestamp=t + 13,
            context=_context(*TRACE_CONTEXTS[3], flags=0),
            severity_number=SeverityNumber.FATAL4,
            body="unsampled",
        )
    )
    for i, event in enumerate(AUDIT_EVENTS):
        audit.emit(
            LogRecord(
                timestamp=t + 100 + i,
                observed_timestamp=t + 200 + i,
                context=ctx[i % len(ctx)],
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                event_name="ai.gateway.audit",
                body=f"audit {event['event_type']} {event['action']}",
                attributes=event,
            )
        )
    for i in range(bulk):
        app.emit(
            LogRecord(
                timestamp=t + 1_000_000 + i,
                observed_timestamp=t + 2_000_000 + i,
                context=ctx[i % len(ctx)] if i % 3 else no_trace,
                severity_number=SeverityNumber.INFO if i % 2 else SeverityNumber.DEBUG,
                severity_text="INFO" if i % 2 else "DEBUG",
                body=f"bulk record {i} {CJK if i % 5 == 0 else ''}",
                attributes={
                    "i": i,
                    "neg": -i,
                    "half": i / 2,
                    "even": i % 2 == 0,
                    "name": f"name-{i}",
                    **AUDIT_EVENTS[i % len(AUDIT_EVENTS)],
                },
            )
        )
    records = _readable(_logger_records(provider, exporter))

    # A second provider with tight limits: dropped attribute counts, an almost
    # empty resource without a schema URL.
    exporter2 = InMemoryLogRecordExporter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        provider2 = LoggerProvider(
            resource=RESOURCE_LIMITED,
            shutdown_on_exit=False,
            log_record_limits=LogRecordLimits(max_attributes=2, max_attribute_length=8),
        )
        provider2.add_log_record_processor(SimpleLogRecordProcessor(exporter2))
        limited = provider2.get_logger("limited", "0.0.1")
        limited.emit(
            LogRecord(
                timestamp=t + 300,
                observed_timestamp=t + 301,
                context=ctx[2],
                severity_number=SeverityNumber.ERROR,
                body="dropped attributes",
                attributes={"a": 1, "b": "truncated to eight", "c": 3, "d": 4},
            )
        )
        records += _readable(_logger_records(provider2, exporter2))

    # The SDK drops empty attribute keys, but OTLP allows them and other SDKs
    # send them: a record the exporter could receive, built directly.
    records.append(
        ReadableLogRecord(
            log_record=LogRecord(
                timestamp=t + 400,
                observed_timestamp=t + 401,
                context=no_trace,
                severity_number=SeverityNumber.UNSPECIFIED,
                body={"": "empty key in body", "k": ""},
                attributes={"": "empty key", "empty.value": "", "x": ""},
            ),
            resource=RESOURCE_EMPTY,
            instrumentation_scope=InstrumentationScope("", None, None, None),
        )
    )
    return records


class CountingIdGenerator(IdGenerator):
    """Deterministic ids that still look like real ones (and include leading
    zeros, which the hex encoding must keep)."""

    def __init__(self, seed: int = 1):
        self._n = seed

    def _next(self) -> int:
        self._n += 1
        return self._n

    def generate_span_id(self) -> int:
        n = self._next()
        return (n * 0x9E3779B97F4A7C15) & 0x00FFFFFFFFFFFFFF or 1

    def generate_trace_id(self) -> int:
        n = self._next()
        return (n * 0x9E3779B97F4A7C15F39CC0605CEDC835) & 0x0000FFFFFFFFFFFFFFFFFFFFFFFFFFFF or 1


def _finished_spans(provider: TracerProvider, exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    provider.force_flush()
    spans = list(exporter.get_finished_spans())
    provider.shutdown()
    return spans


def sdk_spans(bulk: int = 0) -> list[ReadableSpan]:
    """Spans covering every case the codecs must carry; `bulk` adds more."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=RESOURCE_MAIN,
        id_generator=CountingIdGenerator(),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(
        "sluice.e2e.tracer",
        "4.5.6",
        schema_url="https://opentelemetry.io/schemas/1.24.0",
        attributes={"scope.attr": "y", "scope.list": (1, 2, 3)},
    )
    other = provider.get_tracer("")
    t = BASE_TIME

    remote_state = TraceState([("vendor", "v1"), ("rojo", "00f067aa0ba902b7")])
    remote_parent = _context(*TRACE_CONTEXTS[0], flags=0x01, remote=True, state=remote_state)
    link_contexts = [
        SpanContext(tid, sid, is_remote=True, trace_flags=TraceFlags(0x01), trace_state=remote_state)
        for tid, sid in TRACE_CONTEXTS[1:]
    ]

    root = tracer.start_span(
        "GET /v1/chat/completions",
        context=remote_parent,
        kind=SpanKind.SERVER,
        attributes={**ALL_ATTRIBUTE_TYPES, **EXTENDED_ATTRIBUTES},
        links=[
            Link(link_contexts[0], {"link.attr": "a", "link.int": -1, "link.list": ("x", "y")}),
            Link(link_contexts[1]),
            Link(
                SpanContext(TRACE_CONTEXTS[3][0], TRACE_CONTEXTS[3][1], is_remote=False, trace_flags=TraceFlags(0)),
                {"link.unicode": EMOJI},
            ),
        ],
        start_time=t + 1,
    )
    root.add_event("request.received", {"http.request.body.size": 1532, "unicode": CJK}, timestamp=t + 2)
    root.add_event("no attributes", timestamp=t + 3)
    root.add_event("", {"empty.name": True}, timestamp=t + 4)
    for i, event in enumerate(AUDIT_EVENTS):
        root.add_event("ai.gateway.audit", event, timestamp=t + 5 + i)
    root.set_status(Status(StatusCode.ERROR, "upstream model timed out ✗ 超时"))

    ctx = trace.set_span_in_context(root, Context())
    for i, kind in enumerate([SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL]):
        child = tracer.start_span(
            f"child {kind.name} {COMBINING}",
            context=ctx,
            kind=kind,
            attributes={"child.index": i},
            start_time=t + 10 + i,
        )
        if i == 0:
            child.set_status(Status(StatusCode.OK))
        elif i == 1:
            child.set_status(Status(StatusCode.ERROR))
        child.end(end_time=t + 20 + i)
    root.end(end_time=t + 100)

    # A local root span (no parent) in a second scope.
    lone = other.start_span("lone root", kind=SpanKind.INTERNAL, start_time=t + 200)
    lone.end(end_time=t + 200)  # zero duration

    # Gateway request spans carrying the audit attributes themselves.
    for i, event in enumerate(AUDIT_EVENTS):
        span = tracer.start_span(
            "ai.gateway.request", context=ctx, kind=SpanKind.SERVER, attributes=event, start_time=t + 300 + i
        )
        span.end(end_time=t + 400 + i)

    for i in range(bulk):
        span = tracer.start_span(
            f"bulk span {i}",
            context=ctx if i % 2 else None,
            kind=list(SpanKind)[i % 5],
            attributes={"i": i, "neg": -i, "half": i / 2, "name": f"name-{i}", **AUDIT_EVENTS[i % len(AUDIT_EVENTS)]},
            start_time=t + 1_000_000 + i,
        )
        if i % 7 == 0:
            span.add_event("tick", {"i": i}, timestamp=t + 1_000_001 + i)
        span.end(end_time=t + 2_000_000 + i)

    spans = _finished_spans(provider, exporter)

    # Tight limits: dropped attribute, event and link counts.
    exporter2 = InMemorySpanExporter()
    provider2 = TracerProvider(
        resource=RESOURCE_LIMITED,
        id_generator=CountingIdGenerator(seed=1000),
        span_limits=SpanLimits(
            max_span_attributes=1,
            max_events=1,
            max_links=1,
            max_event_attributes=1,
            max_link_attributes=1,
        ),
        shutdown_on_exit=False,
    )
    provider2.add_span_processor(SimpleSpanProcessor(exporter2))
    limited = provider2.get_tracer("limited", "0.0.1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        span = limited.start_span(
            "limited",
            attributes={"a": 1, "b": 2, "c": 3},
            # The oldest link and events are the ones dropped.
            links=[Link(link_contexts[1]), Link(link_contexts[0], {"x": 1, "y": 2})],
            start_time=t + 500,
        )
        span.add_event("e1", timestamp=t + 501)
        span.add_event("e2", timestamp=t + 502)
        span.add_event("e3", {"p": 1, "q": 2}, timestamp=t + 503)
        span.end(end_time=t + 504)
    spans += _finished_spans(provider2, exporter2)

    # What the SDK's own checks refuse but OTLP carries: empty keys, an empty
    # span name.
    spans.append(
        ReadableSpan(
            name="",
            context=SpanContext(TRACE_CONTEXTS[2][0], TRACE_CONTEXTS[2][1], is_remote=False),
            parent=None,
            resource=RESOURCE_EMPTY,
            attributes={"": "empty key", "empty.value": ""},
            events=[Event("", {"": ""}, timestamp=t + 601)],
            links=[Link(link_contexts[0], {"": "empty link key"})],
            kind=SpanKind.INTERNAL,
            status=Status(StatusCode.UNSET),
            start_time=t + 600,
            end_time=t + 602,
            instrumentation_scope=InstrumentationScope("", None, None, None),
        )
    )
    return spans


# ----------------------------------------------------------------------------
# Encoders: the SDK's protobuf and OTLP/JSON encoders, as its exporters use them.

def proto_logs(records: Sequence[ReadableLogRecord]):
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

    return encode_logs(records)


def json_logs(records: Sequence[ReadableLogRecord]) -> bytes:
    """What opentelemetry-exporter-otlp-json-http puts on the wire."""
    from opentelemetry.exporter.otlp.json.common._log_encoder import encode_logs

    return encode_logs(records).to_json().encode()


def proto_spans(spans: Sequence[ReadableSpan]):
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return encode_spans(spans)


def json_spans(spans: Sequence[ReadableSpan]) -> bytes:
    from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans

    return encode_spans(spans).to_json().encode()


def sdk_metrics_data():
    """Metrics from a real MeterProvider: sums, gauges, explicit and exponential
    histograms (whose sum/min/max are proto3 optional fields)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        resource=RESOURCE_MAIN,
        views=[
            View(instrument_name="gen_ai.latency.exp", aggregation=ExponentialBucketHistogramAggregation()),
            View(instrument_name="*"),
        ],
        shutdown_on_exit=False,
    )
    meter = provider.get_meter("sluice.e2e.meter", "1.0", attributes={"meter.attr": "m"})
    counter = meter.create_counter("gen_ai.tokens", unit="{token}", description="Tokens used")
    updown = meter.create_up_down_counter("inflight", description=CJK)
    hist = meter.create_histogram("gen_ai.latency", unit="s")
    exp = meter.create_histogram("gen_ai.latency.exp", unit="s")
    gauge = meter.create_gauge("temperature")
    for i, event in enumerate(AUDIT_EVENTS):
        attrs = {k: v for k, v in event.items() if k in ("model", "gateway_id", "org_id", "action")}
        counter.add(10 * (i + 1), attrs)
        updown.add(-i, attrs)
        hist.record(0.5 * (i + 1), attrs)
        exp.record(1.5 ** (i + 1), attrs)
        exp.record(0.0, attrs)
        gauge.set(-12.5 + i, attrs)
    meter.create_observable_gauge("observable", callbacks=[lambda options: []])
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


def proto_metrics(data):
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    return encode_metrics(data)


def json_metrics(data) -> bytes:
    from opentelemetry.exporter.otlp.json.common.metrics_encoder import encode_metrics

    return encode_metrics(data).to_json().encode()


# ----------------------------------------------------------------------------
# OTLP/JSON <-> pb2, independent of sluice.

ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


def _hex_ids_to_base64(value):
    import base64

    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ID_KEYS and isinstance(item, str):
                out[key] = base64.b64encode(bytes.fromhex(item)).decode()
            else:
                out[key] = _hex_ids_to_base64(item)
        return out
    if isinstance(value, list):
        return [_hex_ids_to_base64(item) for item in value]
    return value


def _base64_ids_to_hex(value):
    import base64

    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ID_KEYS and isinstance(item, str):
                out[key] = base64.b64decode(item).hex()
            else:
                out[key] = _base64_ids_to_hex(item)
        return out
    if isinstance(value, list):
        return [_base64_ids_to_hex(item) for item in value]
    return value


def otlp_json_to_message(data, message_class, ignore_unknown_fields: bool = False):
    """Parses OTLP/JSON (bytes, str or an already parsed dict) into a pb2
    message: OTLP/JSON is proto3 JSON except that trace and span ids are hex,
    not base64."""
    from google.protobuf import json_format

    if isinstance(data, (bytes, bytearray, str)):
        data = json.loads(data)
    message = message_class()
    json_format.ParseDict(_hex_ids_to_base64(data), message, ignore_unknown_fields=ignore_unknown_fields)
    return message


def message_to_otlp_json(message) -> dict:
    """The canonical OTLP/JSON of a pb2 message, as the protobuf library writes
    it: lowerCamelCase keys, 64-bit integers as strings, enums as integers,
    defaults omitted, bytes as base64, and then trace/span ids as lowercase hex."""
    from google.protobuf import json_format

    as_dict = json_format.MessageToDict(
        message,
        preserving_proto_field_name=False,
        use_integers_for_enums=True,
    )
    return _base64_ids_to_hex(as_dict)
