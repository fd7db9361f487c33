"""The `splunk_hec` exporter end to end: the real `sluice` binary, the
OpenTelemetry Python SDK (or hand-made OTLP/HTTP requests) in front of it, and
hec_server.py — a strict local HEC that checks every request the way Splunk
does — behind it.

1. 100,000 SDK log records arrive exactly once each, with indexer
   acknowledgements on, and the fields the SPL detection rules in docs/events.md
   query are indexed fields with string values.
2. A 413 storm (HEC's limit far below max_content_length_logs): payloads are
   split until they fit, nothing is lost or duplicated.
3. A 503 period: /status goes degraded, then active; nothing is lost.
4. A revoked token: 401, the data goes to the dead-letter file with a reason
   that says 401 and never shows the token; /status shows the error. A wrong
   token (403 code 4): /status `failed` after one request, with what to do, the
   dead-letter file and how much went there; a reload with the right token makes
   it `active` at the next delivery, and `sluice replay` sends the dead letters
   once each.
5. One event over max_event_size goes to the dead-letter file alone; the rest of
   its batch is delivered. The same for one event HEC refuses with 400 code 6.
6. Acks that never come are resent; health check, heartbeat, fields_mode: event,
   spans.

No assertion is about time: timeouts only keep a broken build from hanging.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections import Counter
from pathlib import Path

import pytest

import otlp_samples as samples
import runtime_helpers as rt
from hec_server import HECServer, event_id_of
from test_reload import _reload

logging.getLogger("opentelemetry").setLevel(logging.ERROR)
rt.env_without_proxies()

TOKEN = "5ec2e7a4-91b3-4c1d-8f3e-2a6b9d0c7e15"
INDEX = "ai_gateway"
SOURCETYPE = "ai:gateway:audit"
DELIVERY_TIMEOUT = 180

EVENT_TYPES = ["request", "blocked", "escalated", "redacted"]
ACTIONS = ["allow", "block", "escalate", "redact"]
POLICIES = ["default", "pii-redaction/strict", "secrets", "jailbreak-guard", "tool-use"]
MODELS = ["gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022", "llama-3.1-70b-instruct"]
SPL_FIELDS = ("event_id", "event_type", "action", "policy_name", "model", "gateway_id", "user_id", "org_id")


def gateway_attributes(prefix: str, i: int) -> dict:
    """An AI gateway's policy decision (docs/events.md), with
    a few values of every other kind."""
    kind = i % 4
    return {
        "event_id": f"{prefix}-{i:06d}",
        "event_type": EVENT_TYPES[kind],
        "action": ACTIONS[kind],
        "policy_name": POLICIES[i % len(POLICIES)],
        "model": MODELS[i % len(MODELS)],
        "gateway_id": f"gw-eu-west-1-{'abc'[i % 3]}",
        "user_id": f"user_{(i * 7919) % 5000}" if i % 13 else f"用户_{i}",
        "org_id": "org_ACME" if i % 5 else "org_Ünïcödé",
        "tokens.prompt": i * 3,
        "cost.usd": i / 1000,
        "blocked": kind == 1,
        "matched_rules": ("email", "iban", "phone")[: i % 4],
    }


# ----------------------------------------------------------------------------
# Sending


def send_sdk_logs(endpoint: str, count: int, prefix: str, base_time: int = samples.BASE_TIME, resource_attributes: dict | None = None):
    """`count` records through LoggerProvider → BatchLogRecordProcessor →
    OTLPLogExporter (protobuf, gzip), 1 ms apart from `base_time`; returns the
    export results by status."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    results: Counter = Counter()

    class Recording(OTLPLogExporter):
        def export(self, batch):
            result = super().export(batch)
            results[result.name] += len(batch)
            return result

    exporter = Recording(endpoint=endpoint, compression=Compression.Gzip, timeout=60)
    resource = Resource({"service.name": "ai-gateway", "host.name": "gateway-pod-7", "k8s.namespace.name": "edge", **(resource_attributes or {})})
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter, max_queue_size=count + 1000, max_export_batch_size=1000, schedule_delay_millis=100)
    )
    logger = provider.get_logger("ai-gateway.audit", "2.14.0")
    contexts = [samples._context(tid, sid) for tid, sid in samples.TRACE_CONTEXTS]
    severities = [SeverityNumber.INFO, SeverityNumber.WARN, SeverityNumber.ERROR]
    for i in range(count):
        attributes = gateway_attributes(prefix, i)
        logger.emit(
            LogRecord(
                timestamp=base_time + i * 1_000_000,
                context=contexts[i % len(contexts)],
                severity_number=severities[i % 3],
                severity_text=severities[i % 3].name,
                body=f"{attributes['action']} by {attributes['policy_name']} for {attributes['model']}",
                attributes=attributes,
            )
        )
    assert provider.force_flush(timeout_millis=DELIVERY_TIMEOUT * 1000), "the SDK could not flush its logs"
    provider.shutdown()
    return results


def log_request(prefix: str, start: int, count: int, big: dict[int, int] | None = None) -> tuple[list[str], bytes]:
    """One ExportLogsServiceRequest (protobuf) of gateway records `start..start+count`;
    `big` gives some records a body of that many bytes."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def value(v) -> AnyValue:
        if isinstance(v, bool):
            return AnyValue(bool_value=v)
        if isinstance(v, int):
            return AnyValue(int_value=v)
        if isinstance(v, float):
            return AnyValue(double_value=v)
        if isinstance(v, tuple):
            out = AnyValue()
            out.array_value.values.extend(value(x) for x in v)
            return out
        return AnyValue(string_value=str(v))

    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(
        [KeyValue(key="service.name", value=value("ai-gateway")), KeyValue(key="host.name", value=value("gateway-pod-7"))]
    )
    scope = resource_logs.scope_logs.add()
    scope.scope.name = "ai-gateway.audit"
    ids = []
    for i in range(start, start + count):
        attributes = gateway_attributes(prefix, i)
        record = scope.log_records.add()
        record.time_unix_nano = samples.BASE_TIME + i * 1_000_000
        record.severity_number = 9
        record.severity_text = "INFO"
        size = (big or {}).get(i)
        record.body.string_value = ("x" * size) if size else f"{attributes['action']} by {attributes['policy_name']}"
        record.attributes.extend(KeyValue(key=k, value=value(v)) for k, v in attributes.items())
        ids.append(attributes["event_id"])
    return ids, request.SerializeToString()


def post_logs(process, body: bytes) -> None:
    response = rt.post(process.ports.url("otlp", "/v1/logs"), body)
    assert response.status == 200, response


# ----------------------------------------------------------------------------
# Sluice


def sluice_config(hec: HECServer, exporter: dict | None = None, batch: dict | None = None, traces: bool = False):
    def make(ports: rt.Ports) -> dict:
        settings = {
            "endpoint": hec.endpoint,
            "token": TOKEN,
            "index": INDEX,
            "sourcetype": SOURCETYPE,
            "source": "sluice-e2e",
            "retry_on_failure": {"initial_interval": "100ms", "max_interval": "1s", "max_elapsed_time": "5m"},
        }
        settings.update(exporter or {})
        pipelines = {
            "logs": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["splunk_hec"]},
        }
        if traces:
            pipelines["traces"] = {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["splunk_hec"]}
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "processors": {"batch": batch or {"send_batch_size": 2000, "timeout": "200ms"}},
            "exporters": {"splunk_hec": settings},
            "service": {
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": pipelines,
            },
        }

    return make


def status(process) -> dict:
    return rt.exporter_status(process.ports.url("metrics", "/status"))["splunk_hec"]


def metrics(process):
    return rt.scrape(process.ports.url("metrics", "/metrics"))


def wait_delivered(process, hec: HECServer, ids: list[str], what: str) -> Counter:
    """Until every id arrived and the exporter has nothing left to deliver."""
    wanted = set(ids)

    def done():
        process.check_alive(what)
        arrived = hec.event_ids()
        if not wanted <= set(arrived):
            return False
        entry = status(process)
        return entry["lag"]["items"] == 0 and arrived

    return rt.wait_until(done, DELIVERY_TIMEOUT, poll=0.1, what=what)


def dead_letters(process) -> list[dict]:
    path = process.data_dir / "dead-letter" / "splunk_hec.ndjson"
    return read_dead_letters(path)


def read_dead_letters(path: Path) -> list[dict]:
    """The complete lines of a dead-letter file. A line is written (and so can be
    read) a part at a time; one without its newline yet is not there yet."""
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def dead_lettered_ids(lines: list[dict]) -> list[str]:
    ids = []
    for line in lines:
        for resource in line["request"].get("resourceLogs", []):
            for scope in resource.get("scopeLogs", []):
                for record in scope.get("logRecords", []):
                    for kv in record.get("attributes", []):
                        if kv["key"] == "event_id":
                            ids.append(kv["value"]["stringValue"])
    return ids


def assert_no_token_anywhere(process) -> None:
    """Not in /status, the dead-letter file, nor (after the process stopped) its log."""
    if process.alive():
        assert TOKEN not in json.dumps(status(process))
        assert TOKEN not in rt.get(process.ports.url("metrics", "/metrics")).body.decode()
    for line in dead_letters(process):
        assert TOKEN not in json.dumps(line)
    assert TOKEN not in process.stderr(), "the HEC token appeared in sluice's log"


@pytest.fixture
def hec():
    with HECServer(token=TOKEN) as server:
        yield server


# ----------------------------------------------------------------------------
# 1. 100,000 SDK records, acknowledged, where the SPL queries find them

SDK_RECORDS = 100_000


def test_sdk_logs_arrive_once_each_with_acks_and_spl_fields(tmp_path, track_sluice):
    hec = HECServer(token=TOKEN, acks=True, ack_delay=0.05).start()
    try:
        process = rt.start_sluice(
            tmp_path,
            sluice_config(
                hec,
                # The timeout is for acks that never come (none here); a payload whose
                # ack is merely slow on a busy machine must not be sent twice.
                {"indexer_ack": {"enabled": True, "poll_interval": "100ms", "timeout": "120s"}, "health_check_enabled": True},
                batch={"send_batch_size": 5000, "timeout": "200ms"},
            ),
            track_sluice,
        )
        started = time.monotonic()
        results = send_sdk_logs(process.ports.url("otlp", "/v1/logs"), SDK_RECORDS, "sdk")
        sent = time.monotonic()
        assert results == Counter({"SUCCESS": SDK_RECORDS}), results
        ids = [f"sdk-{i:06d}" for i in range(SDK_RECORDS)]
        arrived = wait_delivered(process, hec, ids, "the 100,000 records to arrive at HEC")
        delivered = time.monotonic()

        assert hec.errors == [], hec.errors[:5]
        duplicates = {k: n for k, n in arrived.items() if n > 1}
        assert not duplicates, f"{len(duplicates)} event_ids arrived more than once, e.g. {list(duplicates.items())[:5]}"
        assert set(arrived) == set(ids)
        payloads = hec.payloads()
        assert all(p.ack_id is not None and p.channel for p in payloads)
        assert len({p.channel for p in payloads}) == 1, "one channel per exporter"
        assert all(p.content_encoding == "gzip" for p in payloads)
        assert hec.ack_polls > 0
        assert hec.health_checks == 1

        # Every event: metadata from the config and the resource, the SPL fields as
        # indexed string fields, equal to what the SDK sent.
        spl = Counter()
        for event in hec.events():
            assert event["index"] == INDEX and event["sourcetype"] == SOURCETYPE and event["source"] == "sluice-e2e"
            assert event["host"] == "gateway-pod-7"
            fields = event["fields"]
            i = int(fields["event_id"].split("-")[1])
            expected = gateway_attributes("sdk", i)
            for name in SPL_FIELDS:
                assert isinstance(fields[name], str), (name, fields)
                assert fields[name] == expected[name], (name, fields[name], expected[name])
            assert fields["tokens.prompt"] == str(expected["tokens.prompt"])
            assert fields["service.name"] == "ai-gateway"
            assert fields["severity_text"] in ("INFO", "WARN", "ERROR")
            assert len(fields["trace_id"]) == 32 and len(fields["span_id"]) == 16
            assert isinstance(event["event"], str) and event["event"].startswith(expected["action"])
            timestamp = (samples.BASE_TIME + i * 1_000_000) // 1_000_000
            assert str(event["time"]) == f"{timestamp // 1000}.{timestamp % 1000:03d}"
            # index=ai_gateway action="block" | stats count by policy_name, model
            if fields["action"] == "block":
                spl[(fields["policy_name"], fields["model"])] += 1
        expected_spl = Counter(
            (a["policy_name"], a["model"]) for a in (gateway_attributes("sdk", i) for i in range(SDK_RECORDS)) if a["action"] == "block"
        )
        assert spl == expected_spl

        entry = status(process)
        assert entry["status"] == "active" and entry["last_error"] is None, entry
        m = metrics(process)
        assert rt.metric(m, "sluice_exporter_sent_items_total", exporter="splunk_hec", signal="logs") == SDK_RECORDS
        assert rt.metric(m, "sluice_exporter_dead_lettered_items_total") == 0
        sizes = [p.raw_size for p in payloads]
        print(
            f"\n100,000 SDK records: SDK sent them in {sent - started:.1f}s; all acknowledged at HEC {delivered - started:.1f}s after the "
            f"first; {len(payloads)} payloads, {min(sizes)}–{max(sizes)} bytes gzipped (mean {sum(sizes) // len(sizes)}), "
            f"{hec.ack_polls} ack polls; sluice CPU {rt.metric(m, 'sluice_process_cpu_seconds_total'):.1f}s, "
            f"RSS {rt.metric(m, 'sluice_process_resident_memory_bytes') / 2**20:.0f} MiB"
        )
        assert_no_token_anywhere(process)
        assert process.stop(timeout=60) == 0
        assert_no_token_anywhere(process)
    finally:
        hec.close()


# ----------------------------------------------------------------------------
# 2. A 413 storm


def test_413_storm_splits_payloads_until_they_fit(tmp_path, track_sluice, hec):
    hec.max_body = 20_000  # bytes as sent (gzipped); max_content_length_logs stays 2 MiB
    process = rt.start_sluice(tmp_path, sluice_config(hec), track_sluice)
    ids = []
    for n in range(20):
        batch_ids, body = log_request("storm", n * 250, 250)
        post_logs(process, body)
        ids += batch_ids
    arrived = wait_delivered(process, hec, ids, "everything to arrive through the 413s")
    assert hec.errors == [], hec.errors[:5]
    assert sorted(arrived) == sorted(ids) and all(n == 1 for n in arrived.values()), "lost or duplicated events"
    refused = [size for code, size in hec.request_sizes if code == 413]
    accepted = [size for code, size in hec.request_sizes if code == 200]
    assert refused, "HEC never answered 413: the test did not test anything"
    assert all(size <= 20_000 for size in accepted)
    assert dead_letters(process) == []
    entry = status(process)
    assert entry["status"] == "active", entry
    m = metrics(process)
    assert rt.metric(m, "sluice_splunk_hec_split_payloads_total", exporter="splunk_hec") > 0
    assert any(line.get("msg", "").startswith("Splunk HEC refused a payload as too large") for line in process.log_lines())
    print(f"\n413 storm: {len(refused)} payloads refused (largest {max(refused)} bytes), {len(accepted)} accepted "
          f"(largest {max(accepted)} bytes); 5000 events, each once")


# ----------------------------------------------------------------------------
# 3. A 503 period


def test_503_period_degrades_then_recovers_losing_nothing(tmp_path, track_sluice, hec):
    process = rt.start_sluice(tmp_path, sluice_config(hec, batch={"send_batch_size": 500, "timeout": "100ms"}), track_sluice)
    # Busy until /status has shown it, then no more: a fixed-length period could end
    # before a slow machine got to look.
    hec.set_outage(3600, retry_after=1)
    ids = []
    for n in range(10):
        batch_ids, body = log_request("busy", n * 200, 200)
        post_logs(process, body)
        ids += batch_ids

    def degraded():
        process.check_alive("HEC was busy")
        entry = status(process)
        return entry if entry["status"] == "degraded" else None

    entry = rt.wait_until(degraded, 60, what="/status to show splunk_hec degraded")
    assert "503" in entry["last_error"] and "Server is busy" in entry["last_error"], entry
    assert entry["lag"]["items"] > 0
    assert hec.in_outage and not hec.events(), "HEC took events while it was busy"
    hec.set_outage(0)
    arrived = wait_delivered(process, hec, ids, "everything to arrive after the outage")
    entry = rt.wait_until(lambda: (e := status(process))["status"] == "active" and e, 60, what="splunk_hec active again")
    assert entry["lag"]["items"] == 0
    assert set(arrived) == set(ids)
    assert all(n == 1 for n in arrived.values()), "a retry resent events HEC had already taken"
    assert hec.errors == []
    m = metrics(process)
    assert rt.metric(m, "sluice_exporter_retries_total", exporter="splunk_hec") > 0
    assert rt.metric(m, "sluice_exporter_dead_lettered_items_total") == 0
    assert rt.metric(m, "sluice_exporter_sent_items_total", exporter="splunk_hec", signal="logs") == len(ids)
    print(f"\n503 period: {hec.status_counts[503]} requests answered 503; {len(ids)} events, each once")


# ----------------------------------------------------------------------------
# 4. A revoked token


def test_revoked_token_dead_letters_with_401_and_never_shows_the_token(tmp_path, track_sluice, hec):
    process = rt.start_sluice(tmp_path, sluice_config(hec), track_sluice)
    before, body = log_request("before", 0, 100)
    post_logs(process, body)
    wait_delivered(process, hec, before, "the first batch to arrive")
    hec.revoke()
    after, body = log_request("after", 0, 100)
    post_logs(process, body)

    rt.wait_until(lambda: len(dead_lettered_ids(dead_letters(process))) >= 100, DELIVERY_TIMEOUT, what="every record in the dead-letter file")
    # The line is in the file before the exporter commits past it (and counts it):
    # wait for the commit rather than catch the moment between.
    rt.wait_until(lambda: status(process)["lag"]["items"] == 0, DELIVERY_TIMEOUT, what="the exporter to commit past the dead-lettered records")
    lines = dead_letters(process)
    assert sorted(dead_lettered_ids(lines)) == sorted(after)
    for line in lines:
        assert "401" in line["reason"], line["reason"]
        assert TOKEN not in line["reason"]
        assert line["exporter"] == "splunk_hec" and line["signal"] == "logs"
    entry = status(process)
    assert "401" in (entry["last_error"] or ""), entry
    assert entry["lag"]["items"] == 0
    assert set(hec.event_ids()) == set(before)
    m = metrics(process)
    assert rt.metric(m, "sluice_exporter_dead_lettered_items_total", exporter="splunk_hec") == 100
    assert_no_token_anywhere(process)
    assert process.stop(timeout=60) == 0
    assert_no_token_anywhere(process)
    print(f"\nrevoked token: dead-letter reason {lines[0]['reason']!r}")


def test_wrong_token_fails_the_exporter_until_a_reload_fixes_it_and_replay_sends_each_record_once(tmp_path, track_sluice, hec):
    wrong = "0badc0de-1111-4222-8333-444455556666"
    process = rt.start_sluice(tmp_path, sluice_config(hec, {"token": wrong}), track_sluice)
    assert status(process)["status"] == "active"
    dead_letter = process.data_dir / "dead-letter" / "splunk_hec.ndjson"

    # One request refused with 403 is enough: failed, its data in the dead-letter file.
    refused, body = log_request("refused", 0, 100)
    post_logs(process, body)
    entry = rt.wait_until(lambda: (e := status(process))["dead_lettered_items"] == 100 and e, 60, what="100 items dead-lettered")
    assert hec.wrong_tokens == 1, hec.status_counts
    assert entry["status"] == "failed", entry
    error = entry["last_error"]
    assert "HTTP 403" in error and "Invalid token (code 4)" in error and "check the HEC token" in error, error
    assert "sluice replay --exporter splunk_hec" in error and str(dead_letter) in error, error
    assert entry["dead_letter"] == {"path": str(dead_letter), "bytes": dead_letter.stat().st_size}, entry
    assert sorted(dead_lettered_ids(dead_letters(process))) == sorted(refused)
    assert rt.metric(metrics(process), "sluice_exporter_up", exporter="splunk_hec") == 0

    # Still refused: still failed, counted, and the log said so once, not per request.
    more, body = log_request("refused", 100, 50)
    post_logs(process, body)
    rt.wait_until(lambda: status(process)["dead_lettered_items"] == 150, 60, what="150 items dead-lettered")
    failed_lines = [line for line in process.log_lines() if line.get("msg", "").startswith("exporter failed")]
    assert len(failed_lines) == 1 and failed_lines[0]["level"] == "error", failed_lines

    # The token is fixed by a reload; the exporter is active again once a delivery succeeds.
    config = sluice_config(hec)(process.ports)
    _reload(process, config)
    assert status(process)["status"] == "failed"  # nothing delivered yet: nothing says the fix works
    after, body = log_request("after", 0, 100)
    post_logs(process, body)
    wait_delivered(process, hec, after, "the records sent after the reload")
    entry = status(process)
    assert entry["status"] == "active" and entry["dead_lettered_items"] == 0, entry
    assert rt.metric(metrics(process), "sluice_exporter_up", exporter="splunk_hec") == 1
    assert any(line.get("msg") == "exporter recovered" for line in process.log_lines())
    assert process.stop(timeout=60) == 0

    # Replay sends what was refused, each record once.
    result = process.replay("splunk_hec")
    assert result.returncode == 0, result.stderr
    assert "done: 150 delivered, 0 failed again" in result.stdout, result.stdout
    arrived = hec.event_ids()
    assert set(arrived) == set(refused + more + after) and all(n == 1 for n in arrived.values()), arrived.most_common(3)
    assert hec.errors == []
    for secret in (wrong, TOKEN):
        assert secret not in process.stderr() and secret not in result.stderr and secret not in dead_letter.read_text()
    print(f"\nwrong token: /status last_error {error!r}")


# ----------------------------------------------------------------------------
# 5. One event Splunk can never take


def test_oversized_event_is_dead_lettered_alone(tmp_path, track_sluice, hec):
    process = rt.start_sluice(tmp_path, sluice_config(hec, {"max_event_size": 65536}), track_sluice)
    ids, body = log_request("big", 0, 50, big={17: 100_000})
    post_logs(process, body)
    rest = [i for i in ids if i != "big-000017"]
    arrived = wait_delivered(process, hec, rest, "the other 49 records")
    rt.wait_until(lambda: dead_letters(process) or None, DELIVERY_TIMEOUT, what="the dead-letter file")
    lines = dead_letters(process)
    assert dead_lettered_ids(lines) == ["big-000017"]
    assert "max_event_size" in lines[0]["reason"], lines[0]["reason"]
    # The dead-lettered record is the whole record, body and all.
    record = lines[0]["request"]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert record["body"]["stringValue"] == "x" * 100_000
    assert lines[0]["request"]["resourceLogs"][0]["resource"]["attributes"][0]["key"] == "service.name"
    assert set(arrived) == set(rest) and all(n == 1 for n in arrived.values())
    entry = status(process)
    assert entry["status"] == "active" and "max_event_size" in entry["last_error"], entry
    m = metrics(process)
    assert rt.metric(m, "sluice_exporter_dead_lettered_items_total", exporter="splunk_hec") == 1
    assert rt.metric(m, "sluice_exporter_sent_items_total", exporter="splunk_hec", signal="logs") == 49


def test_event_refused_with_400_code_6_is_dead_lettered_alone(tmp_path, track_sluice, hec):
    hec.bad_event_ids = {"bad-000007"}
    process = rt.start_sluice(tmp_path, sluice_config(hec), track_sluice)
    ids, body = log_request("bad", 0, 30)
    post_logs(process, body)
    rest = [i for i in ids if i != "bad-000007"]
    arrived = wait_delivered(process, hec, rest, "the other 29 records")
    rt.wait_until(lambda: dead_letters(process) or None, DELIVERY_TIMEOUT, what="the dead-letter file")
    lines = dead_letters(process)
    assert dead_lettered_ids(lines) == ["bad-000007"]
    assert "HTTP 400" in lines[0]["reason"] and "code 6" in lines[0]["reason"], lines[0]["reason"]
    assert set(arrived) == set(rest)
    assert hec.errors == []


# ----------------------------------------------------------------------------
# 6. Lost acknowledgements, health and heartbeat, fields_mode: event, spans


def test_payload_never_acknowledged_is_sent_again(tmp_path, track_sluice):
    with HECServer(token=TOKEN, acks=True) as hec:
        hec.lose_acks(1)
        # 5 s: long enough that the resent payload's ack (ready at once) is never
        # missed on a busy machine, which would send it a third time.
        process = rt.start_sluice(
            tmp_path, sluice_config(hec, {"indexer_ack": {"enabled": True, "timeout": "5s", "poll_interval": "100ms"}}), track_sluice
        )
        ids, body = log_request("ack", 0, 100)
        post_logs(process, body)
        arrived = wait_delivered(process, hec, ids, "the records to be acknowledged")
        # The first payload's ack never came: it was sent again (a duplicate, not a loss).
        assert set(arrived) == set(ids) and all(n == 2 for n in arrived.values()), arrived.most_common(3)
        m = metrics(process)
        assert rt.metric(m, "sluice_splunk_hec_ack_timeouts_total", exporter="splunk_hec") == 1
        assert rt.metric(m, "sluice_exporter_sent_items_total", exporter="splunk_hec", signal="logs") == 100
        assert status(process)["status"] == "active"


def test_health_check_and_heartbeat(tmp_path, track_sluice, hec):
    process = rt.start_sluice(
        tmp_path, sluice_config(hec, {"health_check_enabled": True, "heartbeat": {"interval": "200ms", "startup": True}}), track_sluice
    )
    beats = rt.wait_until(
        lambda: [e for e in hec.events() if e.get("sourcetype") == "heartbeat"][2:] or None, 60, what="three heartbeats"
    )
    # The health check runs next to the heartbeats, not before them: wait for its answer.
    rt.wait_until(lambda: any(line.get("msg") == "Splunk HEC is healthy" for line in process.log_lines()), 60,
                  what="the health check's answer in the log")
    assert hec.health_checks == 1
    assert beats[0]["index"] == "_internal" and beats[0]["source"] == "sluice"
    assert beats[0]["event"].startswith("HeartbeatInfo version=")
    assert any(line.get("msg") == "Splunk HEC is healthy" for line in process.log_lines())
    assert hec.errors == []


def test_fields_mode_event_puts_the_spl_fields_into_the_event(tmp_path, track_sluice, hec):
    process = rt.start_sluice(tmp_path, sluice_config(hec, {"fields_mode": "event", "sourcetype": "_json"}), track_sluice)
    ids, body = log_request("json", 0, 20)
    post_logs(process, body)
    wait_delivered(process, hec, ids, "the records")
    for event in hec.events():
        assert "fields" not in event and event["sourcetype"] == "_json"
        inner = event["event"]
        i = int(inner["event_id"].split("-")[1])
        expected = gateway_attributes("json", i)
        for name in SPL_FIELDS:
            assert inner[name] == expected[name]
        assert inner["message"].startswith(expected["action"])
        assert inner["tokens.prompt"] == expected["tokens.prompt"], "event mode keeps JSON types"
    assert hec.errors == []


def test_spans_become_span_events(tmp_path, track_sluice, hec):
    process = rt.start_sluice(tmp_path, sluice_config(hec, traces=True), track_sluice)
    spans = samples.sdk_spans()
    body = samples.proto_spans(spans).SerializeToString()
    response = rt.post(process.ports.url("otlp", "/v1/traces"), body)
    assert response.status == 200, response
    events = rt.wait_until(lambda: len(hec.events()) >= len(spans) and hec.events(), DELIVERY_TIMEOUT, what="the spans")
    assert len(events) == len(spans)
    by_id = {e["event"]["span_id"]: e for e in events}
    for span in spans:
        event = by_id[format(span.context.span_id, "016x")]
        assert event["event"]["trace_id"] == format(span.context.trace_id, "032x")
        assert event["event"]["name"] == span.name
        assert event["event"]["kind"] == "SPAN_KIND_" + span.kind.name
        assert event["event"]["start_time"] == span.start_time and event["event"]["end_time"] == span.end_time
        service = span.resource.attributes.get("service.name")
        assert event.get("fields", {}).get("service.name") == service
    assert hec.errors == []


def test_export_raw_sends_bodies_to_the_raw_endpoint(tmp_path, track_sluice, hec):
    """`export_raw: true` (the Collector's): log records go to the raw endpoint as
    their bodies, one per line, on a channel."""
    process = rt.start_sluice(tmp_path, sluice_config(hec, {"export_raw": True}), track_sluice)
    ids, body = log_request("raw", 0, 30)
    post_logs(process, body)
    rt.wait_until(lambda: len(hec.events()) >= 30 and status(process)["lag"]["items"] == 0, 120, what="30 raw events")
    events = hec.events()
    assert all(e.get("raw") for e in events), events[:2]
    lines = sorted(e["event"] for e in events)
    expected = sorted(f"{gateway_attributes('raw', i)['action']} by {gateway_attributes('raw', i)['policy_name']}" for i in range(30))
    assert lines == expected, (lines[:3], expected[:3])
    raw_requests = [r for r in hec.payloads() if r.channel]
    assert raw_requests and all(r.channel for r in hec.payloads()), "every raw request carries a channel"
    assert hec.errors == []
