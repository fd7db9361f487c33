"""Hardening at the edge (issue 19), against the real binary over real sockets:
slow and idle connections on every port, a connection flood under a low
`ulimit -n`, the default bind addresses, a destination that echoes credentials,
the modes of the files Sluice writes under umask 000, and the HTTP/1.1 details of
RFC 9112.

Nothing here asserts how fast the host is: deadlines are waited for with generous
limits, and the timings printed are for the closing note, not assertions."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import resource
import selectors
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import runtime_helpers as rt
from conftest import SLUICE_BIN
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _logs_body(event_id: str = "evt-edge-1") -> bytes:
    message = ExportLogsServiceRequest()
    record = message.resource_logs.add().scope_logs.add().log_records.add()
    record.time_unix_nano = 1763712000000000000
    record.body.string_value = "request blocked"
    record.attributes.add(key="event_id").value.string_value = event_id
    return message.SerializeToString()


# ----------------------------------------------------------------------------
# Many connections from one thread


class Flood:
    """Client connections held open from one thread: idle ones send nothing, slow
    ones trickle a request a byte at a time (slowloris: an HTTP/1.1 head, or the
    HTTP/2 preface). Records, per connection, whether and how the server closed
    it."""

    def __init__(self, tick: float = 0.5):
        self.tick = tick
        self.selector = selectors.DefaultSelector()
        self.conns: dict[socket.socket, dict] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def open(self, port: int, count: int, kind: str, group: str) -> None:
        """`kind`: idle, slow (HTTP/1.1 head), slow-h2 (the HTTP/2 preface)."""
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            if kind == "slow":
                pending = b"POST /v1/logs HTTP/1.1\r\nHost: edge\r\nX-Slow: "
            elif kind == "slow-h2":
                pending = H2_PREFACE
            else:
                pending = b""
            with self.lock:
                self.conns[s] = {"kind": kind, "group": group, "pending": pending, "sent": 0, "answer": b"", "closed": None}
                self.selector.register(s, selectors.EVENT_READ)

    def start(self) -> Flood:
        self.thread.start()
        return self

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self.stop.is_set():
            for key, _ in self.selector.select(timeout=0.05):
                self._read(key.fileobj)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick
                with self.lock:
                    conns = list(self.conns.items())
                for s, c in conns:
                    if c["closed"] is not None or c["kind"] == "idle":
                        continue
                    # One byte per tick: the head never completes (an endless header
                    # value), the h2 preface takes 12 s for its 24 bytes.
                    byte = c["pending"][c["sent"]:c["sent"] + 1] or b"a"
                    try:
                        if s.send(byte) == 1:
                            c["sent"] += 1
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._closed(s, "reset")

    def _read(self, s: socket.socket) -> None:
        c = self.conns[s]
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._closed(s, "reset")
            return
        if data:
            c["answer"] += data
        else:
            self._closed(s, "closed")

    def _closed(self, s: socket.socket, how: str) -> None:
        c = self.conns[s]
        if c["closed"] is None:
            c["closed"] = (how, time.monotonic())
            try:
                self.selector.unregister(s)
            except (KeyError, ValueError):
                pass

    def closed(self, group: str) -> int:
        with self.lock:
            return sum(1 for c in self.conns.values() if c["group"] == group and c["closed"] is not None)

    def answered(self, group: str, status: bytes) -> int:
        with self.lock:
            return sum(1 for c in self.conns.values() if c["group"] == group and c["answer"].startswith(b"HTTP/1.1 " + status))

    def count(self, group: str) -> int:
        with self.lock:
            return sum(1 for c in self.conns.values() if c["group"] == group)

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        for s in list(self.conns):
            s.close()
        self.selector.close()


class NormalClient:
    """A well-behaved OTLP/HTTP client on a new connection each time, in the
    background and in a process of its own (steady_client.py), recording every
    outcome: (status or error, seconds to the answer), when each started and how
    long its TCP handshake took."""

    def __init__(self, url: str, pause: float = 0.2):
        self.url = url
        self.pause = pause
        self.outcomes: list[tuple[object, float]] = []
        self.started: list[float] = []
        self.connect_seconds: list[float | None] = []
        self.process: subprocess.Popen | None = None
        self.reader = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        assert self.process and self.process.stdout
        for line in self.process.stdout:
            record = json.loads(line)
            self.started.append(record["started"])
            self.connect_seconds.append(record["connect"])
            self.outcomes.append((record["status"], record["seconds"]))

    def __enter__(self) -> NormalClient:
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("steady_client.py")), self.url, str(self.pause),
                                         _logs_body().hex()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.reader.start()
        return self

    def __exit__(self, *exc) -> None:
        assert self.process and self.process.stdin
        self.process.stdin.close()  # it stops after the request under way
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=10)

    def failures(self) -> list:
        return [outcome for outcome, _ in self.outcomes if outcome != 200]

    def slowest(self) -> float:
        return max((seconds for _, seconds in self.outcomes), default=0.0)


def _every_port_config(ports, header_timeout: str = "2s", extra_http: dict | None = None):
    return {
        "receivers": {"otlp": {"protocols": {
            "http": {"endpoint": ports.address("otlp"), "read_header_timeout": header_timeout, **(extra_http or {})},
            "grpc": {"endpoint": ports.address("grpc")},
        }}},
        "exporters": {"nop": {}},
        "extensions": {"health_check": {"endpoint": ports.address("health")}},
        "service": {
            "extensions": ["health_check"],
            "telemetry": {"metrics": {"address": ports.address("metrics")}},
            "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["nop"]}},
        },
    }


def _warnings(process, text: str) -> list[dict]:
    return [line for line in process.log_lines() if line.get("level") in ("warn", "warning") and text in line.get("msg", "")]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _raise_own_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the test client needs {needed} descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _nofile(limit: int):
    def preexec():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    return preexec


# ----------------------------------------------------------------------------
# Slow and idle connections on every port


def test_slowloris_and_idle_connections_on_every_port_are_cut_at_the_header_deadline(tmp_path, track_sluice):
    _raise_own_fd_limit(4096)
    process = rt.start_sluice(tmp_path, lambda ports: _every_port_config(ports), track_sluice)
    ports = process.ports
    flood = Flood()
    try:
        for name in ("otlp", "grpc", "metrics", "health"):
            flood.open(ports[name], 100, "slow", f"slow-{name}")
            flood.open(ports[name], 50, "idle", f"idle-{name}")
        flood.open(ports["grpc"], 20, "slow-h2", "slow-h2-grpc")
        flood.start()
        started = time.monotonic()
        with NormalClient(ports.url("otlp", "/v1/logs")) as client:
            # The OTLP port's header deadline is 2 s; the others' the default 10 s.
            rt.wait_until(lambda: all(flood.closed(f"{kind}-{name}") == flood.count(f"{kind}-{name}")
                                      for kind in ("slow", "idle") for name in ("otlp", "grpc", "metrics", "health"))
                          and flood.closed("slow-h2-grpc") == 20, 90, poll=0.2,
                          what="every slow and idle connection closed by its header deadline")
        elapsed = time.monotonic() - started
        assert client.outcomes and not client.failures(), client.failures()[:5]
        print(f"\nslowloris: 600 connections closed within {elapsed:.1f}s; {len(client.outcomes)} normal requests, "
              f"slowest {client.slowest():.2f}s")
        for name in ("otlp", "grpc", "metrics", "health"):
            # A request that had begun is told why.
            assert flood.answered(f"slow-{name}", b"408") == 100, (name, flood.answered(f"slow-{name}", b"408"))
    finally:
        flood.close()
    samples = rt.scrape(ports.url("metrics", "/metrics"))
    listener = "otlp:http"
    assert rt.metric(samples, "sluice_server_connections_closed_total", listener=listener, reason="header_timeout") >= 150
    assert rt.metric(samples, "sluice_server_connections_closed_total", listener="telemetry", reason="header_timeout") >= 150
    # Said once per listener, not once per connection.
    said = _warnings(process, "did not send its request headers within read_header_timeout")
    by_listener = {}
    for line in said:
        by_listener[line["listener"]] = by_listener.get(line["listener"], 0) + 1
    assert by_listener == {"otlp:http": 1, "otlp:grpc": 1, "telemetry": 1, "health_check": 1}, by_listener
    assert process.stop(timeout=30) == 0


# ----------------------------------------------------------------------------
# A flood under a low ulimit -n


def test_a_connection_flood_under_a_low_ulimit_leaves_otlp_answering(tmp_path, track_sluice):
    _raise_own_fd_limit(4096)
    # 256 descriptors: the process's connection budget is 192.
    process = rt.start_sluice(tmp_path, lambda ports: _every_port_config(ports, header_timeout="30s",
                                                                          extra_http={"max_connections": 60}),
                              track_sluice, preexec=_nofile(256))
    ports = process.ports
    metrics_url = ports.url("metrics", "/metrics")
    flood = Flood()
    try:
        flood.start()
        # Under the limit: 40 idle connections on the OTLP port (max_connections 60)
        # stay open and normal requests are answered beside them.
        flood.open(ports["otlp"], 40, "idle", "under-limit")
        with NormalClient(ports.url("otlp", "/v1/logs")) as client:
            rt.wait_until(lambda: len(client.outcomes) >= 10, 60, what="normal requests beside 40 idle connections")
        assert not client.failures(), client.failures()[:5]
        assert flood.closed("under-limit") == 0
        assert rt.metric(rt.scrape(metrics_url), "sluice_server_connections_closed_total", listener="otlp:http", reason="evicted") == 0

        # Over it: 600 connections to the metrics port (the issue's flood) and 300
        # slow ones to the OTLP port, far past the descriptors the process has.
        cpu_before = _cpu_seconds(process.pid)
        flood_started = time.monotonic()
        with NormalClient(ports.url("otlp", "/v1/logs")) as client:
            flood.open(ports["metrics"], 600, "idle", "flood-metrics")
            flood.open(ports["otlp"], 300, "slow", "flood-otlp")
            rt.wait_until(lambda: len(client.outcomes) >= 30, 120, what="normal requests during the flood")
        flood_seconds = time.monotonic() - flood_started
        cpu = _cpu_seconds(process.pid) - cpu_before
        assert not client.failures(), client.failures()[:5]
        print(f"\nflood under ulimit -n 256: {len(client.outcomes)} normal requests all 200, slowest {client.slowest():.2f}s; "
              f"sluice used {cpu:.2f} CPU-seconds in {flood_seconds:.1f}s")
        process.check_alive("the flood")
    finally:
        flood.close()
    # After the flood: answered again (the deadline is a guard, not a measurement).
    rt.wait_until(lambda: rt.post(ports.url("otlp", "/v1/logs"), _logs_body(), timeout=20).status == 200, 30,
                  what="a normal request after the flood")
    samples = rt.scrape(metrics_url)
    evicted = sum(rt.metric(samples, "sluice_server_connections_closed_total", listener=name, reason="evicted")
                  for name in ("otlp:http", "telemetry"))
    assert evicted > 0
    # The listeners without max_connections share what the configured one leaves of
    # the 192 connections ulimit -n 256 allows: the metrics flood closed the metrics
    # port's own connections.
    assert rt.metric(samples, "sluice_server_max_connections", listener="otlp:http") == 60
    assert rt.metric(samples, "sluice_server_max_connections", listener="telemetry") == (192 - 60) // 3
    said = _warnings(process, "connection limit reached")
    assert 1 <= len(said) <= 2, [line["msg"] for line in said]  # once per listener that hit it
    assert not _warnings(process, "cannot accept connections") or len(_warnings(process, "cannot accept connections")) <= 2
    assert process.stop(timeout=30) == 0


def test_max_connections_past_what_ulimit_allows_is_warned_about_with_the_numbers(tmp_path, track_sluice):
    # ulimit -n 256 leaves 192 descriptors for connections; 500 on one listener cannot be backed.
    process = rt.start_sluice(tmp_path, lambda ports: _every_port_config(ports, extra_http={"max_connections": 500}),
                              track_sluice, preexec=_nofile(256))
    said = _warnings(process, "max_connections of the listeners add up to")
    assert len(said) == 1, said
    assert "otlp:http 500" in said[0]["msg"] and "raise ulimit -n" in said[0]["msg"], said[0]["msg"]
    assert (said[0]["process_connection_budget"], said[0]["rlimit_nofile"]) == ("192", "256"), said[0]
    # The listeners without a limit of their own keep a minimum share.
    samples = rt.scrape(process.ports.url("metrics", "/metrics"))
    assert rt.metric(samples, "sluice_server_max_connections", listener="otlp:http") == 500
    assert rt.metric(samples, "sluice_server_max_connections", listener="telemetry") == 16
    assert process.stop(timeout=30) == 0


class ListenQueue:
    """The kernel's accept queue of a listening port, sampled in the background with
    `ss -ltn` (for a listening socket Recv-Q is the connections waiting for accept,
    Send-Q the backlog): its peak against its capacity. While it never fills, the
    kernel dropped no SYN to the port for want of room there, so a handshake that
    took a second or more had its SYN lost elsewhere in the host's network stack,
    not at Sluice's socket."""

    def __init__(self, port: int, interval: float = 0.05):
        self.port = port
        self.interval = interval
        self.peak = 0
        self.capacity = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            out = subprocess.run(["ss", "-ltnH", f"sport = :{self.port}"], capture_output=True, text=True).stdout.split()
            if len(out) >= 3:
                self.peak = max(self.peak, int(out[1]))
                self.capacity = int(out[2])

    def __enter__(self) -> ListenQueue:
        if shutil.which("ss") is None:
            pytest.skip("needs ss (iproute2) to watch the listen queue")
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def _optimized(binary: Path) -> bool:
    """Whether `binary` is a release build (SwiftPM puts those under .../release/)."""
    return "release" in binary.resolve().parts


@pytest.mark.skipif(not os.environ.get("SLUICE_E2E_FLOOD"), reason="the full flood of issue 19 (8,000 connections); set SLUICE_E2E_FLOOD=1")
def test_the_full_flood_of_issue_19(tmp_path, track_sluice):
    """Issue 19's Done-when: 1,000 slowloris and 1,000 idle connections against each
    port (OTLP/gRPC, OTLP/HTTP, metrics, health) of a process with `ulimit -n 1024`:
    a normal OTLP request is answered 200 within a second throughout, the log says
    what happened once, and CPU stays below one core.

    The second and the one core are the issue's own bounds, for the binary users run:
    asserted with SLUICE_BIN a release build, where the slowest answer took
    milliseconds (a host many times slower still passes). What the host's network
    stack does is kept apart: a request's time is split into its TCP handshake (the
    kernel's; a SYN lost on a busy host is resent a second later) and the answer after
    it (the wait in Sluice's accept queue and Sluice's work). The answer is held to
    the second, and the whole request too unless its handshake took a second while
    Sluice's accept queue never filled (the kernel dropped nothing there for want of
    room). A debug build's NIO spends about 0.3 ms on each connection, and a request
    waits behind the ~2,000 queued on its port: there the times are printed, and
    every request must still be answered 200 and the queue never fill."""
    _raise_own_fd_limit(12000)
    process = rt.start_sluice(tmp_path, lambda ports: _every_port_config(ports, header_timeout="10s"), track_sluice,
                              preexec=_nofile(1024))
    ports = process.ports
    optimized = _optimized(SLUICE_BIN)
    flood = Flood().start()
    try:
        with NormalClient(ports.url("otlp", "/v1/logs")) as client, ListenQueue(ports["otlp"]) as queue:
            rt.wait_until(lambda: len(client.outcomes) >= 1, 30, what="a normal request before the flood")
            cpu_before = _cpu_seconds(process.pid)
            started = time.monotonic()
            for name in ("otlp", "grpc", "metrics", "health"):
                flood.open(ports[name], 1000, "slow", f"slow-{name}")
                flood.open(ports[name], 1000, "idle", f"idle-{name}")
            opened = time.monotonic() - started
            # 30 s: the flood's first seconds, its connections cut at the 10 s header
            # deadline, and what comes after.
            cpu_per_second = []
            while time.monotonic() - started < 30:
                t0, c0 = time.monotonic(), _cpu_seconds(process.pid)
                time.sleep(1)
                cpu_per_second.append((_cpu_seconds(process.pid) - c0) / (time.monotonic() - t0))
            seconds = time.monotonic() - started
            cpu = _cpu_seconds(process.pid) - cpu_before
    finally:
        flood.close()
    # (seconds after the flood began, outcome, whole request, its handshake)
    during = [(at - started, outcome, took, connect or 0.0)
              for at, (outcome, took), connect in zip(client.started, client.outcomes, client.connect_seconds) if at + took >= started]
    slowest = max((took for _, _, took, _ in during), default=0.0)
    slowest_answer = max((took - connect for _, _, took, connect in during), default=0.0)
    resent = [d for d in during if d[3] >= 1.0]
    print(f"\nfull flood ({'release' if optimized else 'debug'} build, flood opened in {opened:.2f}s): {len(during)} normal requests, "
          f"{sum(1 for d in during if d[1] == 200)} answered 200, slowest {slowest:.3f}s (answer after the handshake {slowest_answer:.3f}s; "
          f"{len(resent)} handshakes of a second or more); OTLP accept queue peak {queue.peak} of {queue.capacity}; "
          f"CPU {cpu:.2f}s in {seconds:.1f}s = {cpu / seconds:.2f} cores average, busiest second {max(cpu_per_second):.2f}")
    print("slowest five (seconds after the flood began, outcome, seconds, of which handshake):",
          [(round(at, 2), outcome, round(took, 3), round(connect, 3)) for at, outcome, took, connect in sorted(during, key=lambda d: -d[2])[:5]])
    assert len(during) >= 50, len(during)
    assert not client.failures(), client.failures()[:5]
    assert 0 < queue.capacity and queue.peak < queue.capacity, (queue.peak, queue.capacity)
    assert cpu / seconds < 1.0
    if optimized:
        assert slowest_answer < 1.0, sorted(during, key=lambda d: -(d[2] - d[3]))[:5]
        assert all(took < 1.0 for _, _, took, connect in during if connect < 1.0), sorted(during, key=lambda d: -d[2])[:5]
        assert max(cpu_per_second) < 1.0, cpu_per_second

    # The log says what happened once: each warning at most once per listener, and
    # the limit reached on every listener.
    warnings = [(line["msg"], line.get("listener")) for line in process.log_lines() if line.get("level") in ("warn", "warning")]
    print(f"warnings logged: {len(warnings)}: {sorted(set(msg[:60] for msg, _ in warnings))}")
    assert len(warnings) == len(set(warnings)), warnings
    limit_reached = sorted(listener for msg, listener in warnings if msg.startswith("connection limit reached"))
    assert limit_reached == ["health_check", "otlp:grpc", "otlp:http", "telemetry"], limit_reached

    rt.wait_until(lambda: rt.post(ports.url("otlp", "/v1/logs"), _logs_body(), timeout=20).status == 200, 30,
                  what="a normal request after the flood")
    samples = rt.scrape(ports.url("metrics", "/metrics"))
    for name in ("otlp:http", "otlp:grpc", "telemetry", "health_check"):
        assert rt.metric(samples, "sluice_server_max_connections", listener=name) == 224  # (1024 - 128) / 4
    print("accept errors (EMFILE):", {name: rt.metric(samples, "sluice_server_accept_errors_total", listener=name)
                                      for name in ("otlp:http", "otlp:grpc", "telemetry", "health_check")})
    assert process.stop(timeout=30) == 0


# ----------------------------------------------------------------------------
# Default bind addresses


def _listening_in_own_network(tmp_path: Path, config_text: str) -> tuple[list[str], str]:
    """Runs sluice in a network namespace of its own (so the default ports are
    free whatever else runs here) and returns `ss -ltn`'s local addresses and
    sluice's log."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a network namespace of its own")
    config = tmp_path / "collector.yaml"
    config.write_text(config_text)
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    log = tmp_path / "sluice.log"
    script = f"""
ip link set lo up
"{SLUICE_BIN}" --config "{config}" --data-directory "{data}" --log-format json 2> "{log}" &
pid=$!
i=0
while [ $i -lt 1200 ] && ! grep -q '"msg":"sluice running"' "{log}"; do
  kill -0 $pid 2>/dev/null || break
  sleep 0.05; i=$((i+1))
done
ss -ltnH
kill -TERM $pid; wait $pid
"""
    result = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=180)
    text = log.read_text(errors="replace")
    assert '"msg":"sluice running"' in text, text[-3000:]
    addresses = [line.split()[3] for line in result.stdout.splitlines() if line.strip()]
    return addresses, text


def test_a_config_naming_no_endpoints_listens_on_loopback_only(tmp_path):
    addresses, log = _listening_in_own_network(tmp_path, """
receivers:
  otlp:
    protocols:
      grpc:
      http:
exporters:
  nop:
extensions:
  health_check:
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [nop]
""")
    print(f"\nss -ltn with no endpoints configured: {sorted(addresses)}")
    ports = sorted(int(a.rsplit(":", 1)[1]) for a in addresses)
    assert ports == [4317, 4318, 8888, 13133], addresses
    hosts = {a.rsplit(":", 1)[0] for a in addresses}
    assert hosts <= {"127.0.0.1", "[::1]"}, addresses
    assert "listens on every interface" not in log


def test_every_listener_on_all_interfaces_without_tls_and_auth_is_warned_about(tmp_path):
    addresses, log = _listening_in_own_network(tmp_path, """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
      http:
        endpoint: "[::]:4318"
exporters:
  nop:
extensions:
  health_check:
    endpoint: 0.0.0.0:13133
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: ":8888"
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [nop]
""")
    assert len(addresses) == 4, addresses
    warned = [json.loads(line)["listener"] for line in log.splitlines() if "listens on every interface" in line]
    assert sorted(warned) == ["extensions.health_check", "receivers.otlp.protocols.grpc", "receivers.otlp.protocols.http",
                              "service.telemetry.metrics"], warned


# ----------------------------------------------------------------------------
# A destination that echoes what it was sent


class EchoingDestination:
    """Refuses every request with 400 and a body quoting all its request headers,
    padded past any sane length: what a careless proxy or API gateway does."""

    def __init__(self):
        self.authorizations: list[str] = []
        destination = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                destination.authorizations.append(self.headers.get("Authorization", ""))
                echoed = "".join(f"{name}: {value}\n" for name, value in self.headers.items())
                body = ("bad request; you sent:\n" + echoed + "x" * 20000 + "\nagain: " + echoed).encode()
                self.send_response(400)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_credentials_a_destination_echoes_never_reach_the_log_status_metrics_or_dead_letters(tmp_path, track_sluice):
    echo = EchoingDestination()
    token, api_key, password, es_key, hec_token = "tok-7f3a9c2e5b", "key-41d8cd98f0", "pw-e3b0c44298", "es-a1b2c3d4e5", "hec-0f9e8d7c6b"
    basic = base64.b64encode(f"ingest:{password}".encode()).decode()
    secrets = [token, api_key, password, basic, es_key, hec_token]
    try:
        def config(ports):
            base = f"http://127.0.0.1:{echo.port}"
            return {
                "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
                "exporters": {
                    "otlp_http/headers": {"endpoint": base, "headers": {"Authorization": f"Bearer {token}", "X-Api-Key": api_key}},
                    "otlp_http/userinfo": {"endpoint": f"http://ingest:{password}@127.0.0.1:{echo.port}"},
                    "elasticsearch": {"endpoint": base, "api_key": es_key, "logs_index": "edge"},
                    "splunk_hec": {"endpoint": f"{base}/services/collector", "token": hec_token},
                },
                "service": {
                    "telemetry": {"metrics": {"address": ports.address("metrics")}},
                    "pipelines": {"logs": {"receivers": ["otlp"],
                                           "exporters": ["otlp_http/headers", "otlp_http/userinfo", "elasticsearch", "splunk_hec"]}},
                },
            }

        process = rt.start_sluice(tmp_path, config, track_sluice)
        assert rt.post(process.ports.url("otlp", "/v1/logs"), _logs_body()).status == 200
        dead = process.data_dir / "dead-letter"
        names = ["otlp_http_headers", "otlp_http_userinfo", "elasticsearch", "splunk_hec"]

        def all_dead_lettered():
            files = {p.name for p in dead.glob("*.ndjson")} if dead.exists() else set()
            return len(files) == 4 and all(p.read_text().endswith("\n") for p in dead.glob("*.ndjson"))

        rt.wait_until(all_dead_lettered, 60, what=f"dead letters of {names}")
        # The userinfo became Basic authentication, as Go's client sends it.
        assert f"Basic {basic}" in echo.authorizations
        status_text = rt.get(process.ports.url("metrics", "/status")).body.decode()
        metrics_text = rt.get(process.ports.url("metrics", "/metrics")).body.decode()
        letters = "".join(p.read_text() for p in dead.glob("*.ndjson"))
        places = {"log": process.stderr(), "/status": status_text, "/metrics": metrics_text, "dead letters": letters}
        for where, text in places.items():
            for secret in secrets:
                assert secret not in text, f"{secret!r} is in {where}"
        assert "[REDACTED]" in letters
        # Bounded: a 20 KB answer is not copied whole anywhere.
        for line in letters.splitlines():
            assert len(json.loads(line)["reason"]) < 1500
        for exporter in json.loads(status_text)["exporters"].values() if "exporters" in json.loads(status_text) else []:
            assert len(json.dumps(exporter)) < 4000
        assert "x" * 2000 not in process.stderr()
        assert process.stop(timeout=30) == 0
    finally:
        echo.close()


# ----------------------------------------------------------------------------
# File modes


def test_files_with_data_are_private_under_umask_000(tmp_path, track_sluice):
    echo = EchoingDestination()
    storage = tmp_path / "storage" / "nested"
    out = tmp_path / "out" / "sub" / "logs.jsonl"
    shared = tmp_path / "shared" / "x" / "logs.jsonl"
    try:
        def config(ports):
            return {
                "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
                "exporters": {
                    "file": {"path": str(out)},
                    "file/shared": {"path": str(shared), "file_mode": "0640", "directory_permissions": "0750"},
                    "otlp_http": {"endpoint": f"http://127.0.0.1:{echo.port}", "sending_queue": {"storage": "file_storage"}},
                },
                "extensions": {"file_storage": {"directory": str(storage)}},
                "service": {
                    "extensions": ["file_storage"],
                    "telemetry": {"metrics": {"address": ports.address("metrics")}},
                    "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["file", "file/shared", "otlp_http"]}},
                },
            }

        process = rt.start_sluice(tmp_path, config, track_sluice, preexec=lambda: os.umask(0))
        assert rt.post(process.ports.url("otlp", "/v1/logs"), _logs_body()).status == 200
        dead = process.data_dir / "dead-letter" / "otlp_http.ndjson"
        rt.wait_until(lambda: out.exists() and shared.exists() and dead.exists() and out.stat().st_size > 0, 60,
                      what="the file outputs and the dead letter")
        assert process.stop(timeout=30) == 0
    finally:
        echo.close()

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    checked = []
    for root, dirs, files in os.walk(tmp_path / "storage"):
        for d in dirs:
            checked.append((Path(root) / d, 0o700))
        for f in files:
            checked.append((Path(root) / f, 0o600))
    assert any(p.name.endswith(".seg") or "segment" in p.name or p.suffix for p, _ in checked), checked
    checked += [(tmp_path / "out", 0o700), (tmp_path / "out" / "sub", 0o700), (out, 0o600),
                (tmp_path / "shared", 0o750), (tmp_path / "shared" / "x", 0o750), (shared, 0o640),
                (dead.parent, 0o700), (dead, 0o600)]
    wrong = [(str(p), oct(mode(p)), oct(want)) for p, want in checked if mode(p) != want]
    assert not wrong, wrong


# ----------------------------------------------------------------------------
# HTTP/1.1 as RFC 9112 says


def _raw(port: int, data: bytes, timeout: float = 30) -> tuple[bytes, bool]:
    """Sends `data`, reads until the server closes (or the guard timeout): the
    answer and whether the server closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        answer = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return answer, True
                answer += chunk
        except socket.timeout:
            return answer, False
        except ConnectionResetError:
            return answer, True


def test_http11_details(tmp_path, track_sluice):
    process = rt.start_sluice(tmp_path, lambda ports: {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp"), "max_request_body_size": 1000,
                                                      "read_timeout": "1s", "idle_timeout": "60s"}}}},
        "exporters": {"nop": {}},
        "service": {"telemetry": {"metrics": {"address": ports.address("metrics")}},
                    "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["nop"]}}},
    }, track_sluice)
    port = process.ports["otlp"]
    body = _logs_body()
    head = b"POST /v1/logs HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n"

    answer, closed = _raw(port, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert answer.startswith(b"HTTP/1.1 400") and closed, answer[:200]  # no Host
    answer, closed = _raw(port, head + b"Host: a\r\nHost: b\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert answer.startswith(b"HTTP/1.1 400") and closed, answer[:200]
    chunked = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    answer, closed = _raw(port, head + b"Host: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + chunked)
    assert answer.startswith(b"HTTP/1.1 501") and closed, answer[:200]
    answer, _ = _raw(port, head + b"Host: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    # 413 with Connection: close, and the socket closed although the client sent
    # only part of what it announced.
    answer, closed = _raw(port, head + b"Host: a\r\nContent-Length: 5000\r\n\r\n" + b"x" * 100)
    assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower() and closed, answer[:200]
    answer, closed = _raw(port, head + b"Host: a\r\n" + b"X-Big: " + b"y" * 200_000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431") and closed, answer[:200]
    # HTTP/1.0: closed after the answer unless keep-alive was asked for, and then said.
    request10 = b"POST /v1/logs HTTP/1.0\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n" % len(body)
    answer, closed = _raw(port, request10 + b"\r\n" + body)
    assert answer.startswith(b"HTTP/1.0 200") and closed, answer[:200]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request10 + b"Connection: keep-alive\r\n\r\n" + body)
        response = http.client.HTTPResponse(s)
        response.begin()
        response.read()
        assert response.status == 200 and response.getheader("Connection", "").lower() == "keep-alive"
        # idle_timeout (60 s), not read_timeout (1 s), governs the wait between
        # requests: past the read timeout the connection still takes a request.
        time.sleep(2)
        s.sendall(request10 + b"Connection: keep-alive\r\n\r\n" + body)
        second = http.client.HTTPResponse(s)
        second.begin()
        assert second.status == 200
    assert process.stop(timeout=30) == 0

