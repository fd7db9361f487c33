"""deploy/prometheus/sluice-alerts.yaml and deploy/grafana/sluice-dashboard.json
ask only for metrics and labels that a running sluice exposes, so a renamed
metric cannot leave an alert that never fires or a panel that stays empty
(issues 21 and 17). The rules are read as text, the dashboard as JSON."""

from __future__ import annotations

import json
import re

import pytest

import runtime_helpers as rt
from conftest import REPO_ROOT

RULES = REPO_ROOT / "deploy" / "prometheus" / "sluice-alerts.yaml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "sluice-dashboard.json"
# Labels Prometheus adds to every scraped series (the ServiceMonitor's target).
TARGET_LABELS = {"namespace", "pod", "instance", "job", "service", "container", "endpoint"}


@pytest.fixture(scope="module")
def exposed(tmp_path_factory, track_sluice_module):
    """Every series of a running sluice with a receiver, the memory limiter, the
    disk log and an exporter: {metric name: set of its label names}."""
    tmp_path = tmp_path_factory.mktemp("metrics")

    def config(ports):
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "processors": {"memory_limiter": {"limit_mib": 200}},
            "exporters": {"file": {"path": str(tmp_path / "out.jsonl"), "sending_queue": {"storage": "file_storage"}}},
            "extensions": {"file_storage": {"directory": str(tmp_path / "storage")}},
            "service": {
                "extensions": ["file_storage"],
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {"logs": {"receivers": ["otlp"], "processors": ["memory_limiter"], "exporters": ["file"]}},
            },
        }

    process = rt.start_sluice(tmp_path, config, track_sluice_module)
    samples = rt.scrape(process.ports.url("metrics", "/metrics"))
    names: dict[str, set[str]] = {}
    for name, labels, _ in samples:
        names.setdefault(name, set()).update(labels)
    yield process, samples, names
    assert process.stop(timeout=30) == 0


def test_alert_rules_use_metrics_and_labels_sluice_exposes(exposed):
    process, samples, exposed = exposed
    text = RULES.read_text()
    expressions = re.findall(r"^\s*expr:\s*(.+)$", text, re.MULTILINE)
    assert len(expressions) == len(re.findall(r"^\s*- alert:", text, re.MULTILINE)) >= 3
    for expression in expressions:
        for name in re.findall(r"\bsluice_[a-z_]+", expression):
            assert name in exposed, f"{name} (in {expression!r}) is not in /metrics"
    # The labels the rules match on and print.
    assert "exporter" in exposed["sluice_exporter_up"] and "exporter" in exposed["sluice_exporter_dead_lettered_items_total"]
    assert "pipeline" in exposed["sluice_pipeline_log_bytes"]
    # The states the rules tell apart: 1 active, 0.5 degraded, 0 failed.
    assert rt.exporter_status(process.ports.url("metrics", "/status"))["file"]["status"] == "active"
    assert rt.metric(samples, "sluice_exporter_up", exporter="file") == 1
    for state, value in (("failed", "0"), ("degraded", "0.5")):
        assert re.search(rf"sluice_exporter_up == {re.escape(value)}(?![\d.])", text), f"no alert for {state}"


def test_dashboard_uses_metrics_and_labels_sluice_exposes(exposed):
    _, _, exposed = exposed
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"]), "panel ids must be unique"
    # The panels the issue names are there, by what they show.
    shown = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in ("sluice_receiver_accepted_items_total", "sluice_exporter_sent_items_total", "sluice_receiver_refused_items_total",
                   "sluice_exporter_dead_lettered_items_total", "sluice_exporter_lag_items", "sluice_exporter_lag_oldest_age_seconds",
                   "sluice_exporter_up", "sluice_process_resident_memory_bytes", "sluice_process_cpu_seconds_total"):
        assert metric in shown, f"no panel shows {metric}"
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), expr
            for name in re.findall(r"\bsluice_[a-z_]+", expr):
                assert name in exposed, f"{name} (panel {panel['title']!r}) is not in /metrics"
            # Labels grouped by, matched on or printed exist on the metrics used.
            used = set(re.findall(r"by \(([^)]*)\)", expr))
            labels = {label.strip() for group in used for label in group.split(",")} | set(re.findall(r"\{\{(\w+)\}\}", target.get("legendFormat", "")))
            available = TARGET_LABELS | set().union(*(exposed[n] for n in re.findall(r"\bsluice_[a-z_]+", expr)))
            assert labels <= available, f"panel {panel['title']!r} uses labels {sorted(labels - available)} that {expr} does not have"
    # Panels do not overlap on the 24-column grid.
    cells = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {panel['title']!r} overlaps another"
        cells |= mine


def test_oldest_undelivered_age_grows_while_a_destination_is_down(tmp_path, track_sluice):
    """sluice_exporter_lag_oldest_age_seconds (the dashboard's "oldest undelivered
    record", alert SluiceDeliveryBehind): 0 for an exporter that keeps up, growing
    for one whose destination refuses connections, as long as the record waits."""
    closed = rt.free_port()

    def config(ports):
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "exporters": {"file": {"path": str(tmp_path / "out.jsonl")},
                          "otlphttp": {"endpoint": f"http://127.0.0.1:{closed}", "retry_on_failure": {"initial_interval": "100ms"}}},
            "service": {
                "shutdown_timeout": "1s",
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["file", "otlphttp"]}},
            },
        }

    process = rt.start_sluice(tmp_path, config, track_sluice)
    body = b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"waits"}}]}]}]}'
    assert rt.post(process.ports.url("otlp", "/v1/logs"), body, "application/json").status == 200
    metrics_url = process.ports.url("metrics", "/metrics")

    def age(exporter):
        return rt.metric(rt.scrape(metrics_url), "sluice_exporter_lag_oldest_age_seconds", exporter=exporter, pipeline="logs")

    first = rt.wait_until(lambda: age("otlphttp") or None, timeout=30, what="an age for the undelivered record")
    rt.wait_until(lambda: age("otlphttp") > first + 0.5, timeout=30, what="the age to grow while the record waits")
    samples = rt.scrape(metrics_url)
    assert rt.metric(samples, "sluice_exporter_lag_items", exporter="otlphttp", pipeline="logs") == 1
    rt.wait_until(lambda: rt.metric(rt.scrape(metrics_url), "sluice_exporter_sent_items_total", exporter="file", signal="logs") == 1,
                  timeout=30, what="the file exporter to deliver")
    assert age("file") == 0
    assert process.stop(timeout=30) == 0
