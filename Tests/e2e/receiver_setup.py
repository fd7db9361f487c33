"""Shared by the HTTP/2, gRPC and receiver TLS/auth tests (test_http2.py,
test_grpc.py, test_receiver_tls.py): configs with the Collector's names for an
`otlp` receiver with gRPC and HTTP, TLS and `bearertokenauth`, the `file`
exporter behind it, and the checks the tests make on what sluice wrote and
logged.

    extensions:
      bearertokenauth: {token: "s3cret"}          # or filename: /path
    receivers:
      otlp:
        protocols:
          grpc: {endpoint: …, tls: {cert_file, key_file, client_ca_file, min_version, reload_interval}, auth: {authenticator: bearertokenauth}}
          http: {endpoint: …, tls: {…}, auth: {…}}
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

import runtime_helpers as rt
from certs import PKI

TOKEN = "s3cret"
GRPC_SERVICES = {
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}
SIGNALS = ("logs", "traces", "metrics")

# Only guards against a hang; never asserted on.
DELIVERY_TIMEOUT = 300


def tls_section(pki: PKI, server_dir: Path, mutual: bool = False, **extra) -> dict:
    """`tls` for a receiver protocol: the server pair installed in `server_dir`
    (so a test can rotate it there), the CA for client certificates if mutual."""
    if not (server_dir / "server.pem").exists():
        pki.install_server(server_dir)
    section = {"cert_file": str(server_dir / "server.pem"), "key_file": str(server_dir / "server-key.pem"), "min_version": "1.2"}
    if mutual:
        section["client_ca_file"] = str(pki.ca)
    section.update(extra)
    return section


def collector_config(ports: rt.Ports, out_dir: Path, *, grpc: dict | None = None, http: dict | None = None,
                     extensions: dict | None = None, exporters: dict | None = None) -> dict:
    """An `otlp` receiver with the given `grpc` and/or `http` protocol settings
    (endpoints filled in: ports "grpc" and "http"), every signal into a `file`
    exporter in proto format (`out_dir/<signal>.pb`) unless `exporters` is given
    ({signal: {exporter id: settings}}), /status and /metrics on port "metrics"."""
    protocols = {}
    if grpc is not None:
        protocols["grpc"] = {"endpoint": ports.address("grpc"), **grpc}
    if http is not None:
        protocols["http"] = {"endpoint": ports.address("http"), **http}
    if exporters is None:
        exporters = {signal: {f"file/{signal}": {"path": str(out_dir / f"{signal}.pb"), "format": "proto"}} for signal in SIGNALS}
    config = {
        "receivers": {"otlp": {"protocols": protocols}},
        "exporters": {name: settings for per_signal in exporters.values() for name, settings in per_signal.items()},
        "service": {
            "telemetry": {"metrics": {"address": ports.address("metrics")}},
            "pipelines": {signal: {"receivers": ["otlp"], "exporters": list(per_signal)} for signal, per_signal in exporters.items()},
        },
    }
    if extensions:
        config["extensions"] = extensions
        config["service"]["extensions"] = list(extensions)
    return config


def bearer_auth(settings: dict | None = None, name: str = "bearertokenauth") -> tuple[dict, dict]:
    """(extensions, the `auth` section a protocol names it with)."""
    return {name: settings or {"token": TOKEN}}, {"authenticator": name}


# ----------------------------------------------------------------------------
# What arrived


def read_file_export(path: Path, signal: str) -> list:
    """Every request the `file` exporter wrote in proto format (none when it
    never wrote the file)."""
    from test_runtime import _read_file_exporter

    return _read_file_exporter(path, "proto", signal) if path.exists() else []


def wait_exported(process: rt.SluiceProcess, what: str = "the exporters to catch up") -> None:
    """Until every exporter has nothing left to deliver (everything acknowledged
    to a client is then in the files)."""
    status_url = process.ports.url("metrics", "/status")

    def caught_up():
        process.check_alive(what)
        return all(e["lag"]["items"] == 0 for e in rt.exporter_status(status_url).values())

    rt.wait_until(caught_up, DELIVERY_TIMEOUT, poll=0.2, what=what)


def count_records(messages, signal: str) -> int:
    if signal == "logs":
        return sum(len(sl.log_records) for m in messages for rl in m.resource_logs for sl in rl.scope_logs)
    if signal == "traces":
        return sum(len(ss.spans) for m in messages for rs in m.resource_spans for ss in rs.scope_spans)
    return sum(len(sm.metrics) for m in messages for rm in m.resource_metrics for sm in rm.scope_metrics)


# ----------------------------------------------------------------------------
# What sluice logged


def warnings_matching(process: rt.SluiceProcess, pattern: str) -> list[dict]:
    """sluice's warning (or error) log lines of which any part matches `pattern`
    (a case-insensitive regular expression)."""
    regex = re.compile(pattern, re.IGNORECASE)
    return [line for line in process.log_lines()
            if line.get("level") in ("warn", "warning", "error") and regex.search(json.dumps(line, ensure_ascii=False))]


def wait_new_warning(process: rt.SluiceProcess, pattern: str, before: int, what: str) -> None:
    """Until there are more than `before` warnings matching `pattern` (the line
    is written after the client saw the failure); on a timeout the test fails
    with the warnings there are."""
    deadline = time.monotonic() + 60  # a guard only; 10 s could pass on a busy machine
    while len(warnings_matching(process, pattern)) <= before:
        if time.monotonic() > deadline:
            lines = [line for line in process.log_lines() if line.get("level") in ("warn", "warning", "error")]
            pytest.fail(f"no new warning matching /{pattern}/ ({what}); the last warnings:\n"
                        + "\n".join(json.dumps(line, ensure_ascii=False) for line in lines[-10:]), pytrace=False)
        time.sleep(0.1)


def openssl_s_client(port: int, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """`openssl s_client -connect 127.0.0.1:port args…` with `stdin` sent (then
    EOF); output as text."""
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", *args]
    return subprocess.run(command, input=stdin, capture_output=True, timeout=60)


def served_certificate(port: int, pki: PKI, *extra: str) -> dict:
    """The subject and serial of the certificate sluice serves a new connection,
    read with `openssl s_client` and `openssl x509`."""
    result = openssl_s_client(port, "-CAfile", str(pki.ca), *extra)
    out = result.stdout.decode(errors="replace")
    match = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.DOTALL)
    assert match, f"openssl s_client printed no certificate (exit {result.returncode}):\n{out[-2000:]}\n{result.stderr.decode(errors='replace')[-2000:]}"
    parsed = subprocess.run(["openssl", "x509", "-noout", "-serial", "-subject"], input=match.group(0).encode(),
                            capture_output=True, timeout=60, check=True).stdout.decode()
    serial = re.search(r"serial=([0-9A-Fa-f]+)", parsed).group(1)
    subject = re.search(r"subject=(.*)", parsed).group(1).strip()
    return {"serial": int(serial, 16), "subject": subject}
