"""TLS and bearer-token authentication on the OTLP receivers, end to end, with
real clients: curl, `openssl s_client`, Python's ssl module and grpcio, against
certificates made by `openssl` for this session (certs.py).

1. curl --http2 over TLS gets HTTP/2 200 (ALPN h2); HTTP/1.1 over TLS too.
2. TLS 1.0 and 1.1 are refused (and logged), 1.2 and 1.3 accepted; the client
   is first shown to really offer 1.0/1.1 (against an `openssl s_server` that
   allows them), so a refusal is sluice's.
3. Mutual TLS: no client certificate, an expired one and one from an unknown CA
   are refused at the handshake, on the HTTP and gRPC ports, each with a
   warning that names the reason; a good one is served.
4. bearertokenauth on HTTP: 401 with WWW-Authenticate: Bearer without or with a
   wrong token, 200 with it, over HTTP/1.1 and HTTP/2; the token is never logged.
5. A rotated server certificate on disk is served to new connections after
   reload_interval, without a restart.

No assertion is about time: timeouts only keep a broken build from hanging.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import subprocess
from pathlib import Path

import grpc
import pytest

import receiver_setup as rs
import runtime_helpers as rt
from certs import SERVER_SERIALS, pki  # noqa: F401 - the session fixture
from test_replay import _request as logs_request

BODY = logs_request(["tls-0"])
CURL_TIMEOUT = 60  # a guard against hanging only


@pytest.fixture(scope="module")
def body_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tls-body") / "logs.pb"
    path.write_bytes(BODY)
    return path


def _tls_sluice(tmp_path_factory, track, pki, name: str, mutual: bool):
    """HTTP and gRPC over TLS (the same certificate); with `mutual`, client
    certificates from the test CA are required and HTTP and gRPC need the
    bearer token too (the configuration of the issue)."""
    workdir = tmp_path_factory.mktemp(name)

    def config(ports):
        tls = rs.tls_section(pki, workdir / "tls", mutual=mutual)
        protocol = {"tls": tls}
        extensions = None
        if mutual:
            extensions, protocol["auth"] = rs.bearer_auth()
        return rs.collector_config(ports, workdir / "out", grpc=dict(protocol), http=dict(protocol), extensions=extensions)

    process = rt.start_sluice(workdir, config, track)
    yield process
    process.stop(timeout=60)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, track_sluice_module, pki):
    yield from _tls_sluice(tmp_path_factory, track_sluice_module, pki, "tls", mutual=False)


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, track_sluice_module, pki):
    yield from _tls_sluice(tmp_path_factory, track_sluice_module, pki, "mtls", mutual=True)


def curl(port: int, pki, *args: str, body_file: Path | None = None) -> tuple[str, str, str]:
    """(status, HTTP version, stderr) of a curl POST to https://127.0.0.1:port/v1/logs."""
    command = ["curl", "-sS", "--cacert", str(pki.ca), "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
               "-H", "Content-Type: application/x-protobuf", *args]
    if body_file is not None:
        command += ["--data-binary", f"@{body_file}"]
    result = subprocess.run(command + [f"https://127.0.0.1:{port}/v1/logs"], capture_output=True, text=True, timeout=CURL_TIMEOUT)
    status, _, version = result.stdout.partition(" ")
    return status, version, result.stderr


def client_context(pki, cert: str | None = None, max_version: ssl.TLSVersion | None = None, alpn=("http/1.1",)) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(*map(str, (pki.pair(cert).cert, pki.pair(cert).key)))
    if max_version is not None:
        context.maximum_version = max_version
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def https_post(port: int, context: ssl.SSLContext, headers: dict | None = None) -> rt.Response:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=CURL_TIMEOUT)
    try:
        connection.request("POST", "/v1/logs", body=BODY, headers={"Content-Type": "application/x-protobuf", **(headers or {})})
        response = connection.getresponse()
        return rt.Response(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


AUTH = {"Authorization": f"Bearer {rs.TOKEN}"}


# ----------------------------------------------------------------------------
# 1. HTTP/2 and HTTP/1.1 over TLS


def test_curl_http2_over_tls(tls_server, pki, body_file):
    port = tls_server.ports["http"]
    status, version, stderr = curl(port, pki, "--http2", body_file=body_file)
    assert (status, version) == ("200", "2"), f"curl --http2: {status} HTTP/{version}; {stderr}"
    status, version, stderr = curl(port, pki, "--http1.1", body_file=body_file)
    assert (status, version) == ("200", "1.1"), f"curl --http1.1: {status} HTTP/{version}; {stderr}"
    # A client without ALPN gets HTTP/1.1.
    status, version, stderr = curl(port, pki, "--http1.1", "--no-alpn", body_file=body_file)
    assert (status, version) == ("200", "1.1"), f"curl --no-alpn: {status} HTTP/{version}; {stderr}"


ALPN_CASES = [("h2", "h2"), ("http/1.1", "http/1.1"), ("h2,http/1.1", "h2"), ("http/1.1,h2", "h2")]


@pytest.mark.parametrize("protocol, offered, chosen", [("http", *case) for case in ALPN_CASES]
                         + [("grpc", *case) for case in ALPN_CASES if case[1] == "h2"])  # gRPC is h2 only
def test_alpn(tls_server, pki, protocol, offered, chosen):
    result = rs.openssl_s_client(tls_server.ports[protocol], "-CAfile", str(pki.ca), "-alpn", offered)
    out = result.stdout.decode(errors="replace")
    assert f"ALPN protocol: {chosen}" in out, f"offered {offered}, expected {chosen}:\n{out[-1500:]}"


def test_grpc_over_tls_with_a_raw_channel(tls_server, pki):
    from test_grpc import assert_ok, grpc_call

    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    assert_ok(grpc_call(f"127.0.0.1:{tls_server.ports['grpc']}", "logs", BODY, credentials=credentials), "logs")
    # And plaintext on the TLS port is not taken.
    reply = grpc_call(f"127.0.0.1:{tls_server.ports['grpc']}", "logs", BODY)
    assert reply.code == grpc.StatusCode.UNAVAILABLE, reply


# ----------------------------------------------------------------------------
# 2. Protocol versions

LEGACY = ["-cipher", "DEFAULT@SECLEVEL=0"]  # lets this OpenSSL client offer TLS 1.0/1.1 at all
VERSIONS = {"-tls1": "TLSv1", "-tls1_1": "TLSv1.1", "-tls1_2": "TLSv1.2", "-tls1_3": "TLSv1.3"}


def _negotiated(result: subprocess.CompletedProcess) -> str | None:
    """The version s_client negotiated, None if the handshake failed. The
    session block's "Protocol :" is the version (TLS 1.3 sessions come later and
    may be missing; then the "New, TLSv1.3" line says it: for older versions
    that line names the cipher's version, not the connection's)."""
    out = result.stdout.decode(errors="replace")
    new = re.search(r"^New, (\S+), Cipher is (\S+)", out, re.MULTILINE)
    if result.returncode != 0 or new is None or new.group(2) == "(NONE)":
        return None
    protocol = re.search(r"^\s*Protocol\s*:\s*(\S+)", out, re.MULTILINE)
    return protocol.group(1) if protocol else new.group(1)


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_the_client_really_offers_legacy_versions(tmp_path, pki, flag):
    """The refusals below mean something only if the client offers the version:
    an openssl s_server that allows it completes the handshake."""
    port = rt.free_port()
    pair = pki.pair("server")
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(pair.cert), "-key", str(pair.key),
                               flag, *LEGACY, "-quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        rt.wait_until(lambda: _port_open(port) or server.poll() is not None, 30, what="openssl s_server")
        assert server.poll() is None, "openssl s_server exited"
        result = rs.openssl_s_client(port, "-CAfile", str(pki.ca), flag, *LEGACY)
        assert _negotiated(result) == VERSIONS[flag], result.stdout.decode(errors="replace")[-1500:]
    finally:
        server.kill()
        server.wait()


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_legacy_tls_versions_refused_and_logged(tls_server, pki, protocol, flag):
    pattern = r"protocol version|unsupported protocol|version too low|wrong version"
    before = len(rs.warnings_matching(tls_server, pattern))
    result = rs.openssl_s_client(tls_server.ports[protocol], "-CAfile", str(pki.ca), flag, *LEGACY)
    assert _negotiated(result) is None, f"{flag} was accepted:\n{result.stdout.decode(errors='replace')[-1500:]}"
    rs.wait_new_warning(tls_server, pattern, before, f"the protocol version after {flag}")
    tls_server.check_alive(flag)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("flag", ["-tls1_2", "-tls1_3"])
def test_tls12_and_13_accepted(tls_server, pki, protocol, flag):
    result = rs.openssl_s_client(tls_server.ports[protocol], "-CAfile", str(pki.ca), flag, "-verify_return_error")
    out = result.stdout.decode(errors="replace")
    assert _negotiated(result) == VERSIONS[flag], out[-1500:]
    assert "Verify return code: 0 (ok)" in out, out[-1500:]


# ----------------------------------------------------------------------------
# 3. Mutual TLS

BAD_CLIENTS = {
    "no client certificate": (None, r"no client certificate|did not return a certificate|certificate required|no certificate"),
    "expired client certificate": ("expired", r"expired"),
    "client certificate from an unknown CA": ("wrong_ca", r"unknown ca|unknown certificate authority|unable to get local issuer|untrusted|issuer"),
}


def _handshake_refused(port: int, context: ssl.SSLContext) -> str:
    """Connects, and sends a request once the handshake is done (in TLS 1.3 the
    server checks the client's certificate after the client thinks it is done);
    returns how it failed, or fails the test if an HTTP answer came."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=CURL_TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                            b"Authorization: Bearer " + rs.TOKEN.encode() + b"\r\nContent-Length: " + str(len(BODY)).encode()
                            + b"\r\n\r\n" + BODY)
                data = tls.recv(1024)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as error:
        return f"{type(error).__name__}: {error}"
    assert not data, f"the server answered a refused client: {data[:200]!r}"
    return "closed without an answer"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["TLS1.2", "TLS1.3"])
@pytest.mark.parametrize("case", list(BAD_CLIENTS))
def test_bad_client_certificates_refused_and_logged_http(mtls_server, pki, case, version):
    cert, pattern = BAD_CLIENTS[case]
    before = len(rs.warnings_matching(mtls_server, pattern))
    how = _handshake_refused(mtls_server.ports["http"], client_context(pki, cert, max_version=version))
    assert how, case
    rs.wait_new_warning(mtls_server, pattern, before, case)
    mtls_server.check_alive(case)


@pytest.mark.parametrize("case", list(BAD_CLIENTS))
def test_bad_client_certificates_refused_grpc(mtls_server, pki, case):
    from test_grpc import grpc_call

    cert, pattern = BAD_CLIENTS[case]
    before = len(rs.warnings_matching(mtls_server, pattern))
    pair = pki.pair(cert).read() if cert else (None, None)
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes(), certificate_chain=pair[0], private_key=pair[1])
    reply = grpc_call(f"127.0.0.1:{mtls_server.ports['grpc']}", "logs", BODY, metadata=(("authorization", f"Bearer {rs.TOKEN}"),),
                      credentials=credentials)
    assert reply.code == grpc.StatusCode.UNAVAILABLE, f"{case}: {reply}"
    rs.wait_new_warning(mtls_server, pattern, before, f"{case} (gRPC port)")


def test_good_client_certificate_served(mtls_server, pki):
    from test_grpc import assert_ok, grpc_call

    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        response = https_post(mtls_server.ports["http"], client_context(pki, "client", max_version=version), AUTH)
        assert response.status == 200, f"{version.name}: {response}"
    cert, key = pki.pair("client").read()
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes(), private_key=key, certificate_chain=cert)
    reply = grpc_call(f"127.0.0.1:{mtls_server.ports['grpc']}", "logs", BODY, metadata=(("authorization", f"Bearer {rs.TOKEN}"),),
                      credentials=credentials)
    assert_ok(reply, "logs")


# ----------------------------------------------------------------------------
# 4. bearertokenauth on HTTP


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {rs.TOKEN}x"},
                                     {"Authorization": rs.TOKEN}, {"Authorization": f"Basic {rs.TOKEN}"}],
                         ids=["none", "wrong", "longer", "no scheme", "basic"])
def test_http_without_the_right_token_is_401(mtls_server, pki, headers):
    response = https_post(mtls_server.ports["http"], client_context(pki, "client"), headers)
    assert response.status == 401, response
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer"), response.headers


def test_http_token_over_http2_and_never_logged(mtls_server, pki, body_file):
    client = ["--cert", str(pki.pair("client").cert), "--key", str(pki.pair("client").key), "--http2"]
    status, version, stderr = curl(mtls_server.ports["http"], pki, *client, "-H", f"Authorization: Bearer {rs.TOKEN}", body_file=body_file)
    assert (status, version) == ("200", "2"), f"{status} HTTP/{version}: {stderr}"
    status, version, stderr = curl(mtls_server.ports["http"], pki, *client, "-H", "Authorization: Bearer nope", body_file=body_file)
    assert (status, version) == ("401", "2"), f"{status} HTTP/{version}: {stderr}"
    assert rs.TOKEN not in mtls_server.stderr(), "the token appears in sluice's log"


# ----------------------------------------------------------------------------
# 5. Certificate rotation


def test_rotated_server_certificate_served_without_restart(tmp_path, track_sluice, pki, body_file):
    tls_dir = tmp_path / "tls"

    def config(ports):
        tls = rs.tls_section(pki, tls_dir, reload_interval="1s")
        return rs.collector_config(ports, tmp_path / "out", grpc={"tls": tls}, http={"tls": dict(tls)})

    process = rt.start_sluice(tmp_path, config, track_sluice)
    pid = process.pid
    for protocol in ("http", "grpc"):
        served = rs.served_certificate(process.ports[protocol], pki)
        assert served["serial"] == SERVER_SERIALS["server"] and "sluice-server-1" in served["subject"], (protocol, served)

    pki.install_server(tls_dir, "server2")
    for protocol in ("http", "grpc"):
        served = rt.wait_until(
            lambda: (lambda s: s if s["serial"] == SERVER_SERIALS["server2"] else None)(rs.served_certificate(process.ports[protocol], pki)),
            60, poll=0.5, what=f"the rotated certificate on the {protocol} port",
        )
        assert "sluice-server-2" in served["subject"], served
    assert process.pid == pid and process.alive(), "sluice restarted"
    status, version, stderr = curl(process.ports["http"], pki, "--http2", body_file=body_file)
    assert (status, version) == ("200", "2"), f"after the rotation: {status} HTTP/{version}; {stderr}"
