"""What Sluice says about a configuration it is given (issue 16): a duplicated
key holding a token is named by file and line, never with the file's text, at
`sluice validate`, at start and on a reload (the log and /status); deprecated
type names and keys without effect are warnings, not errors.

No assertion is about time: timeouts only keep a broken build from hanging.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import runtime_helpers as rt

TOKEN = "5ec2e7-hec-token-do-not-print-0000"
OTHER = "5ec2e7-hec-token-do-not-print-1111"


def config_text(ports: rt.Ports | None = None, duplicated: bool = False) -> str:
    otlp = ports.address("otlp") if ports else "127.0.0.1:4318"
    metrics = ports.address("metrics") if ports else "127.0.0.1:8888"
    second = f'\n    token: "{OTHER}"' if duplicated else ""
    return f"""receivers:
  otlp:
    protocols:
      http:
        endpoint: {otlp}
exporters:
  splunk_hec:
    token: "{TOKEN}"
    endpoint: http://127.0.0.1:9/services/collector{second}
  otlphttp:
    endpoint: http://127.0.0.1:9
    idle_conn_timeout: 30s
service:
  telemetry:
    metrics:
      address: {metrics}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [splunk_hec, otlphttp]
"""


def validate(path) -> subprocess.CompletedProcess:
    return subprocess.run([str(rt.SLUICE_BIN), "validate", "--config", str(path)], capture_output=True, text=True, timeout=60)


def test_validate_names_a_duplicated_key_by_line_and_prints_no_token(tmp_path):
    path = tmp_path / "collector.yaml"
    path.write_text(config_text(duplicated=True))
    result = validate(path)
    assert result.returncode == 1
    assert result.stderr.strip() == "collector.yaml:10 exporters.splunk_hec.token: duplicated (first at line 8); keep one", result.stderr
    assert TOKEN not in result.stdout + result.stderr and OTHER not in result.stdout + result.stderr


def test_validate_warns_about_deprecated_names_and_keys_without_effect(tmp_path):
    path = tmp_path / "collector.yaml"
    path.write_text(config_text())
    result = validate(path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        'warning: collector.yaml:10 exporters.otlphttp: "otlphttp" alias is deprecated; use "otlp_http" instead',
        "warning: collector.yaml:12 exporters.otlphttp.idle_conn_timeout: has no effect in Sluice (idle connections close after 90s); remove it to silence this warning",
    ], result.stderr
    # The current names validate without a word.
    path.write_text(config_text().replace("otlphttp", "otlp_http").replace("    idle_conn_timeout: 30s\n", ""))
    result = validate(path)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_reload_with_a_duplicated_key_is_refused_by_line_in_the_log_and_status(tmp_path, track_sluice):
    # The file is written as text (a dict cannot hold a key twice), under the name
    # the messages then carry.
    ports = rt.Ports()
    process = rt.SluiceProcess(tmp_path, {}, ports, name="collector")
    track_sluice(process)
    process.data_dir.mkdir(parents=True, exist_ok=True)
    process.config_path.write_text(config_text(ports))
    command = [str(rt.SLUICE_BIN), "--config", str(process.config_path), "--data-directory", str(process.data_dir), "--log-format", "json"]
    process._stderr = open(process.stderr_path, "wb")
    process.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=process._stderr, stderr=process._stderr)
    process.wait_running()
    assert 'exporters.otlphttp: \\"otlphttp\\" alias is deprecated; use \\"otlp_http\\" instead' in process.stderr(), process.stderr_tail()

    temporary = process.config_path.with_suffix(".new")
    temporary.write_text(config_text(ports, duplicated=True))
    os.replace(temporary, process.config_path)
    process.process.send_signal(signal.SIGHUP)

    def refused():
        process.check_alive("a reload")
        status = json.loads(rt.get(ports.url("metrics", "/status")).body)
        reload = status.get("reload") or {}
        return reload.get("result") == "failure" and reload

    reload = rt.wait_until(refused, 60, what="the reload refused in /status")
    assert reload["problems"] == ["collector.yaml:10 exporters.splunk_hec.token: duplicated (first at line 8); keep one"], reload
    status_text = rt.get(ports.url("metrics", "/status")).body.decode()
    log = process.stderr()
    assert "duplicated (first at line 8)" in log
    for text in (status_text, log):
        assert TOKEN not in text and OTHER not in text


def test_sending_queue_batch_shapes_an_exporters_requests(tmp_path, track_sluice, otlp_sink):
    """`sending_queue.batch` (the Collector's exporter-side batching) merges what the
    pipeline has no batch processor for: five requests of 100 records leave as one
    of 500 (min_size), however long the five take to arrive within flush_timeout."""
    from test_splunk_hec import log_request

    def make(ports: rt.Ports) -> dict:
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "exporters": {"otlp_http": {"endpoint": otlp_sink.endpoint, "compression": "none",
                                        "sending_queue": {"batch": {"min_size": 500, "max_size": 500, "flush_timeout": "120s"}}}},
            "service": {"telemetry": {"metrics": {"address": ports.address("metrics")}},
                        "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["otlp_http"]}}},
        }

    process = rt.start_sluice(tmp_path, make, track_sluice)
    for start in range(0, 500, 100):
        _, body = log_request("q", start, 100)
        assert rt.post(process.ports.url("otlp", "/v1/logs"), body).status == 200
    assert otlp_sink.wait_for(lambda s: len(rt.flatten_logs(s.messages("logs"))) >= 500, 180), "the 500 records did not arrive"
    sizes = [len(rt.flatten_logs([m])) for m in otlp_sink.messages("logs")]
    assert sizes == [500], sizes
