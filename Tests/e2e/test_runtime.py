"""The running collector, end to end: the real `sluice` binary with a config of
each test's own, real OTLP clients (the OpenTelemetry Python SDK and hand-made
requests) over real sockets, and a local OTLP destination (sink.py) behind the
`otlphttp` exporter. What arrives is compared with what was sent, record by
record and field by field.

1. SDK logs (protobuf) and spans, and SDK-encoded OTLP/JSON logs, all arrive
   exactly (and in the `file` exporter's output, when this build has it).
2. A destination that answers 503 for a while loses nothing; /status shows it.
3. Hostile and broken requests get the right 4xx with an OTLP error body, and
   the receiver keeps serving.
4. SIGTERM under load: exit 0, and everything acknowledged was delivered.
5. `sluice validate` reports every problem of a config in one run.
6. health_check, /metrics.

No assertion is about time: timeouts only keep a broken build from hanging.
"""

from __future__ import annotations

import functools
import gzip
import http.client
import json
import logging
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest

import otlp_samples as samples
import runtime_helpers as rt
from conftest import request_class
from test_hostile_input import ANY_STRING_X, KVLIST_LEVEL, json_deep_kvlist, logs_request_with_body, nest

logging.getLogger("opentelemetry").setLevel(logging.ERROR)
rt.env_without_proxies()

SDK_LOGS = 10_000
SDK_SPANS = 2_000
JSON_LOGS = 1_000
JSON_BATCH = 100

# Only guards against hanging; nothing is asserted about how long anything takes.
DELIVERY_TIMEOUT = 120

EVENT_TYPES = ["policy.decision", "request.completed", "prompt.redacted", "tool.call"]
ACTIONS = ["allow", "block", "redact"]
POLICIES = ["default", "pii-redaction/strict", "secrets", "jailbreak-guard"]
MODELS = ["gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022", "llama-3.1-70b-instruct"]


# ----------------------------------------------------------------------------
# Telemetry, made with the SDK


def audit_attributes(prefix: str, i: int) -> dict:
    """The attributes detection rules query, unique `event_id`, and a few of
    every other kind."""
    attributes = {
        "event_id": f"{prefix}-{i:06d}",
        "event_type": EVENT_TYPES[i % len(EVENT_TYPES)],
        "action": ACTIONS[i % len(ACTIONS)],
        "policy_name": POLICIES[i % len(POLICIES)],
        "model": MODELS[i % len(MODELS)],
        "gateway_id": f"gw-eu-west-1-{'abc'[i % 3]}",
        "user_id": f"user_{(i * 7919) % 5000}" if i % 17 else f"用户_{i}",
        "org_id": "org_ACME" if i % 5 else "org_Ünïcödé",
        "tokens.prompt": i * 3,
        "tokens.completion": -i if i % 11 == 0 else i,
        "cost.usd": i / 1000,
        "blocked": i % 2 == 0,
        "matched_rules": ("email", "iban", "phone")[: i % 4],
        "latency.buckets": (0.5, 1.25, float(i)),
    }
    if i % 50 == 0:
        attributes["int.extremes"] = (samples.INT64_MIN, samples.INT64_MAX)
        attributes["unicode"] = samples.EMOJI
    return attributes


class RecordingExporter:
    """Wraps one of the SDK's OTLP exporters (logs or spans: the same three
    methods) to count the items of each export result; the SDK would otherwise
    drop a refused batch with no more than a log line."""

    def __init__(self, inner):
        self.inner = inner
        self.results: Counter = Counter()

    def export(self, batch):
        result = self.inner.export(batch)
        self.results[result.name] += len(batch)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def send_sdk_logs(endpoint: str, count: int):
    """`count` log records through LoggerProvider → BatchLogRecordProcessor →
    OTLPLogExporter (protobuf, gzip); returns (what the SDK produced, export
    results). An in-memory exporter alongside captures the same records."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.context import Context
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter, SimpleLogRecordProcessor

    captured = InMemoryLogRecordExporter()
    exporter = RecordingExporter(OTLPLogExporter(endpoint=endpoint, compression=Compression.Gzip, timeout=60))
    provider = LoggerProvider(resource=samples.RESOURCE_MAIN, shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(captured))
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter, max_queue_size=count + 1000, max_export_batch_size=512, schedule_delay_millis=200)
    )
    audit = provider.get_logger(
        "ai-gateway.audit",
        version="0.9.0",
        schema_url="https://opentelemetry.io/schemas/1.24.0",
        attributes={"scope.attr": "x", "scope.int": 7},
    )
    access = provider.get_logger("ai-gateway.access")
    contexts = [samples._context(tid, sid) for tid, sid in samples.TRACE_CONTEXTS]
    severities = [SeverityNumber.INFO, SeverityNumber.WARN, SeverityNumber.ERROR, SeverityNumber.DEBUG, SeverityNumber.FATAL]
    t = samples.BASE_TIME
    for i in range(count):
        severity = severities[i % len(severities)]
        attributes = audit_attributes("sdk-log", i)
        if i % 10 == 0:
            body = {"prompt": {"chars": i, "redacted": i % 3 == 0, "spans": [i, i + 1]}, "note": samples.CJK, "none": None}
        elif i % 10 == 1:
            body = None
        else:
            body = f"{attributes['event_type']} {attributes['action']} by {attributes['policy_name']} #{i}"
        if i % 7 == 0:
            attributes["request.headers"] = {"user-agent": "sdk/1.45", "x-count": i, "nested": {"list": [1, "a", None]}}
        if i % 9 == 0:
            attributes["raw"] = bytes([i % 256, 0, 255])
        (audit if i % 4 else access).emit(
            LogRecord(
                timestamp=t + i * 1000,
                observed_timestamp=t + i * 1000 + 7,
                context=contexts[i % len(contexts)] if i % 3 else Context(),
                severity_number=severity,
                severity_text=severity.name,
                event_name="ai.gateway.audit" if i % 4 == 1 else None,
                body=body,
                attributes=attributes,
            )
        )
    assert provider.force_flush(timeout_millis=DELIVERY_TIMEOUT * 1000), "the SDK could not flush its logs"
    provider.shutdown()
    records = samples._readable(captured.get_finished_logs())
    return records, exporter.results


def send_sdk_spans(endpoint: str, count: int):
    """`count` spans through TracerProvider → BatchSpanProcessor →
    OTLPSpanExporter (protobuf, deflate); returns (spans, export results)."""
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    captured = InMemorySpanExporter()
    exporter = RecordingExporter(OTLPSpanExporter(endpoint=endpoint, compression=Compression.Deflate, timeout=60))
    provider = TracerProvider(
        resource=samples.RESOURCE_MAIN, id_generator=samples.CountingIdGenerator(seed=77), shutdown_on_exit=False
    )
    provider.add_span_processor(SimpleSpanProcessor(captured))
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=count + 1000, max_export_batch_size=512, schedule_delay_millis=200)
    )
    tracer = provider.get_tracer("ai-gateway", "2.14.0", schema_url="https://opentelemetry.io/schemas/1.24.0")
    t = samples.BASE_TIME
    parent_context = Context()
    previous = None
    kinds = list(SpanKind)
    for i in range(count):
        if i % 10 == 0:
            parent_context = Context()
        links = [Link(previous, {"link.index": i})] if previous is not None and i % 13 == 0 else []
        span = tracer.start_span(
            f"ai.gateway.request {i % 20}",
            context=parent_context,
            kind=kinds[i % len(kinds)],
            attributes=audit_attributes("sdk-span", i),
            links=links,
            start_time=t + i * 1000,
        )
        if i % 6 == 0:
            span.add_event("policy.evaluated", {"rule": POLICIES[i % len(POLICIES)], "i": i}, timestamp=t + i * 1000 + 1)
        if i % 8 == 0:
            span.set_status(Status(StatusCode.ERROR, f"upstream timeout {i}"))
        elif i % 8 == 1:
            span.set_status(Status(StatusCode.OK))
        span.end(end_time=t + i * 1000 + 500)
        previous = span.get_span_context()
        if i % 10 == 0:
            parent_context = trace.set_span_in_context(span, Context())
    assert provider.force_flush(timeout_millis=DELIVERY_TIMEOUT * 1000), "the SDK could not flush its spans"
    provider.shutdown()
    return list(captured.get_finished_spans()), exporter.results


def json_client_records(count: int):
    """Log records of another application (another resource), for OTLP/JSON."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.context import Context
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    captured = InMemoryLogRecordExporter()
    provider = LoggerProvider(
        resource=Resource({"service.name": "json-client", "service.instance.id": "pod-json-1", "k8s.namespace.name": "edge"}),
        shutdown_on_exit=False,
    )
    provider.add_log_record_processor(SimpleLogRecordProcessor(captured))
    logger = provider.get_logger("json.client", "1.0.0")
    contexts = [samples._context(tid, sid) for tid, sid in samples.TRACE_CONTEXTS]
    for i in range(count):
        logger.emit(
            LogRecord(
                timestamp=samples.BASE_TIME + 5_000_000_000 + i,
                observed_timestamp=samples.BASE_TIME + 5_000_000_000 + i + 3,
                context=contexts[i % len(contexts)] if i % 2 else Context(),
                severity_number=SeverityNumber.WARN if i % 3 else SeverityNumber.INFO2,
                severity_text="WARN" if i % 3 else "INFO2",
                body=f"json record {i} {samples.ESCAPES if i % 25 == 0 else ''}",
                attributes=audit_attributes("json-log", i),
            )
        )
    provider.force_flush()
    provider.shutdown()
    return samples._readable(captured.get_finished_logs())


def count_items(messages, signal: str) -> int:
    if signal == "logs":
        return sum(len(sl.log_records) for m in messages for rl in m.resource_logs for sl in rl.scope_logs)
    return sum(len(ss.spans) for m in messages for rs in m.resource_spans for ss in rs.scope_spans)


# ----------------------------------------------------------------------------
# 1 and 6: everything the SDK sends arrives, field for field


class Delivered:
    """What test 1 sent and where it went; the tests below look at parts of it."""


def _delivery_config(sink_endpoint: str, data_dir: Path, file_exporters: bool):
    def make(ports: rt.Ports) -> dict:
        exporters = {
            "otlphttp": {
                "endpoint": sink_endpoint,
                "retry_on_failure": {"initial_interval": "200ms", "max_interval": "1s"},
            },
        }
        logs_exporters = ["otlphttp"]
        traces_exporters = ["otlphttp"]
        if file_exporters:
            for signal, exported in (("logs", logs_exporters), ("traces", traces_exporters)):
                for fmt in ("json", "proto"):
                    name = f"file/{signal}_{fmt}"
                    exporters[name] = {"path": str(data_dir / f"{signal}.{fmt}"), "format": fmt}
                    exported.append(name)
        processors = ["memory_limiter", "batch"]
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "processors": {
                "memory_limiter": {"check_interval": "1s", "limit_mib": 2048, "spike_limit_mib": 512},
                "batch": {"send_batch_size": 2000, "timeout": "200ms", "send_batch_max_size": 4000},
            },
            "exporters": exporters,
            "extensions": {"health_check": {"endpoint": ports.address("health")}},
            "service": {
                "extensions": ["health_check"],
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {
                    "logs": {"receivers": ["otlp"], "processors": processors, "exporters": logs_exporters},
                    "traces": {"receivers": ["otlp"], "processors": processors, "exporters": traces_exporters},
                },
            },
        }

    return make


@pytest.fixture(scope="module")
def delivered(tmp_path_factory, track_sluice_module):
    from sink import OTLPSink

    sink = OTLPSink().start()
    workdir = tmp_path_factory.mktemp("delivery")
    has_file = "file" in rt.sluice_components().get("exporters", [])
    process = rt.start_sluice(workdir, _delivery_config(sink.endpoint, workdir / "out", has_file), track_sluice_module)
    ports = process.ports
    d = Delivered()
    d.sink, d.process, d.has_file, d.file_dir = sink, process, has_file, workdir / "out"
    d.metrics_url = ports.url("metrics", "/metrics")
    d.status_url = ports.url("metrics", "/status")
    d.health_url = ports.url("health", "/")
    d.health_during_load = []
    try:
        # Spans and logs from two SDK threads at once, OTLP/JSON from this one.
        results = {}

        def run(name, fn, *args):
            try:
                results[name] = fn(*args)
            except BaseException as error:  # noqa: BLE001 - reported below
                results[name] = error

        threads = [
            threading.Thread(target=run, args=("logs", send_sdk_logs, ports.url("otlp", "/v1/logs"), SDK_LOGS)),
            threading.Thread(target=run, args=("spans", send_sdk_spans, ports.url("otlp", "/v1/traces"), SDK_SPANS)),
        ]
        for thread in threads:
            thread.start()

        d.json_records = json_client_records(JSON_LOGS)
        d.json_responses = []
        for n, start in enumerate(range(0, JSON_LOGS, JSON_BATCH)):
            body = samples.json_logs(d.json_records[start : start + JSON_BATCH])
            if n % 2:
                response = rt.post(ports.url("otlp", "/v1/logs"), gzip.compress(body), "application/json", "gzip")
            else:
                response = rt.post(ports.url("otlp", "/v1/logs"), body, "application/json")
            d.json_responses.append(response)
            d.health_during_load.append(rt.get(d.health_url))
        for thread in threads:
            thread.join(timeout=DELIVERY_TIMEOUT * 2)
            assert not thread.is_alive(), "the SDK did not finish sending"
        for name in ("logs", "spans"):
            if isinstance(results[name], BaseException):
                raise results[name]
        d.sdk_logs, d.sdk_log_results = results["logs"]
        d.sdk_spans, d.sdk_span_results = results["spans"]
        d.health_after_load = rt.get(d.health_url)

        def all_arrived():
            process.check_alive("receiving the load")
            logs = count_items(sink.messages("logs"), "logs")
            spans = count_items(sink.messages("traces"), "traces")
            if logs < SDK_LOGS + JSON_LOGS or spans < SDK_SPANS:
                return False
            # And every other exporter (the file ones) caught up as well.
            return all(e["lag"]["items"] == 0 for e in rt.exporter_status(d.status_url).values())

        d.arrived = rt.wait_until(all_arrived, DELIVERY_TIMEOUT, poll=0.25, what="the sink to receive everything") and True
        time.sleep(0.5)  # anything extra (a duplicate) would be in flight now
        d.metrics = rt.scrape(d.metrics_url)
        d.status = rt.exporter_status(d.status_url)
        yield d
    finally:
        try:
            process.stop(timeout=60)
        finally:
            process.kill()
            sink.close()


def test_sdk_exports_all_succeeded(delivered):
    """The SDK's exporters were answered 200 for every batch (a refusal would
    make the SDK drop the batch, and the comparison below meaningless)."""
    assert delivered.sdk_log_results == Counter({"SUCCESS": SDK_LOGS}), delivered.sdk_log_results
    assert delivered.sdk_span_results == Counter({"SUCCESS": SDK_SPANS}), delivered.sdk_span_results
    assert len(delivered.sdk_logs) == SDK_LOGS and len(delivered.sdk_spans) == SDK_SPANS
    for response in delivered.json_responses:
        assert response.status == 200, response
        assert response.content_type == "application/json" and json.loads(response.body) == {}, response


def test_sdk_logs_arrive_field_for_field(delivered):
    expected = rt.flatten_logs([samples.proto_logs(delivered.sdk_logs)])
    assert len(expected) == SDK_LOGS
    arrived = [r for r in rt.flatten_logs(delivered.sink.messages("logs")) if rt.log_key(r).startswith("sdk-log-")]
    rt.assert_same_records(expected, arrived, rt.log_key, "SDK protobuf logs at the otlphttp sink")


def test_json_logs_arrive_field_for_field(delivered):
    expected = rt.flatten_logs([samples.proto_logs(delivered.json_records)])
    assert len(expected) == JSON_LOGS
    arrived = [r for r in rt.flatten_logs(delivered.sink.messages("logs")) if rt.log_key(r).startswith("json-log-")]
    rt.assert_same_records(expected, arrived, rt.log_key, "SDK OTLP/JSON logs at the otlphttp sink")


def test_sdk_spans_arrive_field_for_field(delivered):
    expected = rt.flatten_spans([samples.proto_spans(delivered.sdk_spans)])
    assert len(expected) == SDK_SPANS
    arrived = rt.flatten_spans(delivered.sink.messages("traces"))
    rt.assert_same_records(expected, arrived, rt.span_key, "SDK spans at the otlphttp sink")


def test_sink_got_only_valid_otlp(delivered):
    sink = delivered.sink
    assert sink.errors == [], sink.errors[:5]
    assert set(sink.status_counts) == {200}, sink.status_counts
    for received in sink.requests():
        assert received.content_type == "application/x-protobuf", received.content_type
        assert received.content_encoding == "gzip", "otlphttp compresses with gzip by default"
    assert {r.signal for r in sink.requests()} == {"logs", "traces"}


def _read_file_exporter(path: Path, fmt: str, signal: str) -> list:
    cls = request_class(signal)
    if fmt == "json":
        lines = path.read_bytes().split(b"\n")
        assert lines[-1] == b"", f"{path} must end with a newline"
        return [samples.otlp_json_to_message(line, cls) for line in lines[:-1]]
    data = path.read_bytes()
    messages, offset = [], 0
    while offset < len(data):
        assert offset + 4 <= len(data), f"{path}: a truncated length prefix at {offset}"
        length = int.from_bytes(data[offset : offset + 4], "big")
        offset += 4
        assert offset + length <= len(data), f"{path}: a truncated message at {offset}"
        messages.append(cls.FromString(data[offset : offset + length]))
        offset += length
    return messages


@pytest.mark.parametrize("fmt", ["json", "proto"])
def test_file_exporter_output_field_for_field(delivered, fmt):
    if not delivered.has_file:
        pytest.skip("this build has no `file` exporter (not listed by `sluice components`): its output was not checked")
    expected_logs = rt.flatten_logs([samples.proto_logs(delivered.sdk_logs + delivered.json_records)])
    expected_spans = rt.flatten_spans([samples.proto_spans(delivered.sdk_spans)])
    logs = rt.flatten_logs(_read_file_exporter(delivered.file_dir / f"logs.{fmt}", fmt, "logs"))
    spans = rt.flatten_spans(_read_file_exporter(delivered.file_dir / f"traces.{fmt}", fmt, "traces"))
    rt.assert_same_records(expected_logs, logs, rt.log_key, f"logs in the file exporter's {fmt} output")
    rt.assert_same_records(expected_spans, spans, rt.span_key, f"spans in the file exporter's {fmt} output")


def test_health_check_while_running(delivered):
    for response in delivered.health_during_load + [delivered.health_after_load, rt.get(delivered.health_url)]:
        assert response.status == 200, response


def test_metrics_add_up(delivered):
    m = delivered.metrics
    receiver = {"receiver": "otlp", "transport": "http"}
    sent_logs = SDK_LOGS + JSON_LOGS
    assert rt.metric(m, "sluice_receiver_accepted_items_total", signal="logs", **receiver) == sent_logs
    assert rt.metric(m, "sluice_receiver_accepted_items_total", signal="traces", **receiver) == SDK_SPANS
    assert rt.metric(m, "sluice_receiver_received_items_total", signal="logs", **receiver) == sent_logs
    assert rt.metric(m, "sluice_receiver_received_items_total", signal="traces", **receiver) == SDK_SPANS
    for name in ("sluice_receiver_refused_items_total", "sluice_receiver_dropped_items_total", "sluice_receiver_bad_requests_total"):
        assert rt.metric(m, name, receiver="otlp") == 0, name
    assert rt.metric(m, "sluice_exporter_sent_items_total", exporter="otlphttp", signal="logs") == sent_logs
    assert rt.metric(m, "sluice_exporter_sent_items_total", exporter="otlphttp", signal="traces") == SDK_SPANS
    if delivered.has_file:
        for fmt in ("json", "proto"):
            assert rt.metric(m, "sluice_exporter_sent_items_total", exporter=f"file/logs_{fmt}", signal="logs") == sent_logs
            assert rt.metric(m, "sluice_exporter_sent_items_total", exporter=f"file/traces_{fmt}", signal="traces") == SDK_SPANS
    for name in ("sluice_exporter_retries_total", "sluice_exporter_dead_lettered_items_total", "sluice_exporter_send_failed_items_total"):
        assert rt.metric(m, name) == 0, name
    assert rt.metric(m, "sluice_exporter_lag_items") == 0
    for exporter, entry in delivered.status.items():
        assert entry["status"] == "active" and entry["last_error"] is None, (exporter, entry)


# ----------------------------------------------------------------------------
# 2. An outage at the destination loses nothing


@functools.lru_cache(maxsize=1)
def _log_template():
    return samples.proto_logs(samples.sdk_log_records()[:1])


def log_requests(prefix: str, requests: int, per_request: int):
    """`requests` protobuf ExportLogsServiceRequests of an SDK-made record
    repeated with unique event_ids; returns [(event_ids, bytes)]."""
    template = _log_template()
    out = []
    for n in range(requests):
        message = request_class("logs")()
        message.CopyFrom(template)
        scope_logs = message.resource_logs[0].scope_logs[0]
        first = scope_logs.log_records[0]
        del scope_logs.log_records[:]
        ids = []
        for k in range(per_request):
            record = scope_logs.log_records.add()
            record.CopyFrom(first)
            event_id = f"{prefix}-{n:05d}-{k:04d}"
            record.attributes.add(key="event_id").value.string_value = event_id
            ids.append(event_id)
        out.append((ids, message.SerializeToString()))
    return out


def test_destination_outage_loses_nothing(tmp_path, track_sluice, otlp_sink):
    # The outage lasts until the test has seen /status show it, and ends then: a
    # fixed length would end before a slow machine got there.
    outage = otlp_sink.set_outage(3600, status=503, retry_after=1)

    def config(ports):
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "processors": {"batch": {"send_batch_size": 500, "timeout": "100ms"}},
            "exporters": {
                "otlphttp": {
                    "endpoint": otlp_sink.endpoint,
                    "retry_on_failure": {"enabled": True, "initial_interval": "200ms", "max_interval": "2s", "max_elapsed_time": "5m"},
                }
            },
            "service": {
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {"logs": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["otlphttp"]}},
            },
        }

    process = rt.start_sluice(tmp_path, config, track_sluice)
    status_url = process.ports.url("metrics", "/status")
    requests = log_requests("outage", 40, 50)
    for _, body in requests:
        response = rt.post(process.ports.url("otlp", "/v1/logs"), body)
        assert response.status == 200, response
    sent_ids = [event_id for ids, _ in requests for event_id in ids]

    seen = []

    def state(wanted):
        def check():
            process.check_alive("the destination failed")
            entry = rt.exporter_status(status_url)["otlphttp"]
            seen.append((outage.ended is None, entry))
            return entry if entry["status"] == wanted else None

        return check

    degraded = rt.wait_until(state("degraded"), DELIVERY_TIMEOUT, what="/status to show otlphttp degraded")
    assert degraded["lag"]["items"] > 0, degraded
    assert "503" in (degraded["last_error"] or ""), degraded
    assert outage.ended is None and not otlp_sink.requests("logs"), "something was delivered during the outage"
    otlp_sink.set_outage(0)

    rt.wait_until(lambda: otlp_sink.wait_for(lambda s: count_items(s.messages("logs"), "logs") >= len(sent_ids), 1),
                  DELIVERY_TIMEOUT, what="everything to arrive after the outage")
    # (The sink keeps a request before answering it, so sluice commits a moment
    # after the records are visible there: wait for the lag to reach zero too.)
    active = rt.wait_until(
        lambda: (entry := state("active")()) is not None and entry["lag"]["items"] == 0 and entry,
        DELIVERY_TIMEOUT,
        what="/status to show otlphttp active again with nothing left to deliver",
    )
    assert active["lag"]["entries"] == 0, active
    arrived = Counter(rt.log_key(r) for r in rt.flatten_logs(otlp_sink.messages("logs")))
    duplicates = {k: n for k, n in arrived.items() if n > 1}
    print(f"outage: {otlp_sink.status_counts[503]} requests answered 503, {len(duplicates)} event_ids arrived more than once: "
          f"{dict(list(duplicates.items())[:20])}")
    missing = [event_id for event_id in sent_ids if event_id not in arrived]
    assert not missing, f"{len(missing)} acknowledged records lost in the outage, e.g. {missing[:10]}"
    assert set(arrived) == set(sent_ids)
    assert otlp_sink.status_counts[503] > 0
    metrics = rt.scrape(process.ports.url("metrics", "/metrics"))
    assert rt.metric(metrics, "sluice_exporter_retries_total", exporter="otlphttp") > 0
    assert rt.metric(metrics, "sluice_exporter_dead_lettered_items_total") == 0
    assert rt.metric(metrics, "sluice_exporter_sent_items_total", exporter="otlphttp", signal="logs") == len(sent_ids)
    assert process.stop(timeout=60) == 0


# ----------------------------------------------------------------------------
# 3. Hostile and broken input over HTTP

SMALL_LIMIT = 100_000
GIB = 1 << 30


@pytest.fixture(scope="module")
def hostile_target(tmp_path_factory, track_sluice_module):
    """One sluice with two receivers: `otlp` with a small body limit, and
    `otlp/big` with the default 20 MiB (for the compression bomb, which is far
    smaller than that on the wire)."""

    def config(ports):
        return {
            "receivers": {
                "otlp": {"protocols": {"http": {"endpoint": ports.address("small"), "max_request_body_size": SMALL_LIMIT}}},
                "otlp/big": {"protocols": {"http": {"endpoint": ports.address("big")}}},
            },
            "exporters": {"nop": {}},
            "service": {
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {
                    "logs": {"receivers": ["otlp", "otlp/big"], "exporters": ["nop"]},
                    "traces": {"receivers": ["otlp", "otlp/big"], "exporters": ["nop"]},
                },
            },
        }

    process = rt.start_sluice(tmp_path_factory.mktemp("hostile"), config, track_sluice_module)
    yield process
    process.kill()


@pytest.fixture(scope="module")
def gzip_bomb_1gib() -> bytes:
    """1 GiB of zeros as gzip (about 1 MiB), compressed chunk by chunk."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + 15)
    chunk = bytes(16 << 20)
    bomb = b"".join([compressor.compress(chunk) for _ in range(GIB // len(chunk))] + [compressor.flush()])
    assert len(bomb) < 4 << 20
    return bomb


VALID_LOGS = samples.proto_logs(samples.sdk_log_records()[:3]).SerializeToString()
VALID_JSON = samples.json_logs(samples.sdk_log_records()[:3])


def _oversized_protobuf() -> bytes:
    """A valid request of more than SMALL_LIMIT bytes."""
    data = samples.proto_logs(samples.sdk_log_records(bulk=400)).SerializeToString()
    assert len(data) > SMALL_LIMIT
    return data


def _chunks(data: bytes, size: int = 16384):
    for i in range(0, len(data), size):
        part = data[i : i + size]
        yield b"%x\r\n%s\r\n" % (len(part), part)
    yield b"0\r\n\r\n"


def _send(target, case: dict) -> rt.Response:
    port = target.ports["big" if case.get("big") else "small"]
    if "raw" in case:
        head, parts = case["raw"](port)
        return rt.raw_exchange("127.0.0.1", port, head, parts)
    headers = {"Content-Type": case.get("content_type", "application/x-protobuf")}
    if case.get("encoding"):
        headers["Content-Encoding"] = case["encoding"]
    return rt.request("POST", f"http://127.0.0.1:{port}{case.get('path', '/v1/logs')}", case["body"](), headers)


def _raw_head(port: int, headers: dict) -> bytes:
    lines = [f"POST /v1/logs HTTP/1.1", f"Host: 127.0.0.1:{port}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


HOSTILE = {
    "malformed-protobuf": dict(body=lambda: b"\x0a\xff\xff\xff\xff\x0f\x12garbage", status=400),
    "malformed-protobuf-truncated": dict(body=lambda: VALID_LOGS[: len(VALID_LOGS) // 2], status=400),
    "malformed-json": dict(body=lambda: b'{"resourceLogs":[{"scopeLogs":[', content_type="application/json", status=400),
    "json-wrong-type": dict(body=lambda: b'{"resourceLogs":{"x":1}}', content_type="application/json", status=400),
    "oversized-protobuf": dict(body=_oversized_protobuf, status=413),
    "oversized-json": dict(body=lambda: samples.json_logs(samples.sdk_log_records(bulk=400)), content_type="application/json", status=413),
    "oversized-chunked": dict(
        raw=lambda port: (
            _raw_head(port, {"Content-Type": "application/x-protobuf", "Transfer-Encoding": "chunked"}),
            _chunks(_oversized_protobuf()),
        ),
        status=413,
    ),
    "content-length-over-limit": dict(
        raw=lambda port: (_raw_head(port, {"Content-Type": "application/x-protobuf", "Content-Length": str(10**12)}), []),
        status=413,
    ),
    "decompresses-over-limit": dict(body=lambda: gzip.compress(bytes(4 * SMALL_LIMIT)), encoding="gzip", status=413),
    "wrong-content-type": dict(body=lambda: VALID_LOGS, content_type="text/plain", status=415, status_body=False),
    "no-content-type": dict(body=lambda: VALID_LOGS, content_type="", status=415, status_body=False),
    "unsupported-content-encoding": dict(body=lambda: VALID_LOGS, encoding="br", status=415),
    "unsupported-content-encoding-json": dict(body=lambda: VALID_JSON, content_type="application/json", encoding="compress", status=415),
    "bad-gzip": dict(body=lambda: b"\x1f\x8b\x08\x00not gzip at all", encoding="gzip", status=400),
    "deep-kvlist-protobuf": dict(body=lambda: logs_request_with_body(nest(ANY_STRING_X, KVLIST_LEVEL, 100_000)), big=True, status=400),
    "deep-kvlist-json": dict(body=lambda: json_deep_kvlist(100_000), content_type="application/json", big=True, status=400),
}




@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=c["xfail"])) if "xfail" in c else n for n, c in HOSTILE.items()]
    + ["gzip-bomb-1gib"],
)
def test_hostile_request_refused_and_still_serving(hostile_target, name, request):
    if name == "gzip-bomb-1gib":
        bomb = request.getfixturevalue("gzip_bomb_1gib")
        case = dict(body=lambda: bomb, encoding="gzip", big=True, status=413)
    else:
        case = HOSTILE[name]
    response = _send(hostile_target, case)
    hostile_target.check_alive(name)
    assert response.status == case["status"], f"{name}: {response}"
    assert response.body, f"{name}: an error answer must say what is wrong: {response}"
    if case.get("status_body", True):
        json_request = case.get("content_type") == "application/json"
        expected_type = "application/json" if json_request else "application/x-protobuf"
        assert response.content_type == expected_type, f"{name}: the error body must be a Status in the request's encoding: {response}"
        status = rt.decode_status(response)
        assert isinstance(status.get("code"), int) and status["code"] > 0, f"{name}: {status}"
        assert status.get("message"), f"{name}: {status}"
    # The process keeps serving, on both receivers.
    for port_name, body, content_type in (("small", VALID_LOGS, "application/x-protobuf"), ("big", VALID_JSON, "application/json")):
        ok = rt.post(f"http://127.0.0.1:{hostile_target.ports[port_name]}/v1/logs", body, content_type)
        assert ok.status == 200, f"after {name}: {ok}"
    hostile_target.check_alive(name)


# ----------------------------------------------------------------------------
# 4. SIGTERM during load: exit 0 and everything acknowledged delivered

# Long enough to drain what the load piled up behind the slow destination (0.1 s a
# request): the faster the machine, the more the clients get acknowledged before
# SIGTERM, so a short one would pass or fail by the machine's speed. A shutdown
# that drains ends as soon as it is done; only one that does not waits it out.
SHUTDOWN_TIMEOUT_S = 90


def test_sigterm_under_load_delivers_everything_acknowledged(tmp_path, track_sluice, otlp_sink):
    def config(ports):
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "processors": {"batch": {"send_batch_size": 200, "send_batch_max_size": 200, "timeout": "100ms"}},
            "exporters": {"otlphttp": {"endpoint": otlp_sink.endpoint, "retry_on_failure": {"initial_interval": "200ms"}}},
            "service": {
                "shutdown_timeout": f"{SHUTDOWN_TIMEOUT_S}s",
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {"logs": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["otlphttp"]}},
            },
        }

    # A slow destination, so that the log holds a backlog when SIGTERM comes
    # and the shutdown has something to drain.
    otlp_sink.delay = 0.1
    process = rt.start_sluice(tmp_path, config, track_sluice)

    lock = threading.Lock()
    acknowledged: list[str] = []
    outcomes: Counter = Counter()
    refusals: dict = {}
    stop = threading.Event()

    def client(worker: int):
        connection = None
        for n in range(10**6):
            if stop.is_set():
                break
            ids, body = log_requests(f"term-{worker}-{n:05d}", 1, 40)[0]
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", process.ports["otlp"], timeout=30)
                connection.request("POST", "/v1/logs", body, {"Content-Type": "application/x-protobuf"})
                response = connection.getresponse()
                body_text = response.read()[:300]
                with lock:
                    outcomes[response.status] += 1
                    if response.status == 200:
                        acknowledged.extend(ids)
                    else:
                        refusals.setdefault(response.status, (dict(response.getheaders()), body_text))
                if response.status in (429, 503):
                    time.sleep(0.05)  # a client backs off (not the whole Retry-After: the load must go on)
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except OSError as error:
                with lock:
                    outcomes[type(error).__name__] += 1
                if connection is not None:
                    connection.close()
                    connection = None
                if not process.alive():
                    break
                time.sleep(0.01)
            except http.client.HTTPException as error:
                with lock:
                    outcomes[type(error).__name__] += 1
                connection = None
                if not process.alive():
                    break
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(4)]
    for thread in threads:
        thread.start()
    try:
        rt.wait_until(lambda: outcomes[200] >= 60, DELIVERY_TIMEOUT, poll=0.01, what="some load to be acknowledged")
        acknowledged_before = outcomes[200]
        lag_at_sigterm = rt.exporter_status(process.ports.url("metrics", "/status"))["otlphttp"]["lag"]
        returncode = process.stop(timeout=SHUTDOWN_TIMEOUT_S + 30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    print(f"outcomes: {dict(outcomes)} ({acknowledged_before} acknowledged before SIGTERM, exporter lag then {lag_at_sigterm}); "
          f"refusals: {refusals}")
    assert returncode == 0, f"exit status {returncode}; stderr:\n{process.stderr_tail()}"
    stopped = [line for line in process.log_lines() if line.get("msg") == "stopped"]
    assert stopped and stopped[-1].get("undelivered_items") == "0", f"sluice did not drain its log:\n{process.stderr_tail()}"
    arrived = Counter(rt.log_key(r) for r in rt.flatten_logs(otlp_sink.messages("logs")))
    missing = [event_id for event_id in acknowledged if event_id not in arrived]
    assert not missing, (
        f"{len(missing)} of {len(acknowledged)} acknowledged records never reached the destination, e.g. {missing[:10]}; "
        f"stderr:\n{process.stderr_tail()}"
    )
    duplicates = {k: n for k, n in arrived.items() if n > 1}
    print(f"{len(acknowledged)} acknowledged records delivered; {len(duplicates)} duplicates")


# ----------------------------------------------------------------------------
# 5. sluice validate: every problem in one run

INVALID_CONFIG = """\
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:9
    timout: 5s
  otlpp:
    endpoint: http://127.0.0.1:9
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [otlphttp, otlpp]
    traces:
      receivers: [otlp]
      exporters: [otlphttp, missing_exporter]
"""


def _validate(tmp_path: Path, text: str, name: str = "collector.yaml"):
    import subprocess

    path = tmp_path / name
    path.write_text(text)
    result = subprocess.run([str(rt.SLUICE_BIN), "validate", "--config", str(path)], capture_output=True, text=True, timeout=60)
    return path, result


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_validate_reports_misspelled_key(tmp_path):
    text = INVALID_CONFIG.replace("      exporters: [otlphttp, otlpp]", "      exporters: [otlphttp]").replace(
        "      exporters: [otlphttp, missing_exporter]", "      exporters: [otlphttp]")
    text = text.replace("  otlpp:\n    endpoint: http://127.0.0.1:9\n", "")
    path, result = _validate(tmp_path, text, "misspelled.yaml")
    assert result.returncode == 1, result
    line = next(line for line in result.stderr.splitlines() if "exporters.otlphttp.timout" in line)
    assert line.startswith(f"{path.name}:{_line_of(text, 'timout:')} ") or line.startswith(f"{path}:{_line_of(text, 'timout:')} "), line
    assert "did you mean timeout?" in line, line
    assert "valid" not in result.stdout


def test_validate_reports_an_undefined_exporter(tmp_path):
    text = INVALID_CONFIG.replace("    timout: 5s\n", "").replace("  otlpp:\n    endpoint: http://127.0.0.1:9\n", "")
    text = text.replace("[otlphttp, otlpp]", "[otlphttp]")
    path, result = _validate(tmp_path, text, "undefined.yaml")
    assert result.returncode == 1, result
    line = next(line for line in result.stderr.splitlines() if "missing_exporter" in line)
    assert "service.pipelines.traces.exporters" in line and "not defined" in line, line
    assert f":{_line_of(text, 'missing_exporter')} " in line, line


def _unknown_type_report(tmp_path):
    text = INVALID_CONFIG.replace("    timout: 5s\n", "").replace("[otlphttp, missing_exporter]", "[otlphttp]")
    path, result = _validate(tmp_path, text, "unknown.yaml")
    assert result.returncode == 1, result
    line = next(line for line in result.stderr.splitlines() if "exporters.otlpp" in line)
    return text, path, line


def test_validate_reports_an_unknown_type_with_the_known_ones(tmp_path):
    text, path, line = _unknown_type_report(tmp_path)
    assert line.startswith(f"{path.name}:"), line
    assert "unknown exporter type 'otlpp'" in line and all(known in line for known in ("debug", "nop", "otlphttp")), line


def test_validate_unknown_type_line_is_the_component_line(tmp_path):
    text, path, line = _unknown_type_report(tmp_path)
    assert line.startswith(f"{path.name}:{_line_of(text, 'otlpp:')} "), line


def test_validate_reports_every_problem_in_one_run(tmp_path):
    path, result = _validate(tmp_path, INVALID_CONFIG)
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    print(result.stderr)

    def one(fragment):
        found = [line for line in lines if fragment in line]
        assert found, f"{fragment!r} not reported; stderr:\n{result.stderr}"
        return found[0]

    timout = one("exporters.otlphttp.timout")
    assert timout.startswith(f"{path.name}:{_line_of(INVALID_CONFIG, 'timout:')} ") and "did you mean timeout?" in timout, timout
    assert "not defined" in one("missing_exporter")
    unknown = one("exporters.otlpp")
    assert all(known in unknown for known in ("debug", "nop", "otlphttp")), unknown


def test_validate_accepts_a_valid_config(tmp_path):
    text = INVALID_CONFIG.replace("    timout: 5s\n", "").replace("  otlpp:\n    endpoint: http://127.0.0.1:9\n", "")
    text = text.replace("[otlphttp, otlpp]", "[otlphttp]").replace("[otlphttp, missing_exporter]", "[otlphttp]")
    # The current name: the deprecated `otlphttp` validates too, with a warning.
    text = text.replace("otlphttp", "otlp_http")
    path, result = _validate(tmp_path, text, "valid.yaml")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and result.stderr == ""


# ----------------------------------------------------------------------------
# memory_limiter: above the limit the receiver refuses with 503, nothing is taken


def test_memory_limiter_refuses_above_the_limit(tmp_path, track_sluice):
    """A limit below what the process already uses: every request is refused with
    503, Retry-After and a Status body, the refusal is counted, and nothing reaches
    the exporter."""

    def config(ports):
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "processors": {"memory_limiter": {"check_interval": "100ms", "limit_mib": 4, "spike_limit_mib": 1}},
            "exporters": {"nop": {}},
            "service": {
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {"logs": {"receivers": ["otlp"], "processors": ["memory_limiter"], "exporters": ["nop"]}},
            },
        }

    process = rt.start_sluice(tmp_path, config, track_sluice)
    response = rt.post(process.ports.url("otlp", "/v1/logs"), VALID_LOGS)
    assert response.status == 503, response
    assert int(response.headers["retry-after"]) >= 1
    status = rt.decode_status(response)
    assert "memory limit" in status["message"], status
    m = rt.scrape(process.ports.url("metrics", "/metrics"))
    assert rt.metric(m, "sluice_memory_limiter_refused_requests_total", processor="memory_limiter") >= 1
    assert rt.metric(m, "sluice_receiver_accepted_items_total", receiver="otlp", signal="logs") == 0
    assert rt.metric(m, "sluice_exporter_sent_items_total", exporter="nop", signal="logs") == 0
    assert "memory above the soft limit" in process.stderr_tail()
