"""deploy/prometheus/sluice-alerts.yaml asks only for metrics and labels that a
running sluice exposes, so a renamed metric cannot leave an alert that never
fires (issue 21). No PyYAML here: the rules are read as text."""

from __future__ import annotations

import re

import runtime_helpers as rt
from conftest import REPO_ROOT

RULES = REPO_ROOT / "deploy" / "prometheus" / "sluice-alerts.yaml"


def test_alert_rules_use_metrics_and_labels_sluice_exposes(tmp_path, track_sluice):
    def config(ports):
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "exporters": {"file": {"path": str(tmp_path / "out.jsonl")}},
            "service": {
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["file"]}},
            },
        }

    process = rt.start_sluice(tmp_path, config, track_sluice)
    samples = rt.scrape(process.ports.url("metrics", "/metrics"))
    exposed = {name: labels for name, labels, _ in samples}
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
    assert process.stop(timeout=30) == 0
