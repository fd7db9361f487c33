"""Shared helpers for the end-to-end tests of the OTLP codecs.

The tests drive the real binary through `sluice convert`, which reads one OTLP
export request on stdin and writes it back as protobuf or OTLP/JSON. Build it
first (`swift build`), or point SLUICE_BIN at another build.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parent.parent
SLUICE_BIN = Path(os.environ.get("SLUICE_BIN", REPO_ROOT / ".build" / "debug" / "sluice"))

# otlp_samples.py sits next to this file; make it importable however pytest
# was started.
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

# `sluice convert` exits with this status when it refuses its input.
EXIT_REFUSED = 2

CONVERT_TIMEOUT = 120

SIGNAL_TO_MESSAGE = {
    "logs": "opentelemetry.proto.collector.logs.v1.logs_service_pb2.ExportLogsServiceRequest",
    "traces": "opentelemetry.proto.collector.trace.v1.trace_service_pb2.ExportTraceServiceRequest",
    "metrics": "opentelemetry.proto.collector.metrics.v1.metrics_service_pb2.ExportMetricsServiceRequest",
}


def request_class(signal_name: str):
    """The pb2 class of the export request for a signal."""
    import importlib

    module, _, name = SIGNAL_TO_MESSAGE[signal_name].rpartition(".")
    return getattr(importlib.import_module(module), name)


def _command(signal_name, frm, to, encoding, max_depth):
    command = [str(SLUICE_BIN), "convert", "--signal", signal_name, "--from", frm, "--to", to]
    if encoding is not None:
        command += ["--encoding", encoding]
    if max_depth is not None:
        command += ["--max-depth", str(max_depth)]
    return command


def _save_reproducer(data: bytes, command: list[str]) -> str:
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"sluice-crash-{digest}.bin"
    path.write_bytes(data)
    shown = " ".join(command[1:])
    return f"{SLUICE_BIN} {shown} < {path}"


def _check_not_killed(returncode: int, data: bytes, command: list[str], stderr: bytes) -> None:
    """A negative return code means a signal: sluice crashed. Never acceptable."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        reproducer = _save_reproducer(data, command)
        pytest.fail(
            f"sluice was killed by {name} (a crash, never acceptable).\n"
            f"Reproduce with: {reproducer}\nstderr: {stderr[-2000:]!r}",
            pytrace=False,
        )


def _retry_while_rebuilt(start):
    """`swift build` replacing the binary while a test starts it gives ETXTBSY
    for a moment; wait for the new binary instead of failing."""
    for attempt in range(60):
        try:
            return start()
        except OSError as error:
            if error.errno != errno.ETXTBSY or attempt == 59:
                raise
            time.sleep(0.5)


def convert(
    data: bytes,
    signal: str = "logs",
    frm: str = "proto",
    to: str = "json",
    encoding: str | None = None,
    max_depth: int | None = None,
) -> subprocess.CompletedProcess:
    """Runs `sluice convert` on `data`; fails the test if sluice crashed."""
    if not SLUICE_BIN.exists():
        pytest.fail(f"sluice binary not found at {SLUICE_BIN}: run `swift build` or set SLUICE_BIN", pytrace=False)
    command = _command(signal, frm, to, encoding, max_depth)
    result = _retry_while_rebuilt(
        lambda: subprocess.run(command, input=data, capture_output=True, timeout=CONVERT_TIMEOUT)
    )
    _check_not_killed(result.returncode, data, command, result.stderr)
    return result


def convert_ok(data: bytes, **kwargs) -> bytes:
    """`convert`, and the conversion must succeed; returns stdout."""
    result = convert(data, **kwargs)
    assert result.returncode == 0, f"sluice convert {kwargs} failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
    assert result.stderr == b"", result.stderr
    if kwargs.get("to", "json") == "json":
        out = result.stdout
        assert out.endswith(b"\n") and b"\n" not in out[:-1], "OTLP/JSON output must be exactly one line"
    return result.stdout


def convert_with_rusage(data: bytes, **kwargs) -> tuple[subprocess.CompletedProcess, int]:
    """`convert`, also returning the child's peak resident set size in bytes
    (from wait4, so it is this child's alone)."""
    command = _command(
        kwargs.get("signal", "logs"),
        kwargs.get("frm", "proto"),
        kwargs.get("to", "json"),
        kwargs.get("encoding"),
        kwargs.get("max_depth"),
    )
    process = _retry_while_rebuilt(
        lambda: subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    )
    output: dict[str, bytes] = {}

    def feed():
        try:
            process.stdin.write(data)
        except BrokenPipeError:
            pass
        finally:
            process.stdin.close()

    def drain(name, stream):
        output[name] = stream.read()

    threads = [
        threading.Thread(target=feed),
        threading.Thread(target=drain, args=("stdout", process.stdout)),
        threading.Thread(target=drain, args=("stderr", process.stderr)),
    ]
    for thread in threads:
        thread.start()
    _, status, usage = os.wait4(process.pid, 0)
    for thread in threads:
        thread.join(timeout=CONVERT_TIMEOUT)
    returncode = os.waitstatus_to_exitcode(status)
    process.returncode = returncode
    _check_not_killed(returncode, data, command, output.get("stderr", b""))
    result = subprocess.CompletedProcess(command, returncode, output.get("stdout", b""), output.get("stderr", b""))
    return result, usage.ru_maxrss * 1024


def assert_refused(result: subprocess.CompletedProcess, *keywords: str) -> str:
    """The input was refused the way a client can act on: exit status 2, one
    `sluice convert: ...` message naming the problem, nothing on stdout."""
    stderr = result.stderr.decode("utf-8", errors="replace")
    assert result.returncode == EXIT_REFUSED, f"expected exit {EXIT_REFUSED}, got {result.returncode}; stderr: {stderr!r}"
    assert result.stdout == b"", f"nothing may be written for a refused request, got {result.stdout[:200]!r}"
    assert stderr.startswith("sluice convert: "), stderr
    lowered = stderr.lower()
    for keyword in keywords:
        assert keyword.lower() in lowered, f"{keyword!r} not in the error message {stderr!r}"
    return stderr


def assert_messages_equal(actual, expected, what: str = "message") -> None:
    """pb2 equality, with a readable diff of the text format on failure."""
    if actual == expected:
        return
    from google.protobuf import text_format

    left = text_format.MessageToString(expected, as_utf8=True).splitlines()
    right = text_format.MessageToString(actual, as_utf8=True).splitlines()
    diff = "\n".join(difflib.unified_diff(left, right, "expected", "actual (via sluice)", lineterm="", n=4))
    if not diff:
        # Same text, different messages: a double whose sign or NaN payload
        # differs, or presence of an empty submessage.
        diff = "(text formats are identical; serialized bytes differ:)\n" + _bytes_diff(
            expected.SerializeToString(deterministic=True), actual.SerializeToString(deterministic=True)
        )
    pytest.fail(f"{what} differs:\n{diff[:20000]}", pytrace=False)


def _bytes_diff(a: bytes, b: bytes) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first difference at byte {i}: expected {a[max(0, i - 16):i + 16].hex()} got {b[max(0, i - 16):i + 16].hex()}"
    return f"lengths {len(a)} vs {len(b)}"


def pytest_report_header(config):
    return f"sluice binary: {SLUICE_BIN}"


# ----------------------------------------------------------------------------
# Runtime tests (test_runtime.py): running sluice processes and a local OTLP
# destination. Every process a test starts is killed when the test (or module)
# ends, whatever happened.


def _process_tracker():
    processes = []
    yield processes.append
    for process in processes:
        process.kill()


@pytest.fixture
def track_sluice():
    """Call with each SluiceProcess a test starts; they are killed at teardown."""
    yield from _process_tracker()


@pytest.fixture(scope="module")
def track_sluice_module():
    yield from _process_tracker()


@pytest.fixture
def otlp_sink():
    """A local OTLP/HTTP destination (Tests/e2e/sink.py), started and stopped."""
    from sink import OTLPSink

    with OTLPSink() as sink:
        yield sink
