"""The `elasticsearch` exporter end to end: the real `sluice` binary, the
OpenTelemetry Python SDK (or hand-made OTLP/HTTP requests) in front of it, and
es_server.py — a bulk API that parses NDJSON as strictly as Elasticsearch and
misbehaves on demand — behind it (issue 12).

1. 100,000 SDK records reach the index exactly once per _id while 5 % of items
   are refused with 429 and one document with a mapping error; that document is in
   the dead-letter file with Elasticsearch's reason; the exporter went degraded,
   then active again.
2. A 413 on large bulk requests ends in smaller accepted ones, never a loop.
3. Data streams from the records' own attributes, written with `create`; user and
   password; a node that is down is skipped.
4. The mapping modes: the gateway's fields at the top of the document in `raw`
   and `ecs`, `otel`'s layout, `bodymap`.

No assertion is about time: timeouts only keep a broken build from hanging.
"""

from __future__ import annotations

import base64
import json
import socket
from collections import Counter

import otlp_samples as samples
import runtime_helpers as rt
from es_server import ESServer
from test_splunk_hec import SPL_FIELDS, dead_lettered_ids, gateway_attributes, log_request, read_dead_letters, send_sdk_logs

rt.env_without_proxies()

API_KEY = base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw").decode()
DELIVERY_TIMEOUT = 240
SDK_RECORDS = 100_000
FAST_RETRY = {"initial_interval": "100ms", "max_interval": "1s", "max_elapsed_time": "10m"}


def sluice_config(es: ESServer, exporter: dict | None = None, batch: dict | None = None, endpoints: list[str] | None = None):
    def make(ports: rt.Ports) -> dict:
        settings = {"retry_on_failure": dict(FAST_RETRY)}
        if endpoints:
            settings["endpoints"] = endpoints
        else:
            settings["endpoint"] = es.endpoint
        settings.update(exporter or {})
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "processors": {"batch": batch or {"send_batch_size": 5000, "timeout": "200ms"}},
            "exporters": {"elasticsearch": settings},
            "service": {
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {
                    "logs": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["elasticsearch"]},
                    "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["elasticsearch"]},
                },
            },
        }

    return make


def status(process) -> dict:
    return rt.exporter_status(process.ports.url("metrics", "/status"))["elasticsearch"]


def wait_delivered(process, es: ESServer, ids: set[str], what: str) -> Counter:
    def done():
        process.check_alive(what)
        arrived = es.ids()
        if not ids <= set(arrived):
            return False
        return status(process)["lag"]["items"] == 0 and arrived

    return rt.wait_until(done, DELIVERY_TIMEOUT, poll=0.2, what=what)


def dead_letters(process) -> list[dict]:
    return read_dead_letters(process.data_dir / "dead-letter" / "elasticsearch.ndjson")


def post_logs(process, ids_and_body: bytes) -> None:
    assert rt.post(process.ports.url("otlp", "/v1/logs"), ids_and_body).status == 200


# ----------------------------------------------------------------------------
# 1. The SDK's 100,000 records, through item 429s and a mapping error


def test_sdk_logs_reach_the_index_once_per_id_through_item_429s_and_a_mapping_error(tmp_path, track_sluice):
    bad = "es-004242"
    with ESServer(authorization=f"ApiKey {API_KEY}") as es:
        es.item_429_rate = 0.05
        es.mapping_error_ids = {bad}
        process = rt.start_sluice(
            tmp_path,
            # The log holds all 100,000 records if it must: how fast the fixture takes
            # them must not decide whether the SDK's retries run out.
            sluice_config(es, {"api_key": API_KEY, "mapping": {"mode": "raw"}, "logs_index": "siem-events-%{+yyyy.MM.dd}",
                               "sending_queue": {"sizer": "bytes", "queue_size": 1 << 30}}),
            track_sluice,
        )
        results = send_sdk_logs(process.ports.url("otlp", "/v1/logs"), SDK_RECORDS, "es")
        assert results == Counter({"SUCCESS": SDK_RECORDS}), results
        ids = {f"es-{i:06d}" for i in range(SDK_RECORDS)}
        arrived = wait_delivered(process, es, ids - {bad}, "the 100,000 records in the index")
        assert es.errors == [], es.errors[:5]
        duplicated = {k: n for k, n in arrived.items() if n > 1}
        assert not duplicated, f"{len(duplicated)} _ids created more than once, e.g. {list(duplicated.items())[:5]}"
        assert set(arrived) == ids - {bad}
        assert es.item_counts[429] > 0, "the fixture refused no item with 429"

        # The record Elasticsearch could not map is in the dead-letter file alone, with its reason.
        lines = dead_letters(process)
        assert dead_lettered_ids(lines) == [bad], dead_lettered_ids(lines)
        assert "mapper_parsing_exception" in lines[0]["reason"] and "400" in lines[0]["reason"], lines[0]["reason"]

        # The index carries the records' own date, in UTC; the gateway's fields are
        # top-level keywords in raw mode, so `action:block` finds what it should.
        day = rt.utc_day(samples.BASE_TIME)
        assert es.index_names() == {f"siem-events-{day}"}, es.index_names()
        documents = es.documents()
        sample = next(d for d in documents if d.get("event_id") == "es-000001")
        expected = gateway_attributes("es", 1)
        for name in SPL_FIELDS:
            assert sample[name] == expected[name], (name, sample)
        assert sample["@timestamp"].startswith(day.replace(".", "-")), sample
        assert sample["Resource.service.name"] == "ai-gateway", sample
        blocked = sum(1 for d in documents if d.get("action") == "block")
        assert blocked == sum(1 for i in range(SDK_RECORDS) if gateway_attributes("es", i)["action"] == "block" and f"es-{i:06d}" != bad)

        # Degraded while items were retried, active once they were in.
        log = process.stderr()
        assert '"msg":"exporter degraded' in log, "no transition to degraded was logged"
        assert '"msg":"exporter recovered' in log, "no transition back to active was logged"
        assert status(process)["status"] == "active"
        m = rt.scrape(process.ports.url("metrics", "/metrics"))
        assert rt.metric(m, "sluice_exporter_sent_items_total", exporter="elasticsearch", signal="logs") == SDK_RECORDS - 1
        assert rt.metric(m, "sluice_exporter_dead_lettered_items_total", exporter="elasticsearch", signal="logs") == 1
        requests = es.requests
        assert all(r.headers.get("Content-Encoding") == "gzip" for r in requests), "gzip is the default"
        print(f"\n{SDK_RECORDS} SDK records: {len(requests)} bulk requests, {es.item_counts[429]} items refused with 429 and sent again, "
              f"{es.conflicts} conflicts")
        assert process.stop(timeout=60) == 0


# ----------------------------------------------------------------------------
# 2. 413: split until the bulk requests fit


def test_413_splits_bulk_requests_until_they_fit(tmp_path, track_sluice):
    with ESServer() as es:
        es.max_body = 256 << 10
        process = rt.start_sluice(tmp_path, sluice_config(es, {"compression": "none"}), track_sluice)
        ids: list[str] = []
        for n in range(10):
            batch_ids, body = log_request(f"big{n}", 0, 2000)
            post_logs(process, body)
            ids += batch_ids
        arrived = wait_delivered(process, es, set(ids), "every record under the 256 KiB limit")
        assert all(n == 1 for n in arrived.values())
        assert all(r.body_bytes <= es.max_body for r in es.requests)
        refused, accepted = es.status_counts[413], len(es.requests)
        print(f"\n413 storm: {accepted} accepted bulk requests, {refused} answered 413")
        assert refused >= 1
        assert refused <= 2 * accepted, (refused, accepted)
        assert dead_letters(process) == []
        assert process.stop(timeout=60) == 0


# ----------------------------------------------------------------------------
# 3. Data streams, basic auth, a node down


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_data_streams_from_attributes_with_create_basic_auth_and_a_node_down(tmp_path, track_sluice):
    with ESServer(authorization="Basic " + base64.b64encode(b"sluice_writer:s3cr3t-pa55").decode()) as es:
        dead = f"http://127.0.0.1:{_free_port()}"
        process = rt.start_sluice(
            tmp_path,
            sluice_config(es, {"user": "sluice_writer", "password": "s3cr3t-pa55", "logs_dynamic_index": {"enabled": True}},
                          endpoints=[dead, es.endpoint]),
            track_sluice,
        )
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        message = ExportLogsServiceRequest()
        resource_logs = message.resource_logs.add()
        resource_logs.resource.attributes.add(key="data_stream.dataset").value.string_value = "ai_gateway"
        scope = resource_logs.scope_logs.add()
        ids = []
        for i in range(300):
            record = scope.log_records.add()
            record.time_unix_nano = samples.BASE_TIME + i
            record.body.string_value = f"decision {i}"
            record.attributes.add(key="event_id").value.string_value = f"ds-{i:04d}"
            if i % 3 == 0:
                record.attributes.add(key="data_stream.namespace").value.string_value = "Prod-EU"
            ids.append(f"ds-{i:04d}")
        post_logs(process, message.SerializeToString())
        wait_delivered(process, es, set(ids), "the records in their data streams")
        assert es.index_names() == {"logs-ai_gateway-default", "logs-ai_gateway-prod_eu"}, es.index_names()
        assert len(es.documents("logs-ai_gateway-prod_eu")) == 100
        assert es.errors == [], es.errors
        assert status(process)["status"] == "active"
        # The password is in no log line and in /status nowhere.
        assert "s3cr3t-pa55" not in process.stderr()
        assert process.stop(timeout=60) == 0


# ----------------------------------------------------------------------------
# 4. Mapping modes


def _one_record_request() -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    message = ExportLogsServiceRequest()
    resource_logs = message.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name").value.string_value = "ai-gateway"
    resource_logs.resource.attributes.add(key="host.name").value.string_value = "gw-pod-7"
    scope = resource_logs.scope_logs.add()
    scope.scope.name = "ai-gateway.audit"
    record = scope.log_records.add()
    record.time_unix_nano = samples.BASE_TIME + 123_456_789
    record.severity_text = "WARN"
    record.severity_number = 13
    record.trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    record.span_id = bytes.fromhex("eee19b7ec3c1b174")
    record.body.kvlist_value.values.add(key="decision").value.string_value = "block"
    record.body.kvlist_value.values.add(key="event_id").value.string_value = "body-1"
    for key, value in gateway_attributes("mode", 1).items():
        if isinstance(value, str):
            record.attributes.add(key=key).value.string_value = value
    return message.SerializeToString()


def test_mapping_modes_write_the_fields_rules_query(tmp_path, track_sluice):
    with ESServer() as es:
        exporters = {f"elasticsearch/{mode}": {"endpoint": es.endpoint, "mapping": {"mode": mode}, "logs_index": f"m-{mode}",
                                               "retry_on_failure": dict(FAST_RETRY)}
                     for mode in ("ecs", "otel", "raw", "none", "bodymap")}

        def make(ports):
            config = sluice_config(es)(ports)
            config["exporters"] = exporters
            config["service"]["pipelines"] = {"logs": {"receivers": ["otlp"], "processors": ["batch"], "exporters": sorted(exporters)}}
            return config

        process = rt.start_sluice(tmp_path, make, track_sluice)
        post_logs(process, _one_record_request())
        rt.wait_until(lambda: len(es.documents()) == 5, DELIVERY_TIMEOUT, what="one document per mode")
        doc = {mode: es.documents(f"m-{mode}")[0] for mode in ("ecs", "otel", "raw", "none", "bodymap")}
        day = rt.utc_day(samples.BASE_TIME).replace(".", "-")

        ecs = doc["ecs"]
        assert ecs["@timestamp"].startswith(day) and ecs["@timestamp"].endswith(".123Z"), ecs
        assert ecs["log.level"] == "WARN" and ecs["event.severity"] == 13
        assert ecs["trace.id"] == "5b8efff798038103d269b633813fc60c" and ecs["span.id"] == "eee19b7ec3c1b174"
        assert ecs["service.name"] == "ai-gateway" and ecs["host.name"] == "gw-pod-7"
        assert ecs["event.action"] == ecs["action"] == "block" and ecs["user_id"] == gateway_attributes("mode", 1)["user_id"]
        assert json.loads(ecs["message"]) == {"decision": "block", "event_id": "body-1"}

        otel = doc["otel"]
        assert otel["@timestamp"].endswith(".123456789Z"), otel
        assert otel["body"] == {"structured": {"decision": "block", "event_id": "body-1"}}
        assert otel["attributes"]["action"] == "block" and otel["severity_text"] == "WARN"
        assert otel["resource"]["attributes"]["service.name"] == "ai-gateway"
        assert otel["scope"]["name"] == "ai-gateway.audit"

        raw, none = doc["raw"], doc["none"]
        assert raw["action"] == "block" and raw["Body"]["decision"] == "block" and raw["Resource.host.name"] == "gw-pod-7"
        assert none["Attributes.action"] == "block" and "action" not in none and none["SeverityText"] == "WARN"

        assert doc["bodymap"] == {"decision": "block", "event_id": "body-1"}
        # The same record has the same _id in every index (its event_id).
        assert set(es.creates) == {("m-" + m, "mode-000001") for m in ("ecs", "otel", "raw", "none", "bodymap")}
        assert es.errors == []
        assert process.stop(timeout=60) == 0
