"""Helpers for the runtime tests (test_runtime.py): running the real `sluice`
binary with a config of the test's own, talking to it over real sockets, and
comparing what a destination received with what a client sent, record by record.

Everything listens on 127.0.0.1 on ports picked by binding port 0, so the tests
can run next to anything else (a collector on 4318, another test run).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from conftest import SLUICE_BIN, _retry_while_rebuilt, assert_messages_equal

# Only to keep a broken build from hanging the suite; never asserted on.
START_TIMEOUT = 60
HTTP_TIMEOUT = 60


# ----------------------------------------------------------------------------
# Ports and configuration files


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ports:
    """Named free ports, picked on first use: `ports["otlp"]`."""

    def __init__(self):
        self._ports: dict[str, int] = {}

    def __getitem__(self, name: str) -> int:
        if name not in self._ports:
            taken = set(self._ports.values())
            port = free_port()
            while port in taken:
                port = free_port()
            self._ports[name] = port
        return self._ports[name]

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self[name]}"

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self[name]}{path}"


def _yaml_scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(str(value))


def to_yaml(value, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and scalars (the configs are simple; no
    PyYAML needed, and the output is what a user would write)."""
    pad = "  " * indent
    lines = []
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        for key, item in value.items():
            if isinstance(item, dict) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 1)}")
            elif isinstance(item, dict):
                lines.append(f"{pad}{key}: {{}}\n")
            elif isinstance(item, list):
                if item and all(not isinstance(i, (dict, list)) for i in item):
                    lines.append(f"{pad}{key}: [{', '.join(_yaml_scalar(i) for i in item)}]\n")
                elif not item:
                    lines.append(f"{pad}{key}: []\n")
                else:
                    lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(item)}\n")
        return "".join(lines)
    if isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                inner = to_yaml(item, indent + 1).lstrip()
                lines.append(f"{pad}- {inner}")
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}\n")
        return "".join(lines)
    return pad + _yaml_scalar(value) + "\n"


def sluice_components() -> dict[str, list[str]]:
    """`sluice components`, as {"exporters": ["debug", …], …}."""
    result = _retry_while_rebuilt(
        lambda: subprocess.run([str(SLUICE_BIN), "components"], capture_output=True, text=True, timeout=60)
    )
    assert result.returncode == 0, result.stderr
    kinds: dict[str, list[str]] = {}
    current = None
    for line in result.stdout.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            current = line[:-1]
            kinds[current] = []
        elif line.strip() and current is not None:
            kinds[current].append(line.strip())
    return kinds


# ----------------------------------------------------------------------------
# The process


class SluiceProcess:
    """One running `sluice --config …`: started with its own config file, data
    directory and stderr log; `stop()` sends SIGTERM and waits, `kill()` makes
    sure nothing outlives the test."""

    def __init__(self, workdir: Path, config: dict, ports: Ports, name: str = "sluice", env: dict | None = None,
                 preexec: Callable[[], None] | None = None):
        self.workdir = workdir
        # Variables for this process on top of the test's environment, without
        # the test's own AWS_* (credentials must come only from what a test gives).
        self.env = None if env is None else {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **env}
        # Run in the child before exec: a lower `ulimit -n`, a umask.
        self.preexec = preexec
        self.config = config
        self.ports = ports
        self.name = name
        self.data_dir = workdir / "data"
        self.config_path = workdir / f"{name}.yaml"
        self.stderr_path = workdir / f"{name}.stderr.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> SluiceProcess:
        if not SLUICE_BIN.exists():
            pytest.fail(f"sluice binary not found at {SLUICE_BIN}: run `swift build` or set SLUICE_BIN", pytrace=False)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(to_yaml(self.config))
        command = [str(SLUICE_BIN), "--config", str(self.config_path), "--data-directory", str(self.data_dir), "--log-format", "json"]
        self._stderr = open(self.stderr_path, "wb")
        self.process = _retry_while_rebuilt(
            lambda: subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr, env=self.env,
                                     preexec_fn=self.preexec)
        )
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, n: int = 4000) -> str:
        return self.stderr()[-n:]

    def log_lines(self) -> list[dict]:
        out = []
        for line in self.stderr().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_running(self, timeout: float = START_TIMEOUT) -> None:
        """Until sluice logged that it runs (every listener is bound by then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise SluiceExited(self.process.returncode, self.stderr_tail())
            if '"msg":"sluice running"' in self.stderr():
                return
            time.sleep(0.05)
        pytest.fail(f"sluice did not start within {timeout}s; stderr:\n{self.stderr_tail()}", pytrace=False)

    def stop(self, timeout: float) -> int:
        """SIGTERM, then wait for the exit status (SIGKILL if it never comes:
        the test fails on the return value or the hang)."""
        if not self.alive():
            return self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"sluice did not exit within {timeout}s of SIGTERM; stderr:\n{self.stderr_tail()}", pytrace=False)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if getattr(self, "_stderr", None) is not None:
            self._stderr.close()
            self._stderr = None

    def replay(self, exporter: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """`sluice replay` of `exporter`'s dead letters, with this process's
        configuration file and data directory (stop the process first)."""
        return subprocess.run(
            [str(SLUICE_BIN), "replay", "--config", str(self.config_path), "--exporter", exporter, "--data-directory", str(self.data_dir)],
            capture_output=True, text=True, timeout=timeout)

    def check_alive(self, what: str = "") -> None:
        if not self.alive():
            rc = self.process.returncode
            how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with {rc}"
            pytest.fail(f"sluice {how}{' after ' + what if what else ''}; stderr:\n{self.stderr_tail()}", pytrace=False)


class SluiceExited(Exception):
    def __init__(self, returncode: int, stderr: str):
        super().__init__(f"sluice exited with {returncode} while starting; stderr:\n{stderr}")
        self.returncode = returncode
        self.stderr = stderr


def start_sluice(workdir: Path, make_config: Callable[[Ports], dict], track: Callable[[SluiceProcess], None], name: str = "sluice",
                 env: dict | None = None, preexec: Callable[[], None] | None = None) -> SluiceProcess:
    """Starts sluice with `make_config(ports)` and waits until it runs. A port
    taken between picking and binding (another process on the machine) gets
    fresh ports and another try."""
    last: SluiceExited | None = None
    for attempt in range(3):
        ports = Ports()
        process = SluiceProcess(workdir / f"{name}-{attempt}" if attempt else workdir, make_config(ports), ports, name, env, preexec)
        track(process)
        process.start()
        try:
            process.wait_running()
            return process
        except SluiceExited as exited:
            process.kill()
            last = exited
            if "in use" not in exited.stderr.lower():
                break
    pytest.fail(str(last), pytrace=False)


# ----------------------------------------------------------------------------
# HTTP


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def __repr__(self) -> str:
        return f"<HTTP {self.status} {self.content_type} {self.body[:300]!r}>"


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = HTTP_TIMEOUT) -> Response:
    """One request on a new connection."""
    match = re.fullmatch(r"http://([^:/]+):(\d+)(/.*)?", url)
    assert match, url
    connection = http.client.HTTPConnection(match.group(1), int(match.group(2)), timeout=timeout)
    try:
        connection.request(method, match.group(3) or "/", body=body, headers=headers or {})
        response = connection.getresponse()
        return Response(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def post(url: str, body: bytes, content_type: str = "application/x-protobuf", encoding: str | None = None, **kwargs) -> Response:
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    return request("POST", url, body, headers, **kwargs)


def get(url: str, **kwargs) -> Response:
    return request("GET", url, **kwargs)


def raw_exchange(host: str, port: int, head: bytes, body_parts: Iterable[bytes] = (), timeout: float = HTTP_TIMEOUT) -> Response:
    """Writes a request by hand (for headers that lie, chunked bodies) and reads
    one response. Stops writing as soon as an answer is readable, as a careful
    client does, so an early 413 is read rather than lost in a reset."""
    import select

    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(head)
        for part in body_parts:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Response(response.status, dict(response.getheaders()), response.read())


# ----------------------------------------------------------------------------
# /metrics and /status

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def metric(samples, name: str, **labels) -> float:
    """The sum of every sample of `name` whose labels include `labels`
    (0 when there is none)."""
    return sum(value for n, l, value in samples if n == name and all(l.get(k) == v for k, v in labels.items()))


def scrape(metrics_url: str):
    response = get(metrics_url)
    assert response.status == 200, response
    return parse_prometheus(response.body.decode())


def exporter_status(status_url: str) -> dict:
    response = get(status_url)
    assert response.status == 200, response
    return json.loads(response.body)["exporters"]


# ----------------------------------------------------------------------------
# Comparing telemetry record by record


def _any_value_text(value) -> str | None:
    kind = value.WhichOneof("value")
    return None if kind is None else str(getattr(value, kind))


def attribute(item, key: str) -> str | None:
    for kv in item.attributes:
        if kv.key == key:
            return _any_value_text(kv.value)
    return None


def flatten_logs(messages) -> list:
    """Each log record of the requests as a ResourceLogs of its own (resource,
    scope, schema URLs and the one record): what a record is, whichever
    request it travelled in and however records were grouped."""
    from opentelemetry.proto.logs.v1 import logs_pb2

    out = []
    for message in messages:
        for rl in message.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    single = logs_pb2.ResourceLogs(resource=rl.resource, schema_url=rl.schema_url)
                    single.scope_logs.add(scope=sl.scope, schema_url=sl.schema_url).log_records.append(record)
                    out.append(single)
    return out


def flatten_spans(messages) -> list:
    from opentelemetry.proto.trace.v1 import trace_pb2

    out = []
    for message in messages:
        for rs in message.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    single = trace_pb2.ResourceSpans(resource=rs.resource, schema_url=rs.schema_url)
                    single.scope_spans.add(scope=ss.scope, schema_url=ss.schema_url).spans.append(span)
                    out.append(single)
    return out


def log_key(single) -> str:
    return attribute(single.scope_logs[0].log_records[0], "event_id")


def span_key(single) -> str:
    return single.scope_spans[0].spans[0].span_id.hex()


def group(flat: Iterable, key: Callable) -> dict[str, list]:
    out: dict[str, list] = {}
    for item in flat:
        out.setdefault(key(item), []).append(item)
    return out


def assert_same_records(expected: list, actual: list, key: Callable, what: str, allow_duplicates: bool = False) -> None:
    """The multiset of records that arrived is the one that was sent, field for
    field (or, with `allow_duplicates`, every record arrived at least once and
    every copy is exact). On failure: which keys are missing or extra, and a diff
    of the first record that differs."""
    expected_by_key = group(expected, key)
    assert all(len(v) == 1 for v in expected_by_key.values()), f"{what}: the test's own keys are not unique"
    actual_by_key = group(actual, key)
    missing = sorted(set(expected_by_key) - set(actual_by_key), key=str)
    extra = sorted(set(actual_by_key) - set(expected_by_key), key=str)
    duplicated = {k: len(v) for k, v in actual_by_key.items() if len(v) > 1}
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {len(expected_by_key)} records missing, e.g. {missing[:10]}")
    if extra:
        problems.append(f"{len(extra)} records that were never sent, e.g. {extra[:10]}")
    if duplicated and not allow_duplicates:
        problems.append(f"{len(duplicated)} records arrived more than once, e.g. {dict(list(duplicated.items())[:10])}")
    for k, (want,) in expected_by_key.items():
        for got in actual_by_key.get(k, []):
            if got != want:
                differing = sum(1 for kk, (w,) in expected_by_key.items() for g in actual_by_key.get(kk, []) if g != w)
                if problems:
                    print("\n".join(problems))
                print(f"{what}: {differing} records differ from what was sent; the first, {k}:")
                assert_messages_equal(got, want, f"{what} record {k}")
    assert not problems, f"{what}: " + "; ".join(problems)


def decode_status(response: Response):
    """The error body as a google.rpc.Status (protobuf) or {"code","message"}
    (JSON), whichever the response says it is."""
    if response.content_type in ("application/x-protobuf", "application/protobuf"):
        try:
            from google.rpc import status_pb2
        except ImportError:  # googleapis-common-protos comes with the OTLP exporters, but just in case
            return _decode_status_by_hand(response.body)
        status = status_pb2.Status.FromString(response.body)
        return {"code": status.code, "message": status.message}
    if response.content_type == "application/json":
        return json.loads(response.body)
    return None


def _decode_status_by_hand(data: bytes) -> dict:
    """google.rpc.Status fields 1 (code, varint) and 2 (message, string)."""
    out = {"code": 0, "message": ""}
    i = 0

    def varint():
        nonlocal i
        shift = value = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value = varint()
            if number == 1:
                out["code"] = value
        elif wire_type == 2:
            length = varint()
            chunk = data[i : i + length]
            i += length
            if number == 2:
                out["message"] = chunk.decode("utf-8")
        else:
            raise ValueError(f"unexpected wire type {wire_type} in a google.rpc.Status")
    return out


def wait_until(predicate: Callable[[], object], timeout: float, poll: float = 0.1, what: str = "condition"):
    """Polls `predicate` until it returns something truthy (returned); fails the
    test after `timeout` (only a guard against hanging)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}", pytrace=False)
        time.sleep(poll)


def env_without_proxies() -> None:
    """The SDK's requests session honours *_PROXY; these tests talk to 127.0.0.1
    directly, so make sure a proxy set in the environment is bypassed for it."""
    for name in ("NO_PROXY", "no_proxy"):
        entries = [e for e in os.environ.get(name, "").split(",") if e]
        for host in ("127.0.0.1", "localhost"):
            if host not in entries:
                entries.append(host)
        os.environ[name] = ",".join(entries)


def utc_day(nanos: int) -> str:
    """`yyyy.MM.dd` of a time in nanoseconds, in UTC (dated index names)."""
    import datetime

    return datetime.datetime.fromtimestamp(nanos / 1e9, tz=datetime.timezone.utc).strftime("%Y.%m.%d")
