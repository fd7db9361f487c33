#!/usr/bin/env python3
"""The runtime benchmark (`make bench`): the release binary, and Rotel (the Rust
OpenTelemetry collector, PyPI `rotel`) beside it, receive the same 1,000-record
governance-event request under the same load, case after case, in rounds.
Benchmarks/README.md says how to read what it prints.

Per case and round (a fresh process each time):
- throughput: h2load sends BENCH_REQUESTS requests (500) over BENCH_CONNECTIONS
  connections (4) as fast as the collector answers; the run ends when the exporter
  has delivered every record the receiver took. Records counted are the ones the
  exporter delivered (`sluice_exporter_sent_items_total`; for Rotel, 2xx requests into
  its blackhole, or the records its OTLP exporter delivered to the sink), per
  CPU-second of the collector process (user+system from /proc) and per second of
  wall time; peak RSS is the process's VmHWM.
After the rounds, once per case:
- latency: h2load paced at half the case's median records/s; p99 of the time from
  the request's start to its last record reaching the destination (`sink`), or to
  the collector's 2xx where there is no destination (`ack`: nop and blackhole).

Options: --json FILE also writes every figure as JSON. Environment: BENCH_REQUESTS,
BENCH_CONNECTIONS, BENCH_ROUNDS (5), BENCH_DECODE=0 (skips the loops), BENCH_CASES ("nop hec-gzip", or "all" for the
extra cases too), SLUICE_BENCH_BIN, ROTEL_VERSION (0.0.1a15), BENCH_LATENCY_SECONDS (4).
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS_PER_REQUEST = 1000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Case:
    name: str
    exporter: str = "nop"           # the exporter in the generated collector.yaml
    protocol: str = "h1"            # h1 (HTTP/1.1), h2 (h2c), grpc
    sink: str | None = None         # hec, es, otlp (Benchmarks/sink.py), file, or a destination_sink.py kind
    storage: str | None = None      # file_storage fsync policy: the disk log
    connections: int | None = None
    rotel: list[str] | None = None  # Rotel's exporter flags: a Rotel case
    processors: str = "batch"       # the pipeline's processors
    extra: bool = False             # only with BENCH_CASES=all or by name
    runs: list = field(default_factory=list)
    latency: dict | None = None


CASES = [
    Case("rotel-blackhole", rotel=["--exporter", "blackhole"]),
    Case("rotel-grpc", protocol="grpc", rotel=["--exporter", "blackhole"]),
    Case("rotel-otlp", sink="otlp", rotel=["--exporter", "otlp", "--otlp-exporter-protocol", "http",
                                           "--otlp-exporter-compression", "gzip"]),
    Case("nop"),
    Case("nop-h2", protocol="h2"),
    Case("nop-grpc", protocol="grpc"),
    Case("disk", storage="interval"),
    # Issue 15: the security processors next to the plain pipeline, both on disk
    # (every detector on; each of the payload's records has an email in user_id).
    Case("disk-redact", storage="interval", processors="redaction, batch"),
    Case("disk-redact-seal", storage="interval", processors="redaction, integrity, batch"),
    # …and the Done-when's own pipeline: into the file exporter through the disk log.
    Case("file-disk", exporter="file", sink="file", storage="interval"),
    Case("file-disk-redact-seal", exporter="file", sink="file", storage="interval", processors="redaction, integrity, batch"),
    Case("file", exporter="file", sink="file"),
    Case("hec-nogzip", exporter="splunk_hec/nogzip", sink="hec"),
    Case("hec-gzip", exporter="splunk_hec", sink="hec"),
    Case("es", exporter="elasticsearch", sink="es"),
    Case("otlphttp", exporter="otlphttp", sink="otlp"),
    # Not in the default run (BENCH_CASES=all): the other destinations through the
    # strict fixtures, the disk log's other policy and the gateway tier's shape.
    Case("disk-always", storage="always", extra=True),
    Case("es-nogzip", exporter="elasticsearch/nogzip", sink="es", extra=True),
    Case("datadog", exporter="datadog", sink="datadog", extra=True),
    Case("sentinel", exporter="sentinel", sink="sentinel", extra=True),
    Case("webhook", exporter="webhook", sink="webhook", extra=True),
    Case("tier-hec", exporter="splunk_hec/tier", sink="hec", protocol="grpc", extra=True),
    Case("nop-1c", connections=1, extra=True),
    Case("disk-1c", storage="interval", connections=1, extra=True),
    Case("nop-8c", connections=8, extra=True),
]

# Sluice / peer, per CPU-second: issue 20's targets (and issue 15's, the processors'
# cost) are these ratios in one run.
RATIOS = [
    ("nop", "rotel-blackhole", 3.0),
    ("hec-nogzip", "rotel-blackhole", 2.0),
    ("hec-gzip", "rotel-blackhole", None),
    ("file", "rotel-blackhole", 2.0),
    ("es", "rotel-blackhole", None),
    ("otlphttp", "rotel-otlp", 2.0),
    ("nop-grpc", "rotel-grpc", None),
    ("nop-h2", "nop", None),
    ("nop-grpc", "nop", None),
    ("disk", "nop", 0.8),
    ("disk-redact", "disk", None),
    ("disk-redact-seal", "disk", 0.5),
    ("file-disk-redact-seal", "file-disk", 0.5),
    ("disk-1c", "nop-1c", 0.8),
    ("es-nogzip", "hec-nogzip", None),
    ("datadog", "hec-gzip", None),
    ("sentinel", "hec-gzip", None),
    ("webhook", "hec-gzip", None),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))


def wait_for_port(port, process, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.002)
    return False


def wait_idle(pid):
    """Until the process spends under 5 ms of CPU in 250 ms: what the run cost is done."""
    last = cpu_seconds(pid)
    for _ in range(240):
        time.sleep(0.25)
        now = cpu_seconds(pid)
        if now - last < 0.005:
            return now
        last = now
    return last


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = os.environ.get("SLUICE_BENCH_BIN", os.path.join(ROOT, ".build/release/sluice"))
        self.requests = int(os.environ.get("BENCH_REQUESTS", "500"))
        self.connections = int(os.environ.get("BENCH_CONNECTIONS", "4"))
        self.rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
        self.latency_seconds = float(os.environ.get("BENCH_LATENCY_SECONDS", "4"))
        wanted = os.environ.get("BENCH_CASES", "").split()
        self.cases = [c for c in CASES if (c.name in wanted) or (not wanted and not c.extra) or wanted == ["all"]]
        self.work = tempfile.mkdtemp(prefix="sluice-bench-")
        self.payload = os.path.join(self.work, "payload.pb")
        subprocess.run([os.path.join(ROOT, ".build/release/sluice-bench"), "--write-payload", self.payload], check=True)
        message = open(self.payload, "rb").read()
        self.grpc_payload = os.path.join(self.work, "payload.grpc")
        open(self.grpc_payload, "wb").write(struct.pack(">BI", 0, len(message)) + message)
        self.port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.rotel = self.setup_rotel() if any(c.rotel for c in self.cases) else None

    # MARK: the peers

    def setup_rotel(self):
        """Rotel from PyPI in .build/rotel-venv (installed once, by version)."""
        venv = os.path.join(ROOT, ".build/rotel-venv")
        version = os.environ.get("ROTEL_VERSION", "0.0.1a15")
        pip = os.path.join(venv, "bin/pip")
        installed = os.path.exists(pip) and f"Version: {version}" in subprocess.run(
            [pip, "show", "rotel"], capture_output=True, text=True).stdout
        if not installed:
            if subprocess.run([sys.executable, "-m", "venv", venv]).returncode != 0 or subprocess.run(
                    [pip, "install", "-q", "--disable-pip-version-check", f"rotel=={version}"]).returncode != 0:
                print("rotel could not be installed: the Rotel cases are skipped")
                return None
        for base, _, files in os.walk(venv):
            if "rotel-agent" in files:
                return os.path.join(base, "rotel-agent")
        return None

    def start_sink(self, case, arrivals):
        """(process, ports) of the case's destination; None where it has none."""
        if case.sink in ("hec", "es", "otlp"):
            command = [sys.executable, os.path.join(ROOT, "Benchmarks/sink.py"), case.sink, arrivals]
        elif case.sink in ("datadog", "sentinel", "webhook"):
            command = [sys.executable, os.path.join(ROOT, "Benchmarks/destination_sink.py"), case.sink]
        else:
            return None, []
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return process, [int(p) for p in process.stdout.readline().split()]

    def config(self, case, sink_ports):
        sink = sink_ports[0] if sink_ports else 0
        entra = sink_ports[1] if len(sink_ports) > 1 else 0
        queue = "sending_queue: {storage: file_storage}" if case.storage else ""
        return f"""receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{self.port}
      grpc:
        endpoint: 127.0.0.1:{self.grpc_port}
processors:
  batch:
    send_batch_size: 8192
    timeout: 200ms
  redaction:
    allow_all_keys: true
  integrity:
    chain: true
exporters:
  nop:
    {queue}
  splunk_hec:
    endpoint: http://127.0.0.1:{sink}
    token: bench-token
    sourcetype: ai:gateway:audit
  splunk_hec/nogzip:
    endpoint: http://127.0.0.1:{sink}
    token: bench-token
    sourcetype: ai:gateway:audit
    disable_compression: true
  splunk_hec/tier:
    endpoint: http://127.0.0.1:{sink}
    token: bench-token
    sourcetype: ai:gateway:audit
    sending_queue: {{storage: file_storage}}
  elasticsearch:
    endpoint: http://127.0.0.1:{sink}
    mapping: {{mode: raw}}
    logs_index: siem-events-%{{+yyyy.MM.dd}}
  elasticsearch/nogzip:
    endpoint: http://127.0.0.1:{sink}
    compression: none
    mapping: {{mode: raw}}
  otlphttp:
    endpoint: http://127.0.0.1:{sink}
  datadog:
    api: {{key: bench-key}}
    logs: {{endpoint: "http://127.0.0.1:{sink}", max_age: 0s}}
  sentinel:
    endpoint: http://127.0.0.1:{sink}
    dcr_immutable_id: dcr-bench
    stream_name: Custom-Bench_CL
    tenant_id: bench-tenant
    client_id: bench-client
    client_secret: bench-secret
    authority_host: http://127.0.0.1:{entra}
  webhook:
    endpoint: http://127.0.0.1:{sink}/hooks/sluice
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
  file:
    path: {self.work}/out.jsonl
    rotation:
      max_megabytes: 100000
    {queue}
extensions:
  file_storage:
    directory: {self.work}/storage
    fsync: {case.storage or "interval"}
service:
  extensions: [file_storage]
  telemetry:
    metrics:
      address: 127.0.0.1:{self.metrics_port}
  pipelines:
    logs:
      receivers: [otlp]
      processors: [{case.processors}]
      exporters: [{case.exporter}]
"""

    def metrics(self):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        totals = {}
        for line in text.splitlines():
            m = re.match(r'^(sluice_\w+)\{[^}]*signal="logs"[^}]*\}\s+(\S+)', line)
            if m:
                totals[m.group(1)] = totals.get(m.group(1), 0) + float(m.group(2))
        return totals

    # MARK: one run

    def h2load(self, case, requests, port, rps=None, log=None):
        body, path, content_type = self.payload, "/v1/logs", "application/x-protobuf"
        mode = ["--h1"] if case.protocol == "h1" else []
        if case.protocol == "grpc":
            body, path, content_type = self.grpc_payload, "/opentelemetry.proto.collector.logs.v1.LogsService/Export", "application/grpc"
            mode = ["-H", "te: trailers"]
            port = self.grpc_port
        connections = min(requests, case.connections or self.connections)
        command = ["h2load", *mode, "-n", str(requests), "-c", str(connections), "-d", body,
                   "-H", f"Content-Type: {content_type}", f"http://127.0.0.1:{port}{path}"]
        if rps:
            command[1:1] = ["--rps", str(rps)]
        if log:
            command[1:1] = ["--log-file", log]
        output = subprocess.run(command, capture_output=True, text=True).stdout
        statuses = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
        return int(statuses.group(1)) if statuses else 0, output

    def load(self, case, requests):
        """The throughput load: the retrying client over HTTP/1.1, h2load for h2c and gRPC
        (into nop, which is never full). (2xx requests, requests answered 429/503)."""
        if case.protocol == "h1":
            client = RetryingClient(self.port, open(self.payload, "rb").read(), requests, case.connections or self.connections)
            return client.ok, client.retries
        return self.h2load(case, requests, self.port)[0], 0

    def run(self, case, requests, rps=None):
        """One fresh process through one load; a dict of what was measured."""
        shutil.rmtree(os.path.join(self.work, "storage"), ignore_errors=True)
        out_file = os.path.join(self.work, "out.jsonl")
        if os.path.exists(out_file):
            os.remove(out_file)
        arrivals = os.path.join(self.work, f"{case.name}.arrivals")
        sink, sink_ports = self.start_sink(case, arrivals)
        log_path = os.path.join(self.work, f"{case.name}.log")
        if case.rotel:
            endpoint = ["--otlp-exporter-endpoint", f"http://127.0.0.1:{sink_ports[0]}"] if sink_ports else []
            command = [self.rotel, "start", *case.rotel, *endpoint, "--otlp-http-endpoint", f"127.0.0.1:{self.port}",
                       "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}"]
        else:
            config = os.path.join(self.work, f"{case.name}.yaml")
            open(config, "w").write(self.config(case, sink_ports))
            command = [self.bin, "--config", config, "--data-directory", os.path.join(self.work, "data")]
        process = subprocess.Popen(command, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
        tailer = FileTailer(out_file) if case.sink == "file" else None
        try:
            if not wait_for_port(self.port, process):
                sys.exit(f"{case.name}: the collector did not start:\n" + open(log_path).read())
            before = cpu_seconds(process.pid)
            start = time.time()
            request_log = os.path.join(self.work, f"{case.name}.h2load-log") if rps else None
            if rps:
                ok, refused = self.h2load(case, requests, self.port, rps=rps, log=request_log)[0], 0
            else:
                ok, refused = self.load(case, requests)
            delivered = self.wait_delivered(case, ok, sink, sink_ports[0] if sink_ports else None)
            end = time.time()
            after = wait_idle(process.pid)
            peak = peak_rss_kib(process.pid)
            if not case.rotel:
                totals = self.metrics()
                counted = "sluice_receiver_accepted_items_total" if case.exporter == "nop" else "sluice_exporter_sent_items_total"
                delivered = totals.get(counted, 0)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
            if sink:
                sink.stdin.close()
                sink.wait(30)
            if tailer:
                tailer.stop()
        cpu = max(after - before, 0.001)
        result = {"requests_sent": requests, "requests_ok": ok, "answers_429_503": refused, "records_delivered": int(delivered),
                  "records_per_cpu_second": delivered / cpu, "records_per_second": delivered / max(end - start, 0.001),
                  "cpu_seconds": cpu, "peak_rss_mib": peak / 1024}
        if rps:
            result["latency"] = self.latency(case, request_log, tailer.arrivals if tailer else arrivals)
        return result

    def wait_delivered(self, case, ok, sink, sink_port):
        """Until every record the collector took has reached the destination (at most
        five minutes); for Rotel, what it delivered (the sink's count, or 2xx)."""
        if case.rotel and not sink:
            return ok * RECORDS_PER_REQUEST
        if case.exporter == "nop" and not case.rotel:
            return 0
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if case.rotel:
                # Rotel has no such counters: the sink's count of what arrived.
                count = int(urllib.request.urlopen(f"http://127.0.0.1:{sink_port}/count", timeout=5).read())
                if count >= ok * RECORDS_PER_REQUEST:
                    return count
                time.sleep(0.05)
                continue
            totals = self.metrics()
            accepted = totals.get("sluice_receiver_accepted_items_total", 0)
            done = totals.get("sluice_exporter_sent_items_total", 0) + totals.get("sluice_exporter_dead_lettered_items_total", 0)
            if accepted > 0 and done >= accepted:
                break
            time.sleep(0.05)
        if case.rotel:
            return int(urllib.request.urlopen(f"http://127.0.0.1:{sink_port}/count", timeout=5).read())
        return 0

    def latency(self, case, request_log, arrivals):
        """p99 and median in milliseconds: request start → last record at the sink, or → 2xx."""
        rows = sorted(tuple(map(int, line.split("\t")[:3])) for line in open(request_log) if line.strip())
        if case.sink is None:
            durations = sorted(d / 1000 for _, status, d in rows if 200 <= status < 300)
            kind = "ack"
        else:
            if isinstance(arrivals, str):
                arrivals = [tuple(map(int, line.split())) for line in open(arrivals)] if os.path.exists(arrivals) else []
            arrivals.sort()
            durations, total, k = [], 0, 0
            ok_starts = [start for start, status, _ in rows if 200 <= status < 300]
            for at, records in arrivals:
                total += records
                while k < len(ok_starts) and (k + 1) * RECORDS_PER_REQUEST <= total:
                    durations.append((at - ok_starts[k]) / 1000)
                    k += 1
            durations.sort()
            kind = "sink"
        if not durations:
            return {"kind": kind, "requests": 0}
        return {"kind": kind, "requests": len(durations), "p50_ms": durations[len(durations) // 2],
                "p99_ms": durations[min(len(durations) - 1, int(len(durations) * 0.99))]}

    # MARK: the whole run

    def capacity(self):
        """Records the default memory log (64 MiB) takes before it answers 429, with an
        exporter that cannot deliver (nothing listens at its endpoint), and the
        process's RSS holding them."""
        config = os.path.join(self.work, "capacity.yaml")
        dead = free_port()
        open(config, "w").write(f"""receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{self.port}
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{dead}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{self.metrics_port}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [otlphttp]
""")
        process = subprocess.Popen([self.bin, "--config", config, "--data-directory", os.path.join(self.work, "data")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not wait_for_port(self.port, process):
                return None
            body = open(self.payload, "rb").read()
            head = (f"POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            accepted = 0
            with socket.create_connection(("127.0.0.1", self.port)) as sock:
                for _ in range(2000):
                    sock.sendall(head + body)
                    status, _, _ = RetryingClient.read_response(sock, b"")
                    if status != 200:
                        break
                    accepted += 1
            time.sleep(0.5)
            return {"records_before_429": accepted * RECORDS_PER_REQUEST, "rss_mib": rss_kib(process.pid) / 1024,
                    "peak_rss_mib": peak_rss_kib(process.pid) / 1024}
        finally:
            process.kill()  # what it holds is the benchmark's, and undeliverable
            process.wait(30)

    def startup(self, runs=5):
        """The default collector.yaml (its ports moved to free ones, its files into the
        work folder): milliseconds from exec until the OTLP/HTTP port accepts, and RSS
        after two idle seconds; Rotel (blackhole) the same way. Medians of `runs`."""
        text = open(os.path.join(ROOT, "collector.yaml")).read()
        for port in ("4317", "4318", "13133", "8888"):
            text = text.replace(f"localhost:{port}", f"localhost:{self.port if port == '4318' else free_port()}")
        config = os.path.join(self.work, "default.yaml")
        open(config, "w").write(text)
        figures = {}
        commands = {"sluice": [self.bin, "--config", config]}
        if self.rotel:
            commands["rotel"] = [self.rotel, "start", "--exporter", "blackhole", "--otlp-http-endpoint", f"127.0.0.1:{self.port}",
                                 "--otlp-grpc-endpoint", f"127.0.0.1:{free_port()}"]
        for name, command in commands.items():
            starts, rss = [], []
            for _ in range(runs):
                begin = time.monotonic()
                process = subprocess.Popen(command, cwd=self.work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    if not wait_for_port(self.port, process):
                        break
                    starts.append((time.monotonic() - begin) * 1000)
                    time.sleep(2)
                    rss.append(rss_kib(process.pid) / 1024)
                finally:
                    process.terminate()
                    process.wait(30)
            if starts:
                figures[name] = {"start_ms": statistics.median(starts), "idle_rss_mib": statistics.median(rss)}
        return figures

    def decode_loop(self):
        """sluice-bench: decode and encode loops on one core (taskset -c 0), its rows kept for the JSON."""
        command = [os.path.join(ROOT, ".build/release/sluice-bench")]
        if shutil.which("taskset"):
            command[:0] = ["taskset", "-c", "0"]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        print(output, end="", flush=True)
        rows = {}
        for line in output.splitlines():
            m = re.match(r"^(\S.*?)\s+([\d.]+) MB/s\s+([\d.]+) records/s\s+([\d.]+) µs/request", line)
            if m:
                rows[m.group(1)] = {"mb_per_second": float(m.group(2)), "records_per_second": float(m.group(3)),
                                    "us_per_request": float(m.group(4))}
            elif ":" in line and not line.startswith("payload"):
                name, value = line.split(":", 1)
                rows[name.strip()] = value.strip()
        return rows

    def main(self):
        started = time.time()
        self.loops = self.decode_loop() if os.environ.get("BENCH_DECODE", "1") != "0" else {}
        self.idle = self.startup()
        for name, f in self.idle.items():
            print(f"{name}, default configuration: {f['start_ms']:.0f} ms until the OTLP/HTTP port accepts, idle RSS {f['idle_rss_mib']:.1f} MiB (median of 5)")
        self.held = self.capacity()
        if self.held:
            print(f"default memory log (64 MiB), exporter down: {self.held['records_before_429']:,} records taken before 429, "
                  f"RSS {self.held['rss_mib']:.0f} MiB holding them (peak {self.held['peak_rss_mib']:.0f} MiB)", flush=True)
        print(f"runtime: {self.requests} requests of {RECORDS_PER_REQUEST} log records ({os.path.getsize(self.payload)} bytes protobuf), "
              f"h2load -c {self.connections} (HTTP/1.1 unless h2 or grpc), release build, {self.rounds} rounds", flush=True)
        for _ in range(self.rounds):
            for case in self.cases:
                if case.rotel and not self.rotel:
                    continue
                case.runs.append(self.run(case, self.requests))
        for case in self.cases:
            if not case.runs:
                continue
            half = statistics.median(r["records_per_second"] for r in case.runs) / 2
            rps_total = max(1, half / RECORDS_PER_REQUEST)
            connections = case.connections or self.connections
            per_client = max(1, round(rps_total / connections))
            requests = max(connections * 10, min(1000, int(per_client * connections * self.latency_seconds)))
            paced = self.run(case, requests, rps=per_client)
            case.latency = paced["latency"]
            case.latency["rate_records_per_second"] = per_client * connections * RECORDS_PER_REQUEST
            # Below the peak nothing queues up: what a record costs when the
            # collector keeps up, as a sidecar usually does.
            case.latency["records_per_cpu_second"] = paced["records_per_cpu_second"]
            case.latency["peak_rss_mib"] = paced["peak_rss_mib"]
        self.report(time.time() - started)

    def summary(self, case):
        runs = case.runs
        return {
            "records_per_cpu_second": statistics.median(r["records_per_cpu_second"] for r in runs),
            "records_per_second": statistics.median(r["records_per_second"] for r in runs),
            "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
            "requests_ok": statistics.median(r["requests_ok"] for r in runs),
            "records_delivered": statistics.median(r["records_delivered"] for r in runs),
            "latency": case.latency, "runs": runs,
        }

    def ratio(self, name, base):
        a = next((c for c in self.cases if c.name == name and c.runs), None)
        b = next((c for c in self.cases if c.name == base and c.runs), None)
        if not a or not b:
            return None
        per_round = [x["records_per_cpu_second"] / y["records_per_cpu_second"] for x, y in zip(a.runs, b.runs)]
        result = {"median": statistics.median(per_round), "min": min(per_round), "max": max(per_round)}
        if (a.latency or {}).get("records_per_cpu_second") and (b.latency or {}).get("records_per_cpu_second"):
            result["at_half_rate"] = a.latency["records_per_cpu_second"] / b.latency["records_per_cpu_second"]
        return result

    def report(self, seconds):
        print(f"{'case':<16}{'delivered':>10}{'records/CPU-s':>15}{'records/s':>11}{'peak RSS':>10}{'p99 (p50) ms at half rate':>30}"
              f"{'records/CPU-s at half rate':>28}")
        out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
               "requests": self.requests, "connections": self.connections, "rounds": self.rounds,
               "seconds": round(seconds), "loops": self.loops, "idle": self.idle, "memory_log": self.held, "cases": {}, "ratios": []}
        for case in self.cases:
            if not case.runs:
                continue
            s = self.summary(case)
            out["cases"][case.name] = s
            lat = case.latency or {}
            latency = (f"{lat['p99_ms']:8.1f} ({lat['p50_ms']:.1f}) {lat['kind']} @{lat['rate_records_per_second'] / 1000:.0f}k/s"
                       if lat.get("requests") else "-")
            half = f"{lat['records_per_cpu_second'] / 1000:.0f}k" if lat.get("records_per_cpu_second") else "-"
            print(f"{case.name:<16}{s['records_delivered'] / 1000:>9.0f}k{s['records_per_cpu_second'] / 1000:>14.0f}k"
                  f"{s['records_per_second'] / 1000:>10.0f}k{s['peak_rss_mib']:>7.1f} MiB{latency:>30}{half:>28}")
        for name, base, target in RATIOS:
            r = self.ratio(name, base)
            if not r:
                continue
            mark = "" if target is None else (f"  target >= {target}: " + ("met" if r["median"] >= target else "MISSED"))
            half = f", {r['at_half_rate']:.2f}x at half rate" if "at_half_rate" in r else ""
            print(f"{name:>12} / {base:<16} {r['median']:5.2f}x records per CPU-second (rounds {r['min']:.2f}-{r['max']:.2f}){half}{mark}")
            out["ratios"].append({"case": name, "base": base, "target": target, **r})
        print(f"({len([c for c in self.cases if c.runs])} cases, {round(seconds)} s)")
        if self.args.json:
            with open(self.args.json, "w") as f:
                json.dump(out, f, indent=1)


class RetryingClient:
    """An OTLP/HTTP client as an SDK's exporter behaves: keep-alive connections, each
    sending its next request when the last is answered, and a request answered 429 or
    503 (the pipeline log is full) sent again after a short pause, so every request is
    delivered in the end and a run measures the collector at its own pace."""

    def __init__(self, port, body, requests, connections, backoff=0.02):
        head = (f"POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-protobuf\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.port, self.request, self.backoff = port, head + body, backoff
        self.remaining, self.lock = requests, threading.Lock()
        self.ok = self.retries = self.failed = 0
        threads = [threading.Thread(target=self.connection) for _ in range(min(connections, requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def take(self):
        with self.lock:
            if self.remaining == 0:
                return False
            self.remaining -= 1
            return True

    def connection(self):
        sock, buffer = None, b""
        while self.take():
            while True:
                if sock is None:
                    sock, buffer = socket.create_connection(("127.0.0.1", self.port)), b""
                try:
                    sock.sendall(self.request)
                    status, close, buffer = self.read_response(sock, buffer)
                except OSError:
                    sock.close()
                    sock = None
                    time.sleep(self.backoff)
                    continue
                if close:
                    sock.close()
                    sock = None
                with self.lock:
                    if 200 <= status < 300:
                        self.ok += 1
                    elif status in (429, 503):
                        self.retries += 1
                    else:
                        self.failed += 1
                if status not in (429, 503):
                    break
                time.sleep(self.backoff)
        if sock:
            sock.close()

    @staticmethod
    def read_response(sock, buffer):
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
        length = int(headers.get("content-length", "0"))
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buffer += chunk
        return int(lines[0].split(" ")[1]), headers.get("connection", "").lower() == "close", buffer[length:]


class FileTailer:
    """The file exporter's output as a destination: each complete line's records
    (one per `observedTimeUnixNano` in the benchmark's payload) with the time they
    were seen, polled every 2 ms."""

    def __init__(self, path):
        self.path, self.arrivals, self.running = path, [], True
        self.thread = threading.Thread(target=self.follow, daemon=True)
        self.thread.start()

    def follow(self):
        handle, pending = None, b""
        while self.running:
            if handle is None and os.path.exists(self.path):
                handle = open(self.path, "rb")
            chunk = handle.read() if handle else b""
            if chunk:
                pending += chunk
                cut = pending.rfind(b"\n") + 1
                if cut:
                    records = pending[:cut].count(b'"observedTimeUnixNano"')
                    pending = pending[cut:]
                    if records:
                        self.arrivals.append((time.time_ns() // 1000, records))
            else:
                time.sleep(0.002)

    def stop(self):
        self.running = False
        self.thread.join()


def machine():
    model = ""
    try:
        model = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read()).group(1)
    except (OSError, AttributeError):
        pass
    return f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write every figure to this file as JSON")
    Bench(parser.parse_args()).main()
