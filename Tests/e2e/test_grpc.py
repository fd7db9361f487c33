"""OTLP/gRPC end to end: the real `sluice` binary with an `otlp` receiver whose
`protocols.grpc` is on, real gRPC clients (the OpenTelemetry Python SDK's gRPC
exporters and raw grpcio channels), and the `file` exporter's output compared
with what was sent, record by record and field by field.

1. The SDK's gRPC exporters deliver 50,000+ log records and 10,000+ spans over
   plaintext, TLS (server certificate) and mutual TLS with a bearer token.
2. Each service (logs, traces, metrics) answers a raw Export, and what was sent
   is in the file; grpc-encoding gzip works.
3. Status codes: malformed protobuf → INVALID_ARGUMENT; a message over
   max_recv_msg_size_mib (sent as is or gzip-compressed) → RESOURCE_EXHAUSTED;
   a full pipeline log → RESOURCE_EXHAUSTED (or UNAVAILABLE); no or a wrong
   bearer token → UNAUTHENTICATED, the right one → OK; a token file that changes
   on disk → the new token works and the old one is refused.

No assertion is about time: timeouts only keep a broken build from hanging.
"""

from __future__ import annotations

import gzip
import logging
import os
import sys
import threading
from collections import Counter
from pathlib import Path

import grpc
import pytest

import otlp_samples as samples
import receiver_setup as rs
import runtime_helpers as rt
from certs import pki  # noqa: F401 - the session fixture
from conftest import assert_messages_equal, request_class
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from test_replay import _request as logs_request

# The SDK exporters' own error lines would only repeat what the tests report.
logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
# grpcio honours http_proxy; these tests talk to 127.0.0.1 directly.
rt.env_without_proxies()
RPC_TIMEOUT = 60  # a guard against hanging only


# ----------------------------------------------------------------------------
# Telemetry made with the SDK (the codec tests' cases, plus bulk), once

SDK_LOG_BULK, LOG_BATCH = 50_000, 2_000
SDK_SPAN_BULK, SPAN_BATCH = 10_000, 1_000

@pytest.fixture(scope="module")
def sdk_telemetry():
    class Telemetry:
        logs = samples.sdk_log_records(bulk=SDK_LOG_BULK)
        spans = samples.sdk_spans(bulk=SDK_SPAN_BULK)

    t = Telemetry()
    t.expected_logs = rt.flatten_logs([samples.proto_logs(t.logs)])
    t.expected_spans = rt.flatten_spans([samples.proto_spans(t.spans)])
    return t


def log_key(single) -> str:
    """The codec cases have no event_id; their timestamps are unique."""
    record = single.scope_logs[0].log_records[0]
    return f"{record.time_unix_nano}/{record.observed_time_unix_nano}"


def span_key(single) -> str:
    span = single.scope_spans[0].spans[0]
    return f"{span.span_id.hex()}/{span.name}"


def export_in_batches(exporter, items: list, size: int) -> Counter:
    """Calls the SDK exporter's export() with `size` items at a time (what its
    batch processor does, without the wait); counts items by result."""
    results: Counter = Counter()
    try:
        for start in range(0, len(items), size):
            batch = items[start : start + size]
            results[exporter.export(batch).name] += len(batch)
    finally:
        exporter.shutdown()
    return results


# ----------------------------------------------------------------------------
# 1. The SDK over plaintext, TLS and mutual TLS

TRANSPORTS = ["plaintext", "tls", "mtls"]


def _sdk_exporters(transport: str, port: int, pki):
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    kwargs: dict = {"timeout": RPC_TIMEOUT}
    if transport == "plaintext":
        kwargs.update(endpoint=f"http://127.0.0.1:{port}", insecure=True)
    else:
        ca = pki.ca.read_bytes()
        if transport == "mtls":
            cert, key = pki.pair("client").read()
            kwargs["credentials"] = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
            kwargs["headers"] = {"authorization": f"Bearer {rs.TOKEN}"}
        else:
            kwargs["credentials"] = grpc.ssl_channel_credentials(root_certificates=ca)
            kwargs["compression"] = grpc.Compression.Gzip
        kwargs.update(endpoint=f"https://127.0.0.1:{port}", insecure=False)
    return OTLPLogExporter(**kwargs), OTLPSpanExporter(**kwargs)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sdk_grpc_exporter_delivers_field_for_field(transport, sdk_telemetry, pki, tmp_path, track_sluice):
    out = tmp_path / "out"

    def config(ports):
        grpc_settings: dict = {}
        extensions = None
        if transport != "plaintext":
            grpc_settings["tls"] = rs.tls_section(pki, tmp_path / "tls", mutual=transport == "mtls")
        if transport == "mtls":
            extensions, grpc_settings["auth"] = rs.bearer_auth()
        return rs.collector_config(ports, out, grpc=grpc_settings, extensions=extensions)

    process = rt.start_sluice(tmp_path, config, track_sluice)
    log_exporter, span_exporter = _sdk_exporters(transport, process.ports["grpc"], pki)
    results = {}

    def run(name, exporter, items, size):
        results[name] = export_in_batches(exporter, items, size)

    threads = [
        threading.Thread(target=run, args=("logs", log_exporter, sdk_telemetry.logs, LOG_BATCH)),
        threading.Thread(target=run, args=("spans", span_exporter, sdk_telemetry.spans, SPAN_BATCH)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=rs.DELIVERY_TIMEOUT)
        assert not thread.is_alive(), "the SDK's exporters did not finish"
    process.check_alive("the SDK's exports")
    assert results["logs"] == Counter({"SUCCESS": len(sdk_telemetry.logs)}), f"log exports over {transport}: {results['logs']}; sluice:\n{process.stderr_tail()}"
    assert results["spans"] == Counter({"SUCCESS": len(sdk_telemetry.spans)}), f"span exports over {transport}: {results['spans']}; sluice:\n{process.stderr_tail()}"

    rs.wait_exported(process)
    logs = rt.flatten_logs(rs.read_file_export(out / "logs.pb", "logs"))
    rt.assert_same_records(sdk_telemetry.expected_logs, logs, log_key, f"SDK gRPC logs ({transport}) in the file")
    spans = rt.flatten_spans(rs.read_file_export(out / "traces.pb", "traces"))
    rt.assert_same_records(sdk_telemetry.expected_spans, spans, span_key, f"SDK gRPC spans ({transport}) in the file")


# ----------------------------------------------------------------------------
# Raw gRPC calls


class Reply:
    def __init__(self, code: grpc.StatusCode, details: str | None, body: bytes | None, trailers=()):
        self.code, self.details, self.body = code, details, body
        self.trailers = dict(trailers or ())

    def __repr__(self) -> str:
        return f"<gRPC {self.code.name} {self.details!r}>"


def grpc_call(target: str, signal: str, payload: bytes, metadata=(), compression=None, credentials=None) -> Reply:
    """One unary Export with `payload` as the message's bytes, on a channel of
    its own; the status, whatever it is."""
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    if credentials is None:
        channel = grpc.insecure_channel(target, options=options, compression=compression)
    else:
        channel = grpc.secure_channel(target, credentials, options=options, compression=compression)
    with channel:
        export = channel.unary_unary(rs.GRPC_SERVICES[signal], request_serializer=None, response_deserializer=None)
        try:
            body, call = export.with_call(payload, timeout=RPC_TIMEOUT, metadata=metadata)
            return Reply(call.code(), call.details(), body, call.trailing_metadata())
        except grpc.RpcError as error:
            return Reply(error.code(), error.details(), None, error.trailing_metadata())


def assert_ok(reply: Reply, signal: str) -> None:
    """OK, with an Export*ServiceResponse that reports no partial success."""
    assert reply.code == grpc.StatusCode.OK, reply
    request = request_class(signal)
    response_class = getattr(sys.modules[request.__module__], request.__name__.replace("Request", "Response"))
    response = response_class.FromString(reply.body)
    assert not response.HasField("partial_success") or response.partial_success.ListFields() == [], response


def logs_of_size(size: int, prefix: str) -> bytes:
    """A valid logs request of at least `size` bytes (one record, a long body)."""
    message = ExportLogsServiceRequest.FromString(logs_request([f"{prefix}-big"]))
    message.resource_logs[0].scope_logs[0].log_records[0].body.string_value = "x" * size
    return message.SerializeToString()


def event_ids_in_file(out: Path) -> Counter:
    ids: Counter = Counter()
    for single in rt.flatten_logs(rs.read_file_export(out / "logs.pb", "logs")):
        key = rt.log_key(single)
        if key is not None:
            ids[key] += 1
    return ids


MAX_RECV_MIB = 1


def module_sluice(tmp_path_factory, track, name: str, grpc_settings: dict, extensions: dict | None = None):
    """A sluice for a module's tests, with gRPC on, into files; stopped after."""
    workdir = tmp_path_factory.mktemp(name)
    process = rt.start_sluice(
        workdir, lambda ports: rs.collector_config(ports, workdir / "out", grpc=grpc_settings, extensions=extensions), track
    )
    process.out = workdir / "out"
    process.target = process.ports.address("grpc")
    yield process
    process.stop(timeout=60)


@pytest.fixture(scope="module")
def plain_grpc(tmp_path_factory, track_sluice_module):
    """gRPC in plaintext, max_recv_msg_size_mib: 1, no auth."""
    yield from module_sluice(tmp_path_factory, track_sluice_module, "grpc-plain", {"max_recv_msg_size_mib": MAX_RECV_MIB})


ROUND_TRIPS = {
    "logs": (lambda: samples.proto_logs(samples.sdk_log_records()), rt.flatten_logs, log_key),
    "traces": (lambda: samples.proto_spans(samples.sdk_spans()), rt.flatten_spans, span_key),
}


@pytest.mark.parametrize("signal", list(ROUND_TRIPS))
def test_raw_export_arrives_field_for_field(plain_grpc, signal):
    """The codec tests' cases (every attribute type, ids, unicode, limits) in one
    Export to the signal's service; the file has them as sent."""
    make, flatten, key = ROUND_TRIPS[signal]
    message = make()
    assert_ok(grpc_call(plain_grpc.target, signal, message.SerializeToString()), signal)
    rs.wait_exported(plain_grpc)
    expected = flatten([message])
    keys = {key(e) for e in expected}
    arrived = [r for r in flatten(rs.read_file_export(plain_grpc.out / f"{signal}.pb", signal)) if key(r) in keys]
    rt.assert_same_records(expected, arrived, key, f"{signal} sent with a raw gRPC Export")


def test_metrics_service_export_arrives(plain_grpc):
    message = samples.proto_metrics(samples.sdk_metrics_data())
    reply = grpc_call(plain_grpc.target, "metrics", message.SerializeToString())
    assert_ok(reply, "metrics")
    rs.wait_exported(plain_grpc)
    arrived = rs.read_file_export(plain_grpc.out / "metrics.pb", "metrics")
    assert len(arrived) == 1, f"one metrics request was sent, the file has {len(arrived)}"
    assert_messages_equal(arrived[0], message, "metrics sent with a raw gRPC Export")


@pytest.mark.parametrize("signal", rs.SIGNALS)
def test_gzip_compressed_export_arrives(plain_grpc, signal):
    """grpc-encoding: gzip on the channel; the request arrives intact."""
    if signal == "logs":
        message = ExportLogsServiceRequest.FromString(logs_request([f"gzip-{i}" for i in range(200)]))
    elif signal == "traces":
        message = samples.proto_spans(samples.sdk_spans()[:5])
        for resource_spans in message.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    span.name = f"gzip {span.name}"  # not the same records as the round trip's
    else:
        message = samples.proto_metrics(samples.sdk_metrics_data())
    before = rs.count_records(rs.read_file_export(plain_grpc.out / f"{signal}.pb", signal), signal)
    reply = grpc_call(plain_grpc.target, signal, message.SerializeToString(), compression=grpc.Compression.Gzip)
    assert_ok(reply, signal)
    rs.wait_exported(plain_grpc)
    after = rs.count_records(rs.read_file_export(plain_grpc.out / f"{signal}.pb", signal), signal)
    assert after - before == rs.count_records([message], signal)
    if signal == "logs":
        ids = event_ids_in_file(plain_grpc.out)
        assert all(ids[f"gzip-{i}"] == 1 for i in range(200)), "every gzip-compressed record, once"


MALFORMED = {
    "garbage bytes": b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    "truncated length-delimited field": b"\x0a\x80\x01\x0a\x02",
    "field number 0": b"\x02\x00",
    "wrong wire type for resource_logs": b"\x0d\x00\x00\x00\x00",
    "end group without start": b"\x0c",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_protobuf_is_invalid_argument(plain_grpc, name):
    for signal in rs.SIGNALS:
        reply = grpc_call(plain_grpc.target, signal, MALFORMED[name])
        assert reply.code == grpc.StatusCode.INVALID_ARGUMENT, f"{signal}, {name}: {reply}"
        assert reply.details, f"{signal}, {name}: INVALID_ARGUMENT should say what is wrong"
    plain_grpc.check_alive(name)
    assert_ok(grpc_call(plain_grpc.target, "logs", logs_request([f"after-{name}"])), "logs")


def test_message_over_max_recv_msg_size_is_resource_exhausted(plain_grpc):
    limit = MAX_RECV_MIB << 20
    over = logs_of_size(limit + 1024, "over")
    assert len(over) > limit
    reply = grpc_call(plain_grpc.target, "logs", over)
    assert reply.code == grpc.StatusCode.RESOURCE_EXHAUSTED, reply
    # Compressed, it is small on the wire; decompressed it is still too big.
    reply = grpc_call(plain_grpc.target, "logs", over, compression=grpc.Compression.Gzip)
    assert reply.code == grpc.StatusCode.RESOURCE_EXHAUSTED, f"gzip-compressed, {len(gzip.compress(over))} bytes on the wire: {reply}"
    plain_grpc.check_alive("oversized messages")
    # Just under the limit is taken.
    under = logs_of_size(limit - 4096, "under")
    assert len(under) <= limit
    assert_ok(grpc_call(plain_grpc.target, "logs", under), "logs")
    rs.wait_exported(plain_grpc)
    ids = event_ids_in_file(plain_grpc.out)
    assert ids["under-big"] == 1 and ids["over-big"] == 0, ids


def test_unknown_method_is_unimplemented(plain_grpc):
    with grpc.insecure_channel(plain_grpc.target) as channel:
        call = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Nope")
        with pytest.raises(grpc.RpcError) as error:
            call(b"", timeout=RPC_TIMEOUT)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED, error.value


def test_full_pipeline_log_is_resource_exhausted(tmp_path, track_sluice):
    """An exporter that cannot deliver (nothing listens at its endpoint) and a
    log of about two requests: once it is full, Export answers RESOURCE_EXHAUSTED
    (UNAVAILABLE is what the Collector answers; both make SDKs retry)."""
    dead = rt.free_port()

    def config(ports):
        exporters = {"logs": {"otlphttp": {
            "endpoint": f"http://127.0.0.1:{dead}",
            "retry_on_failure": {"initial_interval": "1s", "max_interval": "1s"},
            # The memory log counts each request's protobuf (56 bytes here; the
            # decoded batches it also keeps are let go before it refuses anything).
            "sending_queue": {"sizer": "bytes", "queue_size": 120},
        }}}
        return rs.collector_config(ports, tmp_path / "out", grpc={}, exporters=exporters)

    process = rt.start_sluice(tmp_path, config, track_sluice)
    target = process.ports.address("grpc")
    replies = [grpc_call(target, "logs", logs_request([f"full-{i}"])) for i in range(10)]
    codes = [reply.code for reply in replies]
    assert codes[0] == grpc.StatusCode.OK, replies
    refused = [reply for reply in replies if reply.code != grpc.StatusCode.OK]
    assert refused, f"ten requests into a log of two, all OK: {codes}"
    assert all(r.code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE) for r in refused), replies
    process.check_alive("a full log")


# ----------------------------------------------------------------------------
# bearertokenauth


@pytest.fixture(scope="module")
def authed_grpc(tmp_path_factory, track_sluice_module):
    extensions, auth = rs.bearer_auth()
    yield from module_sluice(tmp_path_factory, track_sluice_module, "grpc-auth", {"auth": auth}, extensions)


UNAUTHENTICATED_METADATA = {
    "no authorization": (),
    "wrong token": (("authorization", "Bearer wrong"),),
    "token with a different last byte": (("authorization", f"Bearer {rs.TOKEN[:-1]}X"),),
    "token prefix": (("authorization", f"Bearer {rs.TOKEN[:-1]}"),),
    "token without scheme": (("authorization", rs.TOKEN),),
    "other scheme": (("authorization", f"Basic {rs.TOKEN}"),),
    "empty": (("authorization", ""),),
}


@pytest.mark.parametrize("name", list(UNAUTHENTICATED_METADATA))
def test_without_the_right_token_unauthenticated(authed_grpc, name):
    for signal in rs.SIGNALS:
        payload = logs_request([f"unauth-{name}"]) if signal == "logs" else b""
        reply = grpc_call(authed_grpc.target, signal, payload, metadata=UNAUTHENTICATED_METADATA[name])
        assert reply.code == grpc.StatusCode.UNAUTHENTICATED, f"{signal}, {name}: {reply}"
    rs.wait_exported(authed_grpc)
    assert event_ids_in_file(authed_grpc.out)[f"unauth-{name}"] == 0, "refused data must not be exported"


def test_right_token_ok_and_never_logged(authed_grpc):
    for signal, payload in (("logs", logs_request(["authed-1"])), ("traces", b""), ("metrics", b"")):
        reply = grpc_call(authed_grpc.target, signal, payload, metadata=(("authorization", f"Bearer {rs.TOKEN}"),))
        assert_ok(reply, signal)
    rs.wait_exported(authed_grpc)
    assert event_ids_in_file(authed_grpc.out)["authed-1"] == 1
    assert rs.TOKEN not in authed_grpc.stderr(), "the token appears in sluice's log"


def test_token_file_rotation(tmp_path, track_sluice):
    """`filename:` is re-read when the file changes: the new token works without
    a restart, the old one is refused from then on."""
    token_file = tmp_path / "token"
    token_file.write_text("first-token-1\n")

    def config(ports):
        extensions, auth = rs.bearer_auth({"filename": str(token_file)})
        return rs.collector_config(ports, tmp_path / "out", grpc={"auth": auth}, extensions=extensions)

    process = rt.start_sluice(tmp_path, config, track_sluice)
    target = process.ports.address("grpc")

    def send(token: str, event_id: str) -> Reply:
        return grpc_call(target, "logs", logs_request([event_id]), metadata=(("authorization", f"Bearer {token}"),))

    assert_ok(send("first-token-1", "rot-0"), "logs")
    assert send("second-token-2", "rot-1").code == grpc.StatusCode.UNAUTHENTICATED

    # Replace the file the way a secret volume update does (a rename).
    tmp = tmp_path / ".token.new"
    tmp.write_text("second-token-2\n")
    os.replace(tmp, token_file)
    attempts = iter(range(10**6))
    rt.wait_until(lambda: send("second-token-2", f"rot-new-{next(attempts)}").code == grpc.StatusCode.OK, 60,
                  poll=0.25, what="the new token to be accepted")
    reply = send("first-token-1", "rot-old")
    assert reply.code == grpc.StatusCode.UNAUTHENTICATED, f"the old token after rotation: {reply}"
    process.check_alive("a token rotation")
    text = process.stderr()
    assert "first-token-1" not in text and "second-token-2" not in text, "a token appears in sluice's log"


# ----------------------------------------------------------------------------
# Shutdown


class Stopped:
    """What a client exporting in a loop saw while sluice was told to stop."""


@pytest.fixture
def stopped_while_exporting(tmp_path, track_sluice) -> Stopped:
    out = tmp_path / "out"
    process = rt.start_sluice(tmp_path, lambda ports: rs.collector_config(ports, out, grpc={}), track_sluice)
    target = process.ports.address("grpc")
    result = Stopped()
    result.codes, result.details, result.acknowledged = Counter(), {}, []
    started = threading.Event()

    def client():
        with grpc.insecure_channel(target) as channel:
            export = channel.unary_unary(rs.GRPC_SERVICES["logs"], request_serializer=None, response_deserializer=None)
            for n in range(10**6):
                ids = [f"term-{n}-{i}" for i in range(20)]
                try:
                    export(logs_request(ids), timeout=RPC_TIMEOUT)
                    result.codes[grpc.StatusCode.OK] += 1
                    result.acknowledged.extend(ids)
                except grpc.RpcError as error:
                    result.codes[error.code()] += 1
                    result.details.setdefault(error.code(), (n, started.is_set(), error.details()))
                    if error.code() == grpc.StatusCode.UNAVAILABLE and not process.alive():
                        return
                if n == 100:
                    started.set()

    thread = threading.Thread(target=client)
    thread.start()
    assert started.wait(RPC_TIMEOUT), "the client did not get going"
    result.returncode = process.stop(timeout=60)
    thread.join(timeout=RPC_TIMEOUT * 2)
    assert not thread.is_alive(), "the client kept going after sluice exited"
    result.stderr = process.stderr_tail()
    result.arrived = event_ids_in_file(out)
    return result


def test_sigterm_while_exporting_loses_nothing_acknowledged(stopped_while_exporting):
    """sluice exits 0, and every record answered OK is in the file exactly once."""
    s = stopped_while_exporting
    assert s.returncode == 0, f"sluice exited with {s.returncode}:\n{s.stderr}"
    missing = [i for i in s.acknowledged if s.arrived[i] != 1]
    assert not missing, f"{len(missing)} of {len(s.acknowledged)} acknowledged records not in the file exactly once, e.g. {missing[:5]}"


def test_sigterm_while_exporting_answers_ok_or_unavailable(stopped_while_exporting):
    """Every answer is OK or UNAVAILABLE: shutting down is not a full log."""
    s = stopped_while_exporting
    allowed = {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
    assert set(s.codes) <= allowed, f"{s.codes}; the first of each (request, after SIGTERM, details): {s.details}"
