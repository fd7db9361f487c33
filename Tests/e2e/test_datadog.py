"""The `datadog` exporter end to end: the real `sluice` binary, the OpenTelemetry
Python SDK in front of it, and datadog_server.py — Datadog's logs intake, as
strict about the key header and limits as Datadog documents — behind it (issue 14).

1. 20,000 SDK records reach the intake exactly once per event_id through a 503
   period, in requests within Datadog's limits, with the fields Datadog's log
   queries use; one entry over 1 MB goes to the dead-letter file whole instead of
   being truncated by Datadog; entries over 18 hours old, which Datadog drops
   after a 202, go there too.
2. A refused API key makes the exporter `failed`, with an error that says so in
   /status and the log, and the key nowhere; a reload with the right key makes
   it active, and `sluice replay` sends the dead-lettered entries once.

No assertion is about time: timeouts only keep a broken build from hanging.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

import destination_helpers as dh
import otlp_samples as samples
import runtime_helpers as rt
from datadog_server import MAX_CONTENT, MAX_ENTRIES, DatadogServer
from test_reload import _reload
from test_splunk_hec import dead_lettered_ids, gateway_attributes, log_request, send_sdk_logs

rt.env_without_proxies()

API_KEY = "3f9a2c7e5b1d4e8fa0c6b2d9e7f1a4c3"
RECORDS = 20_000


def datadog_settings(dd: DatadogServer) -> dict:
    return {"api": {"key": API_KEY}, "logs": {"endpoint": dd.url}}


@pytest.fixture(autouse=True)
def recent_records(monkeypatch):
    """The records are from a minute ago: Datadog takes logs up to 18 hours old."""
    monkeypatch.setattr(samples, "BASE_TIME", (int(time.time()) - 60) * 1_000_000_000)


def test_sdk_records_reach_datadog_once_each_within_its_limits(tmp_path, track_sluice):
    with DatadogServer(API_KEY) as dd:
        process = rt.start_sluice(tmp_path, dh.logs_pipeline("datadog", datadog_settings(dd)), track_sluice)
        # An outage at the start: the first requests meet 503s and are retried.
        dd.outage(2.0)
        results = send_sdk_logs(process.ports.url("otlp", "/v1/logs"), RECORDS, "dd", base_time=samples.BASE_TIME)
        assert results == Counter({"SUCCESS": RECORDS}), results
        ids = {f"dd-{i:06d}" for i in range(RECORDS)}
        arrived = dh.wait_delivered(process, "datadog", dd, ids, "the 20,000 records at the intake")
        assert dd.errors == [], dd.errors[:5]
        assert set(arrived) == ids and all(n == 1 for n in arrived.values()), arrived.most_common(3)
        assert dd.status_counts[503] > 0, "the outage met no request"

        # Datadog's limits, and gzip by default.
        assert all(r["entries"] <= MAX_ENTRIES and r["content"] <= MAX_CONTENT for r in dd.requests)
        assert all(r["encoding"] == "gzip" for r in dd.requests)

        # What Datadog's queries use: reserved attributes, the gateway's fields at the top.
        entry = next(e for e in dd.entries if e["event_id"] == "dd-000005")
        expected = gateway_attributes("dd", 5)
        for name in ("event_type", "action", "policy_name", "model", "user_id", "org_id"):
            assert entry[name] == expected[name], (name, entry)
        assert entry["service"] == "ai-gateway" and entry["hostname"] == "gateway-pod-7" and entry["ddsource"] == "opentelemetry"
        assert "k8s.namespace.name:edge" in entry["ddtags"].split(","), entry["ddtags"]
        assert entry["status"] == "error", entry  # the SDK's 6th record (i % 3 == 2) is ERROR
        assert entry["message"] == f"{expected['action']} by {expected['policy_name']} for {expected['model']}"
        assert entry["timestamp"] == (samples.BASE_TIME + 5 * 1_000_000) // 1_000_000
        trace_id, span_id = samples.TRACE_CONTEXTS[5 % len(samples.TRACE_CONTEXTS)]
        assert entry["dd.trace_id"] == str(trace_id & 0xFFFF_FFFF_FFFF_FFFF) and entry["dd.span_id"] == str(span_id), entry
        blocked = sum(1 for e in dd.entries if e.get("action") == "block")
        assert blocked == sum(1 for i in range(RECORDS) if gateway_attributes("dd", i)["action"] == "block")

        log = process.stderr()
        assert '"msg":"exporter degraded' in log and '"msg":"exporter recovered' in log
        assert dh.status(process, "datadog")["status"] == "active"
        m = rt.scrape(process.ports.url("metrics", "/metrics"))
        assert rt.metric(m, "sluice_exporter_sent_items_total", exporter="datadog", signal="logs") == RECORDS
        print(f"\n{RECORDS} SDK records: {len(dd.requests)} requests to the intake, {dd.status_counts[503]} answered 503, "
              f"largest {max(r['entries'] for r in dd.requests)} entries / {max(r['content'] for r in dd.requests)} bytes")
        assert API_KEY not in log
        assert process.stop(timeout=60) == 0


def test_an_entry_over_1mb_is_dead_lettered_whole_and_its_neighbours_delivered(tmp_path, track_sluice):
    with DatadogServer(API_KEY) as dd:
        process = rt.start_sluice(tmp_path, dh.logs_pipeline("datadog", datadog_settings(dd)), track_sluice)
        ids, body = log_request("big", 0, 50, big={7: 1_200_000})
        assert rt.post(process.ports.url("otlp", "/v1/logs"), body).status == 200
        dh.wait_delivered(process, "datadog", dd, set(ids) - {"big-000007"}, "the 49 other records")
        rt.wait_until(lambda: dead_lettered_ids(dh.dead_letters(process, "datadog")) == ["big-000007"], dh.DELIVERY_TIMEOUT, what="the large record dead-lettered")
        line = dh.dead_letters(process, "datadog")[0]
        assert "over Datadog's 1 MB per entry" in line["reason"], line["reason"]
        assert dd.errors == [] and "big-000007" not in dd.ids
        assert dh.status(process, "datadog")["status"] == "active"  # one record refused is not the destination refusing
        assert process.stop(timeout=60) == 0


def test_entries_older_than_18_hours_are_dead_lettered_not_sent_to_be_dropped(tmp_path, track_sluice, monkeypatch):
    with DatadogServer(API_KEY) as dd:
        process = rt.start_sluice(tmp_path, dh.logs_pipeline("datadog", datadog_settings(dd)), track_sluice)
        monkeypatch.setattr(samples, "BASE_TIME", (int(time.time()) - 20 * 3600) * 1_000_000_000)
        old, body = log_request("old", 0, 10)
        dh.post_logs(process, body)
        monkeypatch.setattr(samples, "BASE_TIME", (int(time.time()) - 60) * 1_000_000_000)
        recent, body = log_request("recent", 0, 10)
        dh.post_logs(process, body)
        dh.wait_delivered(process, "datadog", dd, set(recent), "the recent records")
        rt.wait_until(lambda: sorted(dead_lettered_ids(dh.dead_letters(process, "datadog"))) == sorted(old), dh.DELIVERY_TIMEOUT,
                      what="the old records dead-lettered")
        reason = dh.dead_letters(process, "datadog")[0]["reason"]
        assert "older than logs.max_age (18 h)" in reason and "Datadog takes logs up to 18 hours old" in reason, reason
        assert "20 h old" in reason, reason
        assert dd.errors == [] and set(dd.ids) == set(recent)
        assert process.stop(timeout=60) == 0


def test_a_refused_api_key_fails_the_exporter_until_a_reload_fixes_it_and_replay_sends_each_entry_once(tmp_path, track_sluice):
    right = "the-right-key-0123456789abcdef"
    with DatadogServer(right) as dd:
        process = rt.start_sluice(tmp_path, dh.logs_pipeline("datadog", datadog_settings(dd)), track_sluice)
        ids, body = log_request("badkey", 0, 100)
        dh.post_logs(process, body)
        entry = rt.wait_until(lambda: (e := dh.status(process, "datadog"))["dead_lettered_items"] == 100 and e, dh.DELIVERY_TIMEOUT,
                              what="the records dead-lettered")
        assert entry["status"] == "failed", entry
        error = entry["last_error"]
        assert "Datadog refused the API key" in error and "HTTP 403" in error and "api.site" in error, error
        assert "sluice replay --exporter datadog" in error, error
        assert API_KEY not in json.dumps(entry)
        assert sorted(dead_lettered_ids(dh.dead_letters(process, "datadog"))) == sorted(ids)
        failed = [line for line in process.log_lines() if line.get("msg", "").startswith("exporter failed")]
        assert len(failed) == 1 and failed[0]["level"] == "error", failed
        assert "Datadog refused the API key" in json.dumps(failed[0])
        assert rt.metric(rt.scrape(process.ports.url("metrics", "/metrics")), "sluice_exporter_up", exporter="datadog") == 0

        # The key is fixed by a reload: active again with the next delivery.
        _reload(process, dh.logs_pipeline("datadog", {**datadog_settings(dd), "api": {"key": right}})(process.ports))
        after, body = log_request("after", 0, 100)
        dh.post_logs(process, body)
        dh.wait_delivered(process, "datadog", dd, set(after), "the records sent after the reload")
        assert dh.status(process, "datadog")["status"] == "active"
        assert process.stop(timeout=60) == 0

        # Replay sends what was refused, each entry once.
        result = process.replay("datadog")
        assert result.returncode == 0, result.stderr
        assert "done: 100 delivered, 0 failed again" in result.stdout, result.stdout
        assert set(dd.ids) == set(ids + after) and all(n == 1 for n in dd.ids.values())
        assert dd.errors == []
        for text in (process.stderr(), result.stdout, result.stderr):
            assert API_KEY not in text and right not in text
        print(f"\nbad key: /status last_error {error!r}")
