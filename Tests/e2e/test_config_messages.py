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


def test_debug_output_paths_writes_where_it_is_told(tmp_path, track_sluice):
    """The debug exporter's `output_paths`: a file, instead of stderr."""
    from test_splunk_hec import log_request

    out = tmp_path / "debug.txt"

    def make(ports: rt.Ports) -> dict:
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "exporters": {"debug": {"verbosity": "detailed", "output_paths": [str(out)]}},
            "service": {"telemetry": {"metrics": {"address": ports.address("metrics")}},
                        "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["debug"]}}},
        }

    process = rt.start_sluice(tmp_path, make, track_sluice)
    ids, body = log_request("dbg", 0, 3)
    assert rt.post(process.ports.url("otlp", "/v1/logs"), body).status == 200
    rt.wait_until(lambda: out.exists() and all(i in out.read_text() for i in ids), 60, what="the records in the debug file")
    assert not any(i in process.stderr() for i in ids), "the records went to stderr too"


# ----------------------------------------------------------------------------
# health_check: tls, response_body, path (keys that were accepted and ignored)

from certs import pki  # noqa: E402,F401 - the session fixture


def test_health_check_serves_tls_and_custom_bodies(tmp_path, track_sluice, pki):  # noqa: F811
    """A health check configured for TLS answers over TLS only (it was served in
    plain text), with the configured response bodies."""
    import ssl
    import urllib.request

    server = pki.install_server(tmp_path / "tls")

    def make(ports: rt.Ports) -> dict:
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "exporters": {"nop": {}},
            "extensions": {"health_check": {"endpoint": ports.address("health"), "path": "/health/status",
                                            "tls": {"cert_file": str(server.cert), "key_file": str(server.key)},
                                            "response_body": {"healthy": "all good", "unhealthy": "not yet"}}},
            "service": {"extensions": ["health_check"], "telemetry": {"metrics": {"address": ports.address("metrics")}},
                        "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["nop"]}}},
        }

    process = rt.start_sluice(tmp_path, make, track_sluice)
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.check_hostname = False
    url = f"https://{process.ports.address('health')}/health/status"
    with urllib.request.urlopen(url, context=context, timeout=30) as response:
        assert response.status == 200 and response.read() == b"all good"
    # Plain HTTP on the TLS port gets no health answer.
    try:
        plain = rt.get(f"http://{process.ports.address('health')}/health/status", timeout=10)
        assert plain.status != 200, plain
    except Exception:
        pass


def test_health_check_path_must_start_with_a_slash(tmp_path):
    path = tmp_path / "collector.yaml"
    path.write_text("receivers:\n  otlp:\n    protocols:\n      http:\nexporters:\n  nop:\nextensions:\n  health_check:\n    path: health\n"
                    "service:\n  extensions: [health_check]\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [nop]\n")
    result = validate(path)
    assert result.returncode == 1
    assert 'collector.yaml:9 extensions.health_check.path: must start with "/", like /health/status' in result.stderr, result.stderr


def test_telemetry_resource_and_drop_views_shape_metrics(tmp_path, track_sluice):
    """service.telemetry.resource becomes target_info's labels on /metrics; a view
    with aggregation drop leaves its metrics out."""

    def make(ports: rt.Ports) -> dict:
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "exporters": {"nop": {}},
            "service": {
                "telemetry": {
                    "resource": {"service.name": "sluice-sidecar", "k8s.pod.name": "gateway-7f9c"},
                    "metrics": {"address": ports.address("metrics"),
                                "views": [{"selector": {"instrument_name": "sluice_exporter_sent_*"}, "stream": {"aggregation": {"drop": {}}}}]},
                },
                "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["nop"]}},
            },
        }

    process = rt.start_sluice(tmp_path, make, track_sluice)
    text = rt.get(process.ports.url("metrics", "/metrics")).body.decode()
    assert 'target_info{service_name="sluice-sidecar",k8s_pod_name="gateway-7f9c"} 1' in text, text[:500]
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert not any(n.startswith("sluice_exporter_sent_") for n in names), sorted(names)
    assert "sluice_exporter_dead_lettered_items_total" in names, sorted(names)


def test_a_periodic_reader_pushes_sluices_own_metrics_over_otlp(tmp_path, track_sluice, otlp_sink):
    """service.telemetry.metrics.readers[].periodic with an OTLP/HTTP exporter (the
    Collector's internal-telemetry form): Sluice's metrics arrive as OTLP metrics —
    counters as cumulative monotonic sums, with their labels and the resource."""
    from test_splunk_hec import log_request

    def make(ports: rt.Ports) -> dict:
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "exporters": {"nop": {}},
            "service": {
                "telemetry": {
                    "resource": {"service.name": "sluice-sidecar"},
                    "metrics": {"address": ports.address("metrics"), "readers": [{"periodic": {
                        "interval": 200, "exporter": {"otlp": {"protocol": "http/protobuf", "endpoint": otlp_sink.endpoint + "/v1/metrics"}}}}]},
                },
                "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["nop"]}},
            },
        }

    process = rt.start_sluice(tmp_path, make, track_sluice)
    _, body = log_request("push", 0, 7)
    assert rt.post(process.ports.url("otlp", "/v1/logs"), body).status == 200

    def sent_seven():
        for message in reversed(otlp_sink.messages("metrics")):
            for rm in message.resource_metrics:
                resource = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name == "sluice_exporter_sent_items_total":
                            for point in metric.sum.data_points:
                                labels = {kv.key: kv.value.string_value for kv in point.attributes}
                                if labels.get("exporter") == "nop" and point.as_double == 7:
                                    return resource, metric
        return None

    resource, metric = rt.wait_until(sent_seven, 60, what="a push with the 7 records sent")
    assert resource == {"service.name": "sluice-sidecar"}
    assert metric.sum.is_monotonic and metric.sum.aggregation_temporality == 2
    assert metric.description


def test_a_periodic_reader_pushes_over_grpc_too(tmp_path, track_sluice):
    """`protocol: grpc/protobuf`, as opentelemetry.io's internal-telemetry page
    configures it: the metrics arrive as a MetricsService/Export call."""
    from test_otlp_grpc_exporter import GRPCDestination

    with GRPCDestination() as destination:
        def make(ports: rt.Ports) -> dict:
            return {
                "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
                "exporters": {"nop": {}},
                "service": {
                    "telemetry": {"metrics": {"address": ports.address("metrics"), "readers": [{"periodic": {
                        "interval": 200, "exporter": {"otlp": {"protocol": "grpc/protobuf", "endpoint": f"http://{destination.address}",
                                                               "headers": [{"name": "x-tenant", "value": "security"}]}}}}]}},
                    "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["nop"]}},
                },
            }

        process = rt.start_sluice(tmp_path, make, track_sluice)

        def pushed():
            process.check_alive("metrics pushed over gRPC")
            with destination._lock:
                delivered = list(destination.delivered["metrics"])
                calls = list(destination.calls)
            names = {m.name for r in delivered for rm in r.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
            return "sluice_exporter_sent_items_total" in names and calls

        calls = rt.wait_until(pushed, 60, what="a MetricsService/Export call")
        assert calls[0].metadata.get("x-tenant") == "security", calls[0].metadata
