"""docs/file-export.md shows the detection rules of docs/events.md as jq commands
on the file exporter's output, each followed by what it prints. This test sends
the guide's example events through a running sluice into a file exporter, runs
every command of the guide's "Detection queries" section on that file, and checks
that it prints what the guide says it prints."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import runtime_helpers as rt
from conftest import REPO_ROOT

GUIDE = REPO_ROOT / "docs" / "file-export.md"
HOUR_NS = 3600 * 10**9
START_NS = 1763712000 * 10**9   # 2025-11-21T08:00:00Z

# The guide's example: 24 decisions over two hours.
POLICIES = ["pii-redaction/strict", "jailbreak/block", "cost/limit"]
MODELS = ["gpt-4o", "claude-3-5-sonnet"]


def example_events() -> list[dict]:
    events = []
    for i in range(24):
        action = ["allow", "block", "escalate", "redact", "block", "allow"][i % 6]
        event_type = {"allow": "request", "block": "blocked", "escalate": "escalated", "redact": "redacted"}[action]
        events.append({
            "event_id": f"evt-{i:03d}", "event_type": event_type, "action": action,
            "policy_name": POLICIES[(i // 4) % 3], "model": MODELS[(i // 3) % 2], "gateway_id": "gw-1",
            "user_id": f"user_{(i * i) % 7}", "org_id": "org_acme",
            "time_unix_nano": START_NS + (i * 5 * 60 * 10**9) + 123,
        })
    return events


def otlp_json(events: list[dict]) -> bytes:
    records = [{
        "timeUnixNano": str(e["time_unix_nano"]),
        "body": {"stringValue": f"{e['action']} by {e['policy_name']}"},
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in e.items() if k != "time_unix_nano"],
    } for e in events]
    return json.dumps({"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "ai-gateway"}}]},
                                         "scopeLogs": [{"logRecords": records}]}]}).encode()


def guide_commands() -> list[tuple[str, str]]:
    """(command, printed) pairs of the guide's Detection queries section."""
    section = GUIDE.read_text().split("## Detection queries", 1)[1].split("\n## ", 1)[0]
    pairs = re.findall(r"```sh\n(.*?)```\n+```text\n(.*?)```", section, re.DOTALL)
    return [(command.strip(), printed) for command, printed in pairs]


def test_guide_queries_print_what_the_guide_shows(tmp_path, track_sluice):
    assert shutil.which("jq"), "jq runs the guide's queries: `make deps` installs it (APT_PACKAGES)"
    commands = guide_commands()
    assert len(commands) >= 3, "the guide shows the three detection rules"

    def config(ports):
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "exporters": {"file": {"path": str(tmp_path / "data" / "logs.jsonl"), "rotation": {}}},
            "service": {"telemetry": {"metrics": {"address": ports.address("metrics")}},
                        "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["file"]}}},
        }

    process = rt.start_sluice(tmp_path, config, track_sluice)
    events = example_events()
    # Two requests, two lines: the queries must read every line of the file.
    for part in (events[:10], events[10:]):
        assert rt.post(process.ports.url("otlp", "/v1/logs"), otlp_json(part), "application/json").status == 200
    rt.wait_until(lambda: rt.metric(rt.scrape(process.ports.url("metrics", "/metrics")), "sluice_exporter_sent_items_total",
                                    exporter="file", signal="logs") == len(events), timeout=60, what="the file exporter to write every record")
    assert process.stop(timeout=30) == 0
    assert len((tmp_path / "data" / "logs.jsonl").read_text().splitlines()) >= 2
    for command, printed in commands:
        result = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                                env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        assert result.stdout == printed, f"the guide's command\n{command}\nprints\n{result.stdout}\nnot what the guide shows:\n{printed}"
