"""HTTP/2 on the OTLP/HTTP receiver, end to end: h2c with prior knowledge on the
cleartext port, next to HTTP/1.1 on the same port.

1. `h2load -n 100000 -c 8 -m 16` posting a real OTLP protobuf body to /v1/logs:
   every request 2xx, none failed or errored, and every record in the file.
2. curl with --http2-prior-knowledge and a hand-driven h2 client (h2's
   H2Connection) get 200 over HTTP/2; HTTP/1.1 still works on the same port.
3. Abusive clients over a raw socket (hyperframe/hpack, h2's own framing):
   more streams than SETTINGS_MAX_CONCURRENT_STREAMS; rapid reset (HEADERS then
   RST_STREAM, thousands of times); 1 MiB header blocks and a CONTINUATION
   flood; SETTINGS and PING floods, read and unread. Each must end in a refusal
   (RST_STREAM, GOAWAY, a close) rather than a crash or unbounded memory, and a
   normal client still gets 200 from the same process afterwards.

No assertion is about time: timeouts only keep a broken build from hanging.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

import receiver_setup as rs
import runtime_helpers as rt
from test_replay import _request as logs_request

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REFUSED_STREAM, PROTOCOL_ERROR, CANCEL = 0x7, 0x1, 0x8
WAIT = 30  # seconds; a guard against hanging only

BODY = logs_request(["h2-0", "h2-1"])
RECORDS_PER_BODY = 2


def post_headers(path: str = "/v1/logs", length: int = len(BODY), extra=()) -> list[tuple[str, str]]:
    return [(":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1"), (":path", path),
            ("content-type", "application/x-protobuf"), ("content-length", str(length)), *extra]


# ----------------------------------------------------------------------------
# A raw HTTP/2 connection: frames written as the test wants, frames read by a
# thread as they come (so a server's answers never block its reading).


class RawH2:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.frames: list = []
        self.responses: dict[int, dict] = {}
        self.resets: dict[int, int] = {}
        self.goaway: GoAwayFrame | None = None
        self.closed = False
        # Cleared while the test wants the server's output to back up.
        self.reading = threading.Event()
        self.reading.set()
        self._changed = threading.Condition()
        self._header_block: tuple[int, bytearray] | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.send(PREFACE + SettingsFrame(0).serialize())
        settings = self.wait(lambda: next((f for f in self.frames if isinstance(f, SettingsFrame) and "ACK" not in f.flags), None),
                             "the server's SETTINGS")
        self.settings = dict(settings.settings)
        self.send(SettingsFrame(0, flags=["ACK"]).serialize())

    # -- writing --------------------------------------------------------------

    def send(self, data: bytes) -> bool:
        """False when the server has closed the connection (or stopped reading
        for longer than WAIT)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            return False

    def header_frames(self, stream_id: int, headers, end_stream: bool = False, max_frame: int = 16384) -> bytes:
        """HEADERS (+ CONTINUATION) carrying the encoded block."""
        block = self.encoder.encode(headers, huffman=False)
        return self.block_frames(stream_id, block, end_stream, max_frame)

    @staticmethod
    def block_frames(stream_id: int, block: bytes, end_stream: bool, max_frame: int = 16384, end_headers: bool = True) -> bytes:
        chunks = [block[i : i + max_frame] for i in range(0, len(block), max_frame)] or [b""]
        out = bytearray()
        for n, chunk in enumerate(chunks):
            last = n == len(chunks) - 1
            flags = (["END_HEADERS"] if last and end_headers else [])
            if n == 0:
                frame = HeadersFrame(stream_id, chunk, flags=flags + (["END_STREAM"] if end_stream else []))
            else:
                frame = ContinuationFrame(stream_id, chunk, flags=flags)
            out += frame.serialize()
        return bytes(out)

    def request(self, stream_id: int, body: bytes = BODY) -> bytes:
        return self.header_frames(stream_id, post_headers(length=len(body))) + DataFrame(stream_id, body, flags=["END_STREAM"]).serialize()

    # -- reading --------------------------------------------------------------

    def _read(self) -> None:
        buffer = bytearray()
        while True:
            self.reading.wait()
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                with self._changed:
                    self.closed = True
                    self._changed.notify_all()
                return
            buffer += data
            offset = 0
            frames = []
            while len(buffer) - offset >= 9:
                frame, length = Frame.parse_frame_header(memoryview(buffer)[offset : offset + 9])
                if len(buffer) - offset - 9 < length:
                    break
                frame.parse_body(memoryview(bytes(buffer[offset + 9 : offset + 9 + length])))
                frames.append(frame)
                offset += 9 + length
            del buffer[:offset]
            with self._changed:
                for frame in frames:
                    self._take(frame)
                self._changed.notify_all()

    def _take(self, frame) -> None:
        self.frames.append(frame)
        if isinstance(frame, GoAwayFrame):
            self.goaway = frame
        elif isinstance(frame, RstStreamFrame):
            self.resets[frame.stream_id] = frame.error_code
        elif isinstance(frame, (HeadersFrame, ContinuationFrame)):
            if isinstance(frame, HeadersFrame):
                self._header_block = (frame.stream_id, bytearray())
            self._header_block[1].extend(frame.data)
            if "END_HEADERS" in frame.flags:
                stream_id, block = self._header_block
                headers = dict(self.decoder.decode(bytes(block), raw=False))
                self.responses.setdefault(stream_id, {}).update(headers)

    def wait(self, predicate, what: str, timeout: float = WAIT):
        with self._changed:
            result = self._changed.wait_for(lambda: predicate() or self.closed, timeout)
            value = predicate()
            if value:
                return value
        if result:
            pytest.fail(f"the server closed the connection while waiting for {what}; frames: {self.summary()}", pytrace=False)
        pytest.fail(f"timed out after {timeout}s waiting for {what}; frames: {self.summary()}", pytrace=False)

    def wait_any(self, predicate, timeout: float = WAIT) -> bool:
        """Waits for `predicate` or the close; returns whether something happened."""
        with self._changed:
            return bool(self._changed.wait_for(lambda: predicate() or self.closed, timeout))

    def status(self, stream_id: int) -> str | None:
        return self.responses.get(stream_id, {}).get(":status")

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for frame in self.frames:
            kinds[type(frame).__name__] = kinds.get(type(frame).__name__, 0) + 1
        goaway = f", GOAWAY(error={self.goaway.error_code}, last={self.goaway.last_stream_id})" if self.goaway else ""
        return f"{kinds}{goaway}, closed={self.closed}"

    def close(self) -> None:
        self.reading.set()
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def raw(h2_server):
    connections: list[RawH2] = []

    def connect() -> RawH2:
        connections.append(RawH2(h2_server.ports["http"]))
        return connections[-1]

    yield connect
    for connection in connections:
        connection.close()


# ----------------------------------------------------------------------------
# The server, and the normal clients that must still be served


@pytest.fixture(scope="module")
def h2_server(tmp_path_factory, track_sluice_module):
    workdir = tmp_path_factory.mktemp("h2")
    process = rt.start_sluice(workdir, lambda ports: rs.collector_config(ports, workdir / "out", http={}), track_sluice_module)
    process.out = workdir / "out"
    yield process
    process.stop(timeout=60)


def curl_h2c(port: int, body: Path) -> tuple[str, str]:
    """(status, HTTP version) of a curl POST with HTTP/2 prior knowledge."""
    result = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
         "-H", "Content-Type: application/x-protobuf", "--data-binary", f"@{body}", f"http://127.0.0.1:{port}/v1/logs"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, f"curl failed ({result.returncode}): {result.stderr}"
    status, version = result.stdout.split()
    return status, version


def h2_library_request(port: int) -> str:
    """One POST with h2's H2Connection (a well-behaved client) on a raw socket;
    returns the :status."""
    import h2.config
    import h2.connection
    import h2.events

    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        connection.initiate_connection()
        stream_id = connection.get_next_available_stream_id()
        connection.send_headers(stream_id, post_headers())
        connection.send_data(stream_id, BODY, end_stream=True)
        sock.sendall(connection.data_to_send())
        status = None
        while True:
            data = sock.recv(1 << 16)
            assert data, f"the server closed the connection before answering (status so far {status})"
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[":status"]
                elif isinstance(event, h2.events.DataReceived):
                    connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and event.stream_id == stream_id:
                    return status
                elif isinstance(event, h2.events.ConnectionTerminated):
                    return status
            sock.sendall(connection.data_to_send())


def assert_still_serving(process: rt.SluiceProcess, body_file: Path, after: str) -> None:
    process.check_alive(after)
    port = process.ports["http"]
    assert curl_h2c(port, body_file) == ("200", "2"), f"curl over h2c after {after}"
    assert h2_library_request(port) == "200", f"h2's client after {after}"
    response = rt.post(process.ports.url("http", "/v1/logs"), BODY)
    assert response.status == 200, f"HTTP/1.1 after {after}: {response}"
    process.check_alive(after)


@pytest.fixture(scope="module")
def body_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("h2-body") / "logs.pb"
    path.write_bytes(BODY)
    return path


# ----------------------------------------------------------------------------
# 1 and 2: real clients


def test_h2c_prior_knowledge_and_http11_on_the_same_port(h2_server, body_file):
    assert_still_serving(h2_server, body_file, "nothing")
    response = rt.post(h2_server.ports.url("http", "/v1/logs"), BODY)
    assert response.content_type == "application/x-protobuf", response


def test_h2c_answers_with_otlp_response_and_errors(raw):
    connection = raw()
    connection.send(connection.request(1) + connection.request(3, b"\xff\xff\xff") + connection.header_frames(
        5, [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/nope")], end_stream=True))
    connection.wait(lambda: all(connection.status(s) for s in (1, 3, 5)), "three responses")
    assert connection.status(1) == "200", connection.responses[1]
    assert connection.responses[1].get("content-type") == "application/x-protobuf", connection.responses[1]
    assert connection.status(3) == "400", connection.responses[3]
    assert connection.status(5) == "404", connection.responses[5]


def test_body_over_max_request_body_size_gets_413_over_h2(h2_server, raw):
    """Declared (content-length) and undeclared: the client is told 413, not
    just reset."""
    connection = raw()
    limit = 20 << 20  # the receiver's default max_request_body_size
    connection.send(connection.header_frames(1, post_headers(length=limit + 1)) + DataFrame(1, b"x" * 16000).serialize())
    no_length = [h for h in post_headers() if h[0] != "content-length"]
    # (0xff bytes: a tag that never ends; "x" bytes would be valid unknown fields.)
    connection.send(connection.header_frames(3, no_length) + DataFrame(3, b"\xff" * 16000).serialize() * 4)
    connection.wait_any(lambda: connection.status(1) is not None or 1 in connection.resets or connection.goaway is not None)
    assert connection.status(1) == "413", f"a declared {limit + 1}-byte body: {_refusal(connection, 1)}; frames: {connection.summary()}"
    # Stream 3 is within the limit so far; end it: a normal 400 (not protobuf).
    connection.send(DataFrame(3, b"", flags=["END_STREAM"]).serialize())
    connection.wait(lambda: connection.status(3), "the answer to stream 3")
    assert connection.status(3) == "400", connection.responses[3]


H2LOAD_REQUESTS = 100_000


def _h2load_summary(output: str) -> dict:
    summary = {}
    match = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", output)
    assert match, f"no requests line in h2load's output:\n{output}"
    summary.update(zip(["total", "started", "done", "succeeded", "failed", "errored", "timeout"], map(int, match.groups())))
    match = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
    assert match, f"no status codes line in h2load's output:\n{output}"
    summary.update(zip(["2xx", "3xx", "4xx", "5xx"], map(int, match.groups())))
    match = re.search(r"Application protocol: (\S+)", output)
    summary["protocol"] = match.group(1) if match else None
    return summary


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (Debian's nghttp2-client) is not installed")
def test_h2load_100k_requests_all_2xx_and_every_record_exported(tmp_path, track_sluice, body_file):
    process = rt.start_sluice(tmp_path, lambda ports: rs.collector_config(ports, tmp_path / "out", http={}), track_sluice)
    result = subprocess.run(
        ["h2load", "-n", str(H2LOAD_REQUESTS), "-c", "8", "-m", "16", "-d", str(body_file),
         "-H", "content-type: application/x-protobuf", process.ports.url("http", "/v1/logs")],
        capture_output=True, text=True, timeout=1800,
    )
    output = result.stdout + result.stderr
    process.check_alive("h2load")
    summary = _h2load_summary(output)
    assert summary["protocol"] == "h2c", f"h2load did not speak h2c:\n{output}"
    assert (summary["failed"], summary["errored"], summary["timeout"]) == (0, 0, 0), f"h2load:\n{output}"
    assert summary["succeeded"] == summary["2xx"] == H2LOAD_REQUESTS, f"h2load:\n{output}"
    rs.wait_exported(process)
    messages = rs.read_file_export(tmp_path / "out" / "logs.pb", "logs")
    assert rs.count_records(messages, "logs") == H2LOAD_REQUESTS * RECORDS_PER_BODY
    # HTTP/1.1 on the same port, after the load.
    assert rt.post(process.ports.url("http", "/v1/logs"), BODY).status == 200


# ----------------------------------------------------------------------------
# 3: abusive clients


def test_streams_beyond_max_concurrent_streams_are_refused(h2_server, raw, body_file):
    connection = raw()
    limit = connection.settings.get(SettingsFrame.MAX_CONCURRENT_STREAMS)
    assert limit is not None and limit < 2**31 - 1, f"the server must advertise SETTINGS_MAX_CONCURRENT_STREAMS, got {connection.settings}"
    extra = 100
    ids = [1 + 2 * i for i in range(limit + extra)]
    # Requests whose bodies never come: each stream stays open.
    frames = b"".join(connection.header_frames(s, post_headers()) for s in ids)
    connection.send(frames)
    excess = ids[limit:]

    def refused(stream_id: int) -> bool:
        if connection.resets.get(stream_id) in (REFUSED_STREAM, PROTOCOL_ERROR):
            return True
        return connection.goaway is not None and stream_id > connection.goaway.last_stream_id

    connection.wait_any(lambda: all(refused(s) for s in excess))
    not_refused = [s for s in excess if not refused(s)]
    assert not not_refused, (f"{len(not_refused)} of the {extra} streams beyond the limit of {limit} were not refused "
                             f"(e.g. {not_refused[:5]}); frames: {connection.summary()}")
    if connection.goaway is None:
        # The streams within the limit were accepted: one of them completes.
        connection.send(DataFrame(ids[0], BODY, flags=["END_STREAM"]).serialize())
        connection.wait(lambda: connection.status(ids[0]), "the answer on a stream within the limit")
        assert connection.status(ids[0]) == "200", connection.responses[ids[0]]
    assert_still_serving(h2_server, body_file, "a stream flood")


RAPID_RESETS = 20_000


def test_rapid_reset_gets_goaway_and_close(h2_server, raw, body_file):
    connection = raw()
    sent = 0
    for start in range(0, RAPID_RESETS, 200):
        chunk = b"".join(
            connection.header_frames(1 + 2 * i, post_headers()) + RstStreamFrame(1 + 2 * i, error_code=CANCEL).serialize()
            for i in range(start, start + 200)
        )
        if not connection.send(chunk):
            break
        sent = start + 200
        if connection.closed:
            break
    connection.wait_any(lambda: connection.closed)
    assert connection.goaway is not None, f"no GOAWAY after {sent} HEADERS+RST_STREAM pairs; frames: {connection.summary()}"
    assert connection.closed, f"GOAWAY but the connection stayed open; frames: {connection.summary()}"
    assert_still_serving(h2_server, body_file, "a rapid-reset attack")


def _refused_stream_or_connection(connection: RawH2, stream_id: int) -> bool:
    """A 4xx, a RST_STREAM, a GOAWAY or a close ended the stream."""
    status = connection.status(stream_id)
    return (stream_id in connection.resets or connection.goaway is not None or connection.closed
            or (status is not None and status.startswith("4")))


def _refusal(connection: RawH2, stream_id: int) -> str:
    if connection.status(stream_id):
        return f"HTTP {connection.status(stream_id)}"
    if stream_id in connection.resets:
        return f"RST_STREAM error {connection.resets[stream_id]}"
    return f"GOAWAY error {connection.goaway.error_code}" if connection.goaway else "close"


HEADER_ABUSE = {
    "one 1 MiB header value": [("x-big", "a" * (1 << 20))],
    "10,000 headers of 100 bytes": [(f"x-h{i}", "b" * 100) for i in range(10_000)],
}


@pytest.mark.parametrize("name", list(HEADER_ABUSE))
def test_oversized_header_block_is_refused(h2_server, raw, body_file, name):
    connection = raw()
    connection.send(connection.header_frames(1, post_headers(extra=HEADER_ABUSE[name])) + DataFrame(1, BODY, flags=["END_STREAM"]).serialize())
    connection.wait_any(lambda: _refused_stream_or_connection(connection, 1))
    assert _refused_stream_or_connection(connection, 1), f"{name}: no refusal; frames: {connection.summary()}"
    assert connection.status(1) in (None, "431", "400", "413"), f"{name}: answered {connection.responses[1]}"
    # RST_STREAM NO_ERROR with no response tells the client nothing went wrong
    # (RFC 9113 §8.1 allows it only after a complete response).
    assert connection.status(1) or connection.resets.get(1) != 0, f"{name}: refused with {_refusal(connection, 1)} and no response"
    assert_still_serving(h2_server, body_file, name)


def test_continuation_flood_is_cut_off(h2_server, raw, body_file):
    """HEADERS without END_HEADERS, then CONTINUATION frames that never end the
    block: the server must give up (GOAWAY, close) rather than buffer them all."""
    connection = raw()
    block = connection.encoder.encode(post_headers(), huffman=False)
    connection.send(RawH2.block_frames(1, block, end_stream=False, end_headers=False))
    filler = ContinuationFrame(1, b"\x00" * 16384).serialize()  # literal-with-indexing prefixes, never completed
    sent = 0
    for _ in range(64 * 8):  # up to 8 MiB
        if not connection.send(filler * 8) or connection.closed or connection.goaway:
            break
        sent += 8 * 16384
    connection.wait_any(lambda: connection.goaway is not None or connection.closed)
    assert connection.goaway is not None or connection.closed, f"{sent} bytes of CONTINUATION taken without complaint; frames: {connection.summary()}"
    assert_still_serving(h2_server, body_file, "a CONTINUATION flood")


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


FLOODS = {
    "SETTINGS": SettingsFrame(0).serialize(),
    "PING": PingFrame(0, opaque_data=b"flooding").serialize(),
}
FLOOD_FRAMES = 1_000_000


@pytest.mark.parametrize("reading", [True, False], ids=["client reads the ACKs", "client never reads"])
@pytest.mark.parametrize("kind", list(FLOODS))
def test_settings_and_ping_floods(h2_server, raw, body_file, kind, reading):
    """A million SETTINGS or PING frames. Either the server keeps up and the
    connection still answers a request, or it stops reading us, or it sends
    GOAWAY and closes; its memory does not grow with the flood (a client that
    never reads must not make it queue every ACK)."""
    connection = raw()
    if not reading:
        connection.reading.clear()
    connection.sock.settimeout(10)  # a server that stops reading us is a fine answer
    rss_before = _rss_bytes(h2_server.pid)
    chunk, sent, stopped = FLOODS[kind] * 1000, 0, False
    while sent < FLOOD_FRAMES:
        if not connection.send(chunk):
            stopped = True  # closed, or not reading us: part of a frame may be unsent
            break
        sent += 1000
    rss_after = _rss_bytes(h2_server.pid)
    connection.reading.set()
    h2_server.check_alive(f"a {kind} flood")
    assert rss_after - rss_before < 64 << 20, f"sluice grew by {(rss_after - rss_before) >> 20} MiB during the flood of {sent} frames"
    connection.sock.settimeout(WAIT)
    if not stopped:
        connection.send(connection.request(1))
        connection.wait_any(lambda: connection.status(1) or connection.goaway is not None)
        if connection.goaway is None and not connection.closed:
            assert connection.status(1) == "200", f"after the flood the connection neither answered nor went away: {connection.summary()}"
    assert_still_serving(h2_server, body_file, f"a {kind} flood")


# ----------------------------------------------------------------------------
# Garbage after the preface


def _random_frame(rng) -> bytes:
    """A frame header with a random type, flags and stream, and a random payload
    (sometimes lying about its length)."""
    length = rng.choice([0, 1, 4, 5, 8, 9, 13, 64, 300, rng.randrange(0, 2000)])
    payload = bytes(rng.getrandbits(8) for _ in range(length))
    declared = length if rng.random() < 0.8 else rng.randrange(0, 1 << 24)
    frame_type = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, rng.randrange(10, 256)])
    stream = rng.choice([0, 1, 2, 3, 5, rng.randrange(0, 1 << 31)])
    return declared.to_bytes(3, "big") + bytes([frame_type, rng.getrandbits(8)]) + stream.to_bytes(4, "big") + payload


def test_random_frames_after_the_preface_never_take_the_server_down(h2_server, body_file):
    """3,000 connections, each the preface and then 1 to 40 random frames (seeded,
    so a failure repeats): whatever the server answers, it stays up, and a normal
    client is served afterwards."""
    import random

    rng = random.Random(20261122)
    port = h2_server.ports["http"]
    for _ in range(3000):
        data = PREFACE + b"".join(_random_frame(rng) for _ in range(rng.randrange(1, 40)))
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
            except OSError:
                pass  # a reset is a fine answer to garbage
    assert_still_serving(h2_server, body_file, "3,000 connections of random frames")
