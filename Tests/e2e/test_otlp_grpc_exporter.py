"""The `otlp` exporter (OTLP/gRPC) end to end: the real `sluice` binary, the
OpenTelemetry Python SDK (or hand-made OTLP/HTTP requests) in front of it, and a
real gRPC server that is not Sluice behind it: grpcio with the opentelemetry-proto
servicers, in this process, recording every Export call and misbehaving on
demand. For plaintext (h2c) a small TCP proxy between the two decodes the HTTP/2
frames sluice writes (HPACK included), to see what grpcio keeps from its
application: grpc-encoding, :authority, grpc-timeout, the compressed flag and the
length of each message.

1. Plaintext: 20,000 SDK log records and 5,000 SDK spans arrive field for field,
   gzip-compressed by default and uncompressed with `compression: none`, with
   the configured `headers` as metadata and `authority` as :authority.
2. TLS: with `tls.ca_file` delivered; with the wrong CA nothing is delivered and
   /status names the certificate problem; mutual TLS with cert_file/key_file.
3. UNAVAILABLE for the first calls: degraded, then active, every record once.
   The other retryable codes likewise.
4. RESOURCE_EXHAUSTED with RetryInfo: retried after its delay. INVALID_ARGUMENT
   and the other permanent codes (RESOURCE_EXHAUSTED without RetryInfo for a
   single request among them): the dead-letter file, with the code as reason.
5. A server with a 1 MiB receive limit and a batch processor merging ~400 KB
   requests: sluice sends in halves until they fit; nothing dead-lettered.

No assertion is about how long anything takes, except that a RetryInfo delay
was waited out (a lower bound: a slow machine only makes it longer).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from concurrent import futures
from dataclasses import dataclass, field

import pytest

import otlp_samples as samples
import runtime_helpers as rt
from certs import pki  # noqa: F401 - the session PKI fixture
from test_runtime import send_sdk_logs, send_sdk_spans
from test_splunk_hec import dead_lettered_ids, read_dead_letters

grpc = pytest.importorskip("grpc")

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc  # noqa: E402
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc  # noqa: E402

logging.getLogger("opentelemetry").setLevel(logging.ERROR)
rt.env_without_proxies()

DELIVERY_TIMEOUT = 120
LOGS_PATH = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
TRACES_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
FAST_RETRY = {"initial_interval": "100ms", "max_interval": "1s", "max_elapsed_time": "5m"}


# ----------------------------------------------------------------------------
# The destination: grpcio with the OTLP servicers


@dataclass
class Call:
    """One Export call as the servicer saw it."""

    signal: str
    number: int
    metadata: dict[str, str]
    items: int
    at: float
    answered: str = "OK"
    peer_common_name: str | None = None


@dataclass
class Failure:
    """How to answer one call: a status code, a message and, optionally, a
    google.rpc.RetryInfo delay in grpc-status-details-bin."""

    code: object
    message: str
    retry_delay: float | None = None


def status_details(code: int, message: str, retry_delay: float | None) -> bytes:
    """A serialized google.rpc.Status, with a RetryInfo among its details when
    `retry_delay` is set (googleapis-common-protos when present, else by hand)."""
    try:
        from google.protobuf import any_pb2, duration_pb2
        from google.rpc import error_details_pb2, status_pb2
    except ImportError:
        return _status_details_by_hand(code, message, retry_delay)
    status = status_pb2.Status(code=code, message=message)
    if retry_delay is not None:
        info = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=int(retry_delay), nanos=int(round((retry_delay % 1) * 1e9)))
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        status.details.append(detail)
    return status.SerializeToString()


def _status_details_by_hand(code: int, message: str, retry_delay: float | None) -> bytes:
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte = n & 0x7F
            n >>= 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field_bytes(number: int, data: bytes) -> bytes:
        return varint(number << 3 | 2) + varint(len(data)) + data

    out = varint(1 << 3) + varint(code) + field_bytes(2, message.encode())
    if retry_delay is not None:
        duration = varint(1 << 3) + varint(int(retry_delay))
        nanos = int(round((retry_delay % 1) * 1e9))
        if nanos:
            duration += varint(2 << 3) + varint(nanos)
        any_message = field_bytes(1, b"type.googleapis.com/google.rpc.RetryInfo") + field_bytes(2, field_bytes(1, duration))
        out += field_bytes(3, any_message)
    return out


class GRPCDestination:
    """A grpcio server with the three OTLP services on 127.0.0.1 (a port of its
    own choosing). It keeps every message it answered OK, and every call with its
    metadata. `fail(...)` queues answers for the next calls; `hold()` keeps
    answering the last queued failure until `release()`."""

    def __init__(self, credentials=None, max_receive_message_length: int | None = None):
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.delivered: dict[str, list] = {"logs": [], "traces": [], "metrics": []}
        self._plan: list[Failure] = []
        self._held: Failure | None = None
        self._release = threading.Event()
        self._release.set()
        options = [("grpc.so_reuseport", 0)]
        if max_receive_message_length is not None:
            options.append(("grpc.max_receive_message_length", max_receive_message_length))
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=options)
        destination = self

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request, context):  # noqa: N802 - the service's name
                return destination._handle("logs", request, context, logs_service_pb2.ExportLogsServiceResponse())

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802
                return destination._handle("traces", request, context, trace_service_pb2.ExportTraceServiceResponse())

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                return destination._handle("metrics", request, context, metrics_service_pb2.ExportMetricsServiceResponse())

        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self.server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        if credentials is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        assert self.port, "grpcio could not bind a port"

    def __enter__(self) -> GRPCDestination:
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self.server.stop(grace=None)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- misbehaving ------------------------------------------------------------------

    def fail(self, code, message: str, times: int = 1, retry_delay: float | None = None) -> None:
        with self._lock:
            self._plan += [Failure(code, message, retry_delay)] * times

    def succeed(self, times: int = 1) -> None:
        """Queue OK answers (to place a failure after them)."""
        with self._lock:
            self._plan += [None] * times

    def hold(self) -> None:
        """After the queued failures, keep failing with the last one until release()."""
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    def _next_failure(self) -> Failure | None:
        if self._plan:
            self._held = self._plan.pop(0)
            return self._held
        if not self._release.is_set() and self._held is not None:
            return self._held
        return None

    # -- serving ------------------------------------------------------------------

    def _handle(self, signal: str, request, context, response):
        metadata = {}
        for key, value in context.invocation_metadata():
            metadata[key] = value
        common_name = None
        auth = context.auth_context()
        if auth.get("x509_common_name"):
            common_name = auth["x509_common_name"][0].decode()
        items = count_items(request, signal)
        with self._lock:
            call = Call(signal, len(self.calls), metadata, items, time.monotonic(), peer_common_name=common_name)
            self.calls.append(call)
            failure = self._next_failure()
            if failure is None:
                self.delivered[signal].append(request)
            else:
                call.answered = failure.code.name
        if failure is None:
            return response
        if failure.retry_delay is not None or failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            details = status_details(failure.code.value[0], failure.message, failure.retry_delay)
            context.set_trailing_metadata((("grpc-status-details-bin", details),))
        context.abort(failure.code, failure.message)

    # -- what arrived ---------------------------------------------------------------

    def messages(self, signal: str) -> list:
        with self._lock:
            return list(self.delivered[signal])

    def calls_snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def log_ids(self) -> Counter:
        return Counter(rt.log_key(r) for r in rt.flatten_logs(self.messages("logs")))


def count_items(message, signal: str) -> int:
    if signal == "logs":
        return sum(len(sl.log_records) for rl in message.resource_logs for sl in rl.scope_logs)
    if signal == "traces":
        return sum(len(ss.spans) for rs in message.resource_spans for ss in rs.scope_spans)
    return sum(len(sm.metrics) for rm in message.resource_metrics for sm in rm.scope_metrics)


# ----------------------------------------------------------------------------
# What sluice writes on the wire: an h2c proxy that decodes HTTP/2 frames


@dataclass
class Stream:
    """One HTTP/2 request stream sluice opened: its header fields, and the
    5-byte gRPC message prefix of its body (compressed flag, message length)."""

    headers: dict[str, str]
    compressed: int | None = None
    message_length: int | None = None
    _prefix: bytearray = field(default_factory=bytearray)


class _ClientFrames:
    """Parses the client side of one h2c connection (preface, then frames);
    decodes every header block with one HPACK decoder, as the server does."""

    def __init__(self, streams: list[Stream], lock: threading.Lock):
        import hpack

        self.decoder = hpack.Decoder()
        self.buffer = bytearray()
        self.preface = False
        self.blocks: dict[int, bytearray] = {}
        self.by_id: dict[int, Stream] = {}
        self.streams = streams
        self.lock = lock
        self.errors: list[str] = []

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if not self.preface:
            if len(self.buffer) < 24:
                return
            if bytes(self.buffer[:24]) != b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n":
                self.errors.append(f"no HTTP/2 prior-knowledge preface: {bytes(self.buffer[:24])!r}")
            del self.buffer[:24]
            self.preface = True
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[0:3], "big")
            if len(self.buffer) < 9 + length:
                return
            kind, flags = self.buffer[3], self.buffer[4]
            stream_id = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.buffer[9 : 9 + length])
            del self.buffer[: 9 + length]
            self._frame(kind, flags, stream_id, payload)

    @staticmethod
    def _unpad(flags: int, payload: bytes) -> bytes:
        if flags & 0x8:
            pad = payload[0]
            payload = payload[1 : len(payload) - pad]
        return payload

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if kind == 0x1:  # HEADERS
            payload = self._unpad(flags, payload)
            if flags & 0x20:  # PRIORITY
                payload = payload[5:]
            self.blocks[stream_id] = bytearray(payload)
            if flags & 0x4:
                self._header_block(stream_id)
        elif kind == 0x9:  # CONTINUATION
            self.blocks[stream_id] += payload
            if flags & 0x4:
                self._header_block(stream_id)
        elif kind == 0x0:  # DATA
            stream = self.by_id.get(stream_id)
            payload = self._unpad(flags, payload)
            if stream is not None and len(stream._prefix) < 5:
                stream._prefix += payload[: 5 - len(stream._prefix)]
                if len(stream._prefix) == 5:
                    with self.lock:
                        stream.compressed = stream._prefix[0]
                        stream.message_length = int.from_bytes(stream._prefix[1:5], "big")

    def _header_block(self, stream_id: int) -> None:
        fields = self.decoder.decode(bytes(self.blocks.pop(stream_id)))
        if stream_id in self.by_id:
            return  # trailers from the client (gRPC requests have none)
        stream = Stream({name: value for name, value in fields})
        self.by_id[stream_id] = stream
        with self.lock:
            self.streams.append(stream)


class H2Sniffer:
    """A TCP proxy to `upstream_port` that records the request streams of every
    h2c connection through it."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.streams: list[Stream] = []
        self.parsers: list[_ClientFrames] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.closed = False
        self.sockets: list[socket.socket] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> H2Sniffer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.closed = True
        for sock in [self.listener, *self.sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            parser = _ClientFrames(self.streams, self.lock)
            self.parsers.append(parser)
            threading.Thread(target=self._pump, args=(client, upstream, parser), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket, parser: _ClientFrames | None) -> None:
        try:
            while True:
                data = source.recv(1 << 16)
                if not data:
                    break
                if parser is not None:
                    try:
                        parser.feed(data)
                    except Exception as error:  # noqa: BLE001 - kept, asserted on by the tests
                        parser.errors.append(repr(error))
                        parser = None
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (target, source):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def requests(self, path: str | None = None) -> list[Stream]:
        with self.lock:
            return [s for s in self.streams if path is None or s.headers.get(":path") == path]

    def errors(self) -> list[str]:
        return [e for p in self.parsers for e in p.errors]


# ----------------------------------------------------------------------------
# Sluice, and what the client sends it


def start(tmp_path, make_config, track):
    return rt.start_sluice(tmp_path, make_config, track)


def sluice_config(exporters: dict, batch: dict | None = None, traces: bool = False):
    """A config with the OTLP/HTTP receiver, a batch processor and the given
    `otlp` exporters (id → settings) in the logs (and traces) pipelines."""

    def make(ports: rt.Ports) -> dict:
        names = list(exporters)
        pipelines = {"logs": {"receivers": ["otlp"], "processors": ["batch"], "exporters": names}}
        if traces:
            pipelines["traces"] = {"receivers": ["otlp"], "processors": ["batch"], "exporters": names}
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "processors": {"batch": batch or {"send_batch_size": 2000, "timeout": "200ms"}},
            "exporters": exporters,
            "service": {
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": pipelines,
            },
        }

    return make


def plaintext(address: str, **settings) -> dict:
    out = {"endpoint": address, "tls": {"insecure": True}, "retry_on_failure": dict(FAST_RETRY)}
    out.update(settings)
    return out


def status(process, exporter: str = "otlp") -> dict:
    return rt.exporter_status(process.ports.url("metrics", "/status"))[exporter]


def metrics(process):
    return rt.scrape(process.ports.url("metrics", "/metrics"))


def log_request(prefix: str, start: int, count: int, body_bytes: int = 0) -> tuple[list[str], bytes]:
    """One ExportLogsServiceRequest (protobuf) of records `start..start+count`
    with unique event_ids; with `body_bytes`, each body is that many random
    (incompressible) bytes."""
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    request = logs_service_pb2.ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(KeyValue(key="service.name", value={"string_value": "ai-gateway"}))
    resource_logs.resource.attributes.append(KeyValue(key="host.name", value={"string_value": "gateway-pod-7"}))
    scope = resource_logs.scope_logs.add()
    scope.scope.name = "ai-gateway.audit"
    scope.scope.version = "2.14.0"
    ids = []
    for i in range(start, start + count):
        record = scope.log_records.add()
        record.time_unix_nano = samples.BASE_TIME + i * 1_000_000
        record.severity_number = 9 + i % 8
        record.severity_text = "INFO"
        if body_bytes:
            record.body.bytes_value = os.urandom(body_bytes)
        else:
            record.body.string_value = f"decision {i} by policy {i % 5}"
        event_id = f"{prefix}-{i:06d}"
        record.attributes.add(key="event_id").value.string_value = event_id
        record.attributes.add(key="tokens.prompt").value.int_value = i * 3
        ids.append(event_id)
    return ids, request.SerializeToString()


def post_logs(process, body: bytes) -> None:
    response = rt.post(process.ports.url("otlp", "/v1/logs"), body)
    assert response.status == 200, response


def post_requests(process, prefix: str, requests: int, per_request: int) -> list[str]:
    """`requests` requests of `per_request` records; returns their event ids."""
    ids = []
    for n in range(requests):
        batch_ids, body = log_request(prefix, n * per_request, per_request)
        post_logs(process, body)
        ids += batch_ids
    return ids


def wait_for_state(process, wanted: str, what: str, exporter: str = "otlp") -> dict:
    """Until /status shows the exporter in state `wanted` (with a last_error when degraded)."""

    def check():
        process.check_alive(what)
        entry = status(process, exporter)
        return entry if entry["status"] == wanted and (wanted != "degraded" or entry["last_error"]) else None

    return rt.wait_until(check, DELIVERY_TIMEOUT, what=f"/status to show {exporter} {wanted} ({what})")


def wait_delivered(process, destination: GRPCDestination, ids: list[str], what: str, exporter: str = "otlp") -> Counter:
    """Until every id arrived and the exporter has nothing left to deliver."""
    wanted = set(ids)

    def done():
        process.check_alive(what)
        arrived = destination.log_ids()
        if not wanted <= set(arrived):
            return False
        return status(process, exporter)["lag"]["items"] == 0 and arrived

    return rt.wait_until(done, DELIVERY_TIMEOUT, poll=0.1, what=what)


def dead_letters(process, exporter: str = "otlp") -> list[dict]:
    return read_dead_letters(process.data_dir / "dead-letter" / f"{exporter.replace('/', '_')}.ndjson")


def assert_once_each(arrived: Counter, ids: list[str], what: str) -> None:
    missing = [i for i in ids if i not in arrived]
    extra = [i for i in arrived if i not in set(ids)]
    duplicated = {k: n for k, n in arrived.items() if n > 1}
    assert not missing, f"{what}: {len(missing)} of {len(ids)} records lost, e.g. {missing[:10]}"
    assert not extra, f"{what}: records that were never sent arrived, e.g. {extra[:10]}"
    assert not duplicated, f"{what}: {len(duplicated)} records arrived more than once, e.g. {dict(list(duplicated.items())[:10])}"


# ----------------------------------------------------------------------------
# 1. Plaintext: the SDK's records, field for field, gzip and uncompressed

SDK_LOGS = 20_000
SDK_SPANS = 5_000


def test_plaintext_sdk_logs_and_spans_arrive_field_for_field_gzip_and_uncompressed(tmp_path, track_sluice):
    with GRPCDestination() as zipped, GRPCDestination() as plain, H2Sniffer(zipped.port) as zipped_wire, H2Sniffer(plain.port) as plain_wire:
        exporters = {
            "otlp/gzip": plaintext(
                zipped_wire.address,
                headers={"X-Tenant": "acme-security", "x-scope-orgid": "org_ACME"},
                authority="collector.gateway.internal:4317",
            ),
            "otlp/plain": plaintext(plain_wire.address, compression="none", headers={"X-Tenant": "plain"}),
        }
        process = start(
            tmp_path, sluice_config(exporters, {"send_batch_size": 2000, "timeout": "200ms"}, traces=True), track_sluice
        )
        # Logs and spans from two SDK threads at once.
        with futures.ThreadPoolExecutor(max_workers=2) as pool:
            logs = pool.submit(send_sdk_logs, process.ports.url("otlp", "/v1/logs"), SDK_LOGS)
            spans = pool.submit(send_sdk_spans, process.ports.url("otlp", "/v1/traces"), SDK_SPANS)
            sdk_logs, log_results = logs.result(timeout=DELIVERY_TIMEOUT * 2)
            sdk_spans, span_results = spans.result(timeout=DELIVERY_TIMEOUT * 2)
        assert log_results == Counter({"SUCCESS": SDK_LOGS}), log_results
        assert span_results == Counter({"SUCCESS": SDK_SPANS}), span_results

        def all_arrived():
            process.check_alive("receiving the SDK's load")
            for destination in (zipped, plain):
                if sum(c.items for c in destination.calls_snapshot() if c.answered == "OK" and c.signal == "logs") < SDK_LOGS:
                    return False
                if sum(c.items for c in destination.calls_snapshot() if c.answered == "OK" and c.signal == "traces") < SDK_SPANS:
                    return False
            return all(e["lag"]["items"] == 0 for e in rt.exporter_status(process.ports.url("metrics", "/status")).values())

        rt.wait_until(all_arrived, DELIVERY_TIMEOUT, poll=0.25, what="both gRPC servers to receive everything")
        time.sleep(0.3)  # a duplicate would be in flight now

        expected_logs = rt.flatten_logs([samples.proto_logs(sdk_logs)])
        expected_spans = rt.flatten_spans([samples.proto_spans(sdk_spans)])
        assert len(expected_logs) == SDK_LOGS and len(expected_spans) == SDK_SPANS
        for name, destination in (("otlp/gzip", zipped), ("otlp/plain", plain)):
            rt.assert_same_records(expected_logs, rt.flatten_logs(destination.messages("logs")), rt.log_key, f"SDK logs at the gRPC server of {name}")
            rt.assert_same_records(expected_spans, rt.flatten_spans(destination.messages("traces")), rt.span_key, f"SDK spans at the gRPC server of {name}")
            calls = destination.calls_snapshot()
            assert {c.answered for c in calls} == {"OK"}, Counter(c.answered for c in calls)
            assert {c.signal for c in calls} == {"logs", "traces"}
            for call in calls:
                assert call.metadata.get("user-agent", "").startswith("sluice/"), call.metadata

        # Custom headers are metadata, lower-cased, on every call of their exporter only.
        for call in zipped.calls_snapshot():
            assert call.metadata.get("x-tenant") == "acme-security" and call.metadata.get("x-scope-orgid") == "org_ACME", call.metadata
        for call in plain.calls_snapshot():
            assert call.metadata.get("x-tenant") == "plain" and "x-scope-orgid" not in call.metadata, call.metadata

        # On the wire: gRPC requests, gzip by default (flag and grpc-encoding), none when asked.
        for wire, destination, encoding in ((zipped_wire, zipped, "gzip"), (plain_wire, plain, None)):
            assert wire.errors() == [], wire.errors()
            streams = wire.requests()
            assert len(streams) == len(destination.calls_snapshot()), (len(streams), len(destination.calls_snapshot()))
            assert {s.headers.get(":path") for s in streams} == {LOGS_PATH, TRACES_PATH}
            for stream in streams:
                h = stream.headers
                assert h.get(":method") == "POST" and h.get(":scheme") == "http", h
                assert h.get("content-type", "").startswith("application/grpc"), h
                assert h.get("te") == "trailers", h
                assert h.get("grpc-timeout", "")[-1:] in ("H", "M", "S", "m", "u", "n") and h["grpc-timeout"][:-1].isdigit(), h
                assert h.get("grpc-encoding") == encoding, f"grpc-encoding {h.get('grpc-encoding')!r}, expected {encoding!r}: {h}"
                assert stream.compressed == (1 if encoding else 0), (stream.compressed, h)
        for stream in zipped_wire.requests():
            assert stream.headers.get(":authority") == "collector.gateway.internal:4317", stream.headers
        for stream in plain_wire.requests():
            assert stream.headers.get(":authority") == plain_wire.address, stream.headers

        m = metrics(process)
        for name in ("otlp/gzip", "otlp/plain"):
            assert rt.metric(m, "sluice_exporter_sent_items_total", exporter=name, signal="logs") == SDK_LOGS
            assert rt.metric(m, "sluice_exporter_sent_items_total", exporter=name, signal="traces") == SDK_SPANS
            entry = status(process, name)
            assert entry["status"] == "active" and entry["last_error"] is None, (name, entry)
        assert rt.metric(m, "sluice_exporter_dead_lettered_items_total") == 0
        assert rt.metric(m, "sluice_exporter_retries_total") == 0
        gz = sum(s.message_length for s in zipped_wire.requests())
        raw = sum(s.message_length for s in plain_wire.requests())
        print(f"\nplaintext: {SDK_LOGS} logs and {SDK_SPANS} spans; {len(zipped_wire.requests())} gzip calls ({gz} bytes), "
              f"{len(plain_wire.requests())} uncompressed calls ({raw} bytes)")
        assert gz < raw, "gzip did not make the messages any smaller"
        assert process.stop(timeout=60) == 0


# ----------------------------------------------------------------------------
# 2. TLS


def tls_server(pki, client_ca: bool = False):
    cert, key = pki.pair("server").read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=pki.ca.read_bytes() if client_ca else None, require_client_auth=client_ca
    )


def tls_exporter(address: str, **tls) -> dict:
    return {"endpoint": address, "tls": tls, "retry_on_failure": dict(FAST_RETRY)}


def test_tls_with_ca_file_delivers(tmp_path, track_sluice, pki):
    with GRPCDestination(tls_server(pki)) as destination:
        process = start(tmp_path, sluice_config({"otlp": tls_exporter(destination.address, ca_file=str(pki.ca))}), track_sluice)
        ids, body = log_request("tls", 0, 200)
        post_logs(process, body)
        arrived = wait_delivered(process, destination, ids, "the records to arrive over TLS")
        assert_once_each(arrived, ids, "TLS")
        assert status(process)["status"] == "active"
        assert dead_letters(process) == []


def test_tls_with_the_wrong_ca_delivers_nothing_and_says_why(tmp_path, track_sluice, pki):
    with GRPCDestination(tls_server(pki)) as destination:
        process = start(
            tmp_path, sluice_config({"otlp": tls_exporter(destination.address, ca_file=str(pki.dir / "other_ca.pem"))}), track_sluice
        )
        _, body = log_request("wrongca", 0, 50)
        post_logs(process, body)
        entry = wait_for_state(process, "degraded", "a TLS handshake with an unknown CA")
        error = entry["last_error"].lower()
        assert "certificate" in error or "verify" in error, f"last_error does not name the certificate problem: {entry['last_error']!r}"
        assert entry["lag"]["items"] == 50, entry
        assert destination.calls_snapshot() == [], "a call reached the server through an unverified TLS connection"
        assert dead_letters(process) == [], "a TLS failure is worth a retry, not the dead-letter file"
        print(f"\nwrong CA: last_error {entry['last_error']!r}")


def test_mutual_tls_with_client_certificate(tmp_path, track_sluice, pki):
    client = pki.pair("client")
    with GRPCDestination(tls_server(pki, client_ca=True)) as destination:
        exporters = {
            "otlp": tls_exporter(destination.address, ca_file=str(pki.ca), cert_file=str(client.cert), key_file=str(client.key)),
            # The same server without a client certificate: refused.
            "otlp/anonymous": tls_exporter(destination.address, ca_file=str(pki.ca)),
        }
        process = start(tmp_path, sluice_config(exporters), track_sluice)
        ids, body = log_request("mtls", 0, 100)
        post_logs(process, body)
        arrived = wait_delivered(process, destination, ids, "the records to arrive over mutual TLS")
        assert_once_each(arrived, ids, "mutual TLS")
        calls = destination.calls_snapshot()
        assert calls and all(c.peer_common_name == "gateway-client" for c in calls), [c.peer_common_name for c in calls]
        entry = wait_for_state(process, "degraded", "a server requiring a client certificate", "otlp/anonymous")
        assert entry["lag"]["items"] == 100, entry
        assert len(destination.calls_snapshot()) == len(calls), "a call without a client certificate reached the server"
        assert status(process)["status"] == "active"
        print(f"\nmutual TLS without a client certificate: last_error {entry['last_error']!r}")


# ----------------------------------------------------------------------------
# 3. UNAVAILABLE, then OK; the other retryable codes


def test_unavailable_degrades_then_recovers_delivering_each_record_once(tmp_path, track_sluice):
    with GRPCDestination() as destination:
        destination.fail(grpc.StatusCode.UNAVAILABLE, "collector is restarting", times=5)
        destination.hold()  # and after those, until /status showed it
        process = start(
            tmp_path, sluice_config({"otlp": plaintext(destination.address)}, {"send_batch_size": 500, "timeout": "100ms"}), track_sluice
        )
        ids = post_requests(process, "unavailable", 8, 250)
        entry = wait_for_state(process, "degraded", "UNAVAILABLE answers")
        assert "UNAVAILABLE" in (entry["last_error"] or ""), entry
        assert "collector is restarting" in entry["last_error"], entry
        assert entry["lag"]["items"] > 0, entry
        destination.release()
        arrived = wait_delivered(process, destination, ids, "everything to arrive after UNAVAILABLE")
        entry = rt.wait_until(lambda: (e := status(process))["status"] == "active" and e, DELIVERY_TIMEOUT, what="otlp active again")
        assert entry["lag"]["items"] == 0, entry
        time.sleep(0.3)
        assert_once_each(destination.log_ids(), ids, "after UNAVAILABLE")
        failed = [c for c in destination.calls_snapshot() if c.answered != "OK"]
        assert len(failed) >= 5 and {c.answered for c in failed} == {"UNAVAILABLE"}
        m = metrics(process)
        assert rt.metric(m, "sluice_exporter_retries_total", exporter="otlp") >= 5
        assert rt.metric(m, "sluice_exporter_dead_lettered_items_total") == 0
        assert rt.metric(m, "sluice_exporter_sent_items_total", exporter="otlp", signal="logs") == len(ids)
        assert dead_letters(process) == []


@pytest.mark.parametrize("code", ["CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "DATA_LOSS"])
def test_other_retryable_codes_are_retried(tmp_path, track_sluice, code):
    with GRPCDestination() as destination:
        destination.fail(getattr(grpc.StatusCode, code), f"try again ({code.lower()})", times=2)
        process = start(tmp_path, sluice_config({"otlp": plaintext(destination.address)}), track_sluice)
        ids, body = log_request(code.lower(), 0, 100)
        post_logs(process, body)
        arrived = wait_delivered(process, destination, ids, f"the records to arrive after {code}")
        time.sleep(0.2)
        answers = [c.answered for c in destination.calls_snapshot()]
        assert_once_each(destination.log_ids(), ids, f"after {code} (the server's answers: {answers}; sluice's log: {process.stderr_tail(3000)})")
        assert answers == [code, code, "OK"]
        assert dead_letters(process) == []
        assert arrived


# ----------------------------------------------------------------------------
# 4. RESOURCE_EXHAUSTED with RetryInfo; permanent codes


def test_resource_exhausted_with_retry_info_is_retried_after_its_delay(tmp_path, track_sluice):
    with GRPCDestination() as destination:
        destination.fail(grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limited", retry_delay=1.0)
        process = start(tmp_path, sluice_config({"otlp": plaintext(destination.address)}), track_sluice)
        ids, body = log_request("throttled", 0, 100)
        post_logs(process, body)
        wait_delivered(process, destination, ids, "the records to arrive after RESOURCE_EXHAUSTED with RetryInfo")
        time.sleep(0.2)
        assert_once_each(destination.log_ids(), ids, "after RESOURCE_EXHAUSTED with RetryInfo")
        calls = destination.calls_snapshot()
        assert [c.answered for c in calls] == ["RESOURCE_EXHAUSTED", "OK"], [c.answered for c in calls]
        # initial_interval is 100ms: only the RetryInfo's 1 s can explain a longer wait.
        gap = calls[1].at - calls[0].at
        assert gap >= 0.9, f"retried {gap:.3f}s after RESOURCE_EXHAUSTED; RetryInfo asked for 1s"
        assert dead_letters(process) == []
        assert rt.metric(metrics(process), "sluice_exporter_retries_total", exporter="otlp") == 1


PERMANENT = [
    ("INVALID_ARGUMENT", "log record 17: severity_number out of range", None),
    ("PERMISSION_DENIED", "tenant acme may not write here", None),
    ("UNAUTHENTICATED", "missing bearer token", None),
    ("UNIMPLEMENTED", "logs are not accepted here", None),
    # Without RetryInfo, and one request alone that cannot be split: final.
    ("RESOURCE_EXHAUSTED", "quota exceeded for the day", None),
]


@pytest.mark.parametrize("code,message,_", PERMANENT, ids=[p[0] for p in PERMANENT])
def test_permanent_codes_go_to_the_dead_letter_file(tmp_path, track_sluice, code, message, _):
    with GRPCDestination() as destination:
        destination.fail(getattr(grpc.StatusCode, code), message)
        process = start(tmp_path, sluice_config({"otlp": plaintext(destination.address)}), track_sluice)
        refused, body = log_request("refused", 0, 100)
        post_logs(process, body)
        rt.wait_until(lambda: len(dead_lettered_ids(dead_letters(process))) >= 100, DELIVERY_TIMEOUT, what="every record in the dead-letter file")
        # The line is in the file before the exporter commits past it: wait for the
        # commit rather than catch the moment between.
        rt.wait_until(lambda: status(process)["lag"]["items"] == 0, DELIVERY_TIMEOUT,
                      what="the exporter to commit past the dead-lettered records")
        lines = dead_letters(process)
        assert sorted(dead_lettered_ids(lines)) == sorted(refused)
        for line in lines:
            assert code in line["reason"], f"the dead-letter reason does not name {code}: {line['reason']!r}"
            assert message in line["reason"], line["reason"]
            assert line["exporter"] == "otlp" and line["signal"] == "logs", line
        entry = status(process)
        assert code in (entry["last_error"] or ""), entry
        assert entry["lag"]["items"] == 0, entry
        assert [c.answered for c in destination.calls_snapshot()] == [code], "a permanent failure was retried"

        # The next request goes through (the server is fine again).
        after, body = log_request("after", 0, 20)
        post_logs(process, body)
        wait_delivered(process, destination, after, f"records after {code}")
        assert set(destination.log_ids()) == set(after)
        m = metrics(process)
        assert rt.metric(m, "sluice_exporter_dead_lettered_items_total", exporter="otlp") == 100
        assert rt.metric(m, "sluice_exporter_retries_total", exporter="otlp") == 0
        print(f"\n{code}: dead-letter reason {lines[0]['reason']!r}")


# ----------------------------------------------------------------------------
# 5. A server's receive limit: merged requests are sent in halves until they fit

MIB = 1 << 20


MERGED_REQUESTS = 4
RECORDS_PER_BIG_REQUEST = 40


def start_merging(tmp_path, track, wire: H2Sniffer):
    """Sluice whose batch processor merges exactly MERGED_REQUESTS of the big
    requests into one call (~1.6 MB), by their record count: a time window (merge
    what arrives within a second) merged fewer of them when posting them was slow,
    and then there was nothing over the limit. The timeout only flushes a rest."""
    size = MERGED_REQUESTS * RECORDS_PER_BIG_REQUEST
    batch = {"send_batch_size": size, "send_batch_max_size": size, "timeout": "60s"}
    return start(tmp_path, sluice_config({"otlp": plaintext(wire.address)}, batch), track)


def post_big_requests(process, prefix: str, requests: int) -> tuple[list[str], list[bytes]]:
    """`requests` requests of ~400 KB of random bytes each (gzip cannot bring
    them under a limit); returns (event ids, request bodies)."""
    ids, bodies = [], []
    for n in range(requests):
        batch_ids, body = log_request(prefix, n * RECORDS_PER_BIG_REQUEST, RECORDS_PER_BIG_REQUEST, body_bytes=10_000)
        assert 390_000 < len(body) < 420_000, len(body)
        post_logs(process, body)
        ids += batch_ids
        bodies.append(body)
    return ids, bodies


def test_messages_over_the_servers_limit_are_split_until_they_fit(tmp_path, track_sluice):
    with GRPCDestination(max_receive_message_length=MIB) as destination, H2Sniffer(destination.port) as wire:
        process = start_merging(tmp_path, track_sluice, wire)
        ids, bodies = post_big_requests(process, "split", 2 * MERGED_REQUESTS)
        arrived = wait_delivered(process, destination, ids, "every record through the 1 MiB limit")
        time.sleep(0.3)
        assert_once_each(destination.log_ids(), ids, "split by the receive limit")
        # Field for field, bodies and all.
        expected = rt.flatten_logs([logs_service_pb2.ExportLogsServiceRequest.FromString(b) for b in bodies])
        rt.assert_same_records(expected, rt.flatten_logs(destination.messages("logs")), rt.log_key, "records split by the receive limit")
        assert arrived
        assert wire.errors() == [], wire.errors()
        streams = wire.requests(LOGS_PATH)
        sizes = [s.message_length for s in streams]
        assert any(size > MIB for size in sizes), f"no message was over 1 MiB; the test did not test anything: {sizes}"
        accepted = sum(c.items for c in destination.calls_snapshot() if c.answered == "OK")
        assert accepted == len(ids), (accepted, len(ids))
        assert dead_letters(process) == [], [line["reason"] for line in dead_letters(process)][:3]
        entry = status(process)
        assert entry["lag"]["items"] == 0, entry
        m = metrics(process)
        assert rt.metric(m, "sluice_exporter_dead_lettered_items_total") == 0
        assert rt.metric(m, "sluice_exporter_sent_items_total", exporter="otlp", signal="logs") == len(ids)
        print(f"\nreceive limit: message sizes sent {sizes}; {len(destination.calls_snapshot())} calls reached the servicer")


@pytest.mark.parametrize(
    "code,message",
    [("UNAVAILABLE", "collector is restarting"), ("INVALID_ARGUMENT", "log record refused")],
    ids=["second_half_retryable", "second_half_permanent"],
)
def test_a_failure_after_half_was_delivered_neither_resends_nor_dead_letters_that_half(tmp_path, track_sluice, code, message):
    """Four ~400 KB requests merged into one call over the 1 MiB limit: sent in
    halves; the first half is taken (OK), the second refused with `code`. The
    records of the first half were delivered: a retry must not send them again,
    and a permanent refusal must not put them in the dead-letter file."""
    with GRPCDestination(max_receive_message_length=MIB) as destination, H2Sniffer(destination.port) as wire:
        destination.succeed(1)
        destination.fail(getattr(grpc.StatusCode, code), message)
        process = start_merging(tmp_path, track_sluice, wire)
        ids, _ = post_big_requests(process, "half", MERGED_REQUESTS)
        rt.wait_until(lambda: status(process)["lag"]["items"] == 0 and len(destination.calls_snapshot()) >= 2, DELIVERY_TIMEOUT,
                      what="the exporter to finish with the four requests")
        time.sleep(0.3)
        sizes = [s.message_length for s in wire.requests(LOGS_PATH)]
        calls = destination.calls_snapshot()
        assert sizes[0] > MIB, f"the batch processor did not merge the four requests into one call (sizes {sizes}); nothing was tested"
        first_half = [rt.log_key(r) for r in rt.flatten_logs(destination.messages("logs")[:1])]
        assert calls[0].answered == "OK" and calls[1].answered == code, [c.answered for c in calls]
        arrived = destination.log_ids()
        dead = dead_lettered_ids(dead_letters(process))
        if code == "UNAVAILABLE":
            assert_once_each(arrived, ids, f"a merged call whose second half got {code} (message sizes {sizes})")
            assert dead == []
        else:
            twice = sorted(set(first_half) & set(dead))
            assert not twice, (
                f"{len(twice)} records both delivered (first half, answered OK) and in the dead-letter file with the second half's "
                f"{code}, e.g. {twice[:5]} (message sizes {sizes})"
            )
            assert sorted(dead) == sorted(set(ids) - set(first_half))
            assert_once_each(arrived, first_half, f"the first half of a merged call whose second half got {code}")


def test_h2c_new_connections_lose_no_server_frames(tmp_path, track_sluice):
    """Forty `otlp` exporters to one grpcio server: forty fresh h2c connections
    at once, one Export each. Every exporter's records arrive once, with no retry
    (the server answers OK to everything)."""
    exporters = 40
    with GRPCDestination() as destination:
        for round_ in range(2):
            config = {f"otlp/{i}": plaintext(destination.address, headers={"x-exporter": f"{round_}-{i}"}) for i in range(exporters)}
            process = start(tmp_path / f"round{round_}", sluice_config(config), track_sluice)
            _, body = log_request(f"conn{round_}", 0, 10)
            post_logs(process, body)
            statuses = process.ports.url("metrics", "/status")
            rt.wait_until(lambda: all(e["lag"]["items"] == 0 for e in rt.exporter_status(statuses).values()), DELIVERY_TIMEOUT,
                          what="every exporter to deliver")
            time.sleep(0.3)
            calls = Counter(c.metadata.get("x-exporter") for c in destination.calls_snapshot() if c.metadata.get("x-exporter", "").startswith(f"{round_}-"))
            retries = rt.metric(metrics(process), "sluice_exporter_retries_total")
            assert all(calls[f"{round_}-{i}"] == 1 for i in range(exporters)) and retries == 0, (
                f"round {round_}: {retries:.0f} retries though the server answered OK to every call; exporters whose records "
                f"arrived more than once: {sorted(k for k, n in calls.items() if n > 1)}"
            )
            assert process.stop(timeout=60) == 0


# ----------------------------------------------------------------------------
# auth.authenticator: a bearertokenauth extension's token as call metadata


def test_an_authenticator_extension_sends_its_token_on_every_call(tmp_path, track_sluice):
    """The published pattern `otlp_grpc: auth: {authenticator: bearertokenauth}`
    (the extension's README): its token is the `authorization` metadata of each
    call, read again from its file when that changes, and never in the log."""
    token_file = tmp_path / "token"
    token_file.write_text("first-grpc-token-7c1e\n")
    with GRPCDestination() as destination:
        def make(ports: rt.Ports) -> dict:
            config = sluice_config({"otlp_grpc": plaintext(destination.address, auth={"authenticator": "bearertokenauth"})},
                                   {"send_batch_size": 100, "timeout": "100ms"})(ports)
            config["extensions"] = {"bearertokenauth": {"filename": str(token_file)}}
            config["service"]["extensions"] = ["bearertokenauth"]
            return config

        process = start(tmp_path, make, track_sluice)
        first = post_requests(process, "auth-a", 2, 100)
        wait_delivered(process, destination, first, "records with the first token", exporter="otlp_grpc")
        token_file.write_text("second-grpc-token-9d2f\n")
        seen = lambda: {c.metadata.get("authorization") for c in destination.calls_snapshot()}  # noqa: E731
        second: list[str] = []

        def rotated():
            second.extend(post_requests(process, f"auth-b{len(second)}", 1, 100))
            return "Bearer second-grpc-token-9d2f" in seen()

        rt.wait_until(rotated, DELIVERY_TIMEOUT, poll=0.5, what="a call with the rotated token")
        assert seen() <= {"Bearer first-grpc-token-7c1e", "Bearer second-grpc-token-9d2f"}, seen()
        wait_delivered(process, destination, first + second, "every record", exporter="otlp_grpc")
        log = process.stderr()
        assert "first-grpc-token-7c1e" not in log and "second-grpc-token-9d2f" not in log
