"""The `awscloudwatchlogs` exporter end to end: the real `sluice` binary, the
OpenTelemetry Python SDK in front of it, and moto (cloudwatch_server.py) behind it
as CloudWatch Logs, STS and IAM with signature and policy checks on (issue 13).

1. 50,000 SDK records are read back with boto3 `get_log_events`, in order, each
   exactly once, through each credential path: an access key in the environment,
   a web identity (IRSA, through STS AssumeRoleWithWebIdentity) and container
   credentials (EKS Pod Identity, from an agent that checks its token).
2. A wrong secret key is refused by moto: the exporter is `failed` with a permanent
   error naming the credential source in /status and the log, the records are in
   the dead-letter file, and the secret appears nowhere.
3. `role_arn`: the group is created with its retention and tags, each pod writes
   its own stream (`{k8s.pod.name}`), an event older than CloudWatch Logs takes is
   dead-lettered with the reason instead of being sent.

No assertion is about time: timeouts only keep a broken build from hanging.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import boto3
import pytest

import runtime_helpers as rt
from test_splunk_hec import dead_lettered_ids, gateway_attributes, read_dead_letters, send_sdk_logs

rt.env_without_proxies()

HERE = Path(__file__).parent
SDK_RECORDS = 50_000
DELIVERY_TIMEOUT = 300
GROUP = "/sluice/governance"
FAST_RETRY = {"initial_interval": "100ms", "max_interval": "1s", "max_elapsed_time": "10m"}
WEB_IDENTITY_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZWRnZTpnYXRld2F5In0.c2lnbmF0dXJl"
POD_IDENTITY_TOKEN = "pod-identity-token-7f3a9c"


class CloudWatch:
    """cloudwatch_server.py in a process of its own, and boto3 reads as the auditor."""

    def __init__(self):
        ports = rt.Ports()
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "cloudwatch_server.py"), "--port", str(ports["moto"]), "--pod-identity-port", str(ports["agent"]),
             "--pod-identity-token", POD_IDENTITY_TOKEN, "--web-identity-token", WEB_IDENTITY_TOKEN],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"cloudwatch_server.py did not start: {self.process.stderr.read()[-3000:]}")
        self.info = json.loads(line)
        self.endpoint = self.info["endpoint"]
        self.region = self.info["region"]
        auditor = self.info["auditor"]
        self.logs = boto3.client("logs", endpoint_url=self.endpoint, region_name=self.region,
                                 aws_access_key_id=auditor["id"], aws_secret_access_key=auditor["secret"])

    def close(self):
        self.process.kill()
        self.process.wait(timeout=30)

    def streams(self, group: str) -> list[str]:
        try:
            return sorted(s["logStreamName"] for s in self.logs.describe_log_streams(logGroupName=group)["logStreams"])
        except self.logs.exceptions.ResourceNotFoundException:
            return []

    def events(self, group: str, stream: str) -> list[dict]:
        """Every event of the stream, oldest first, through get_log_events' pages."""
        try:
            out, token = [], None
            while True:
                kwargs = {"logGroupName": group, "logStreamName": stream, "startFromHead": True, "limit": 10_000}
                if token:
                    kwargs["nextToken"] = token
                page = self.logs.get_log_events(**kwargs)
                out += page["events"]
                if not page["events"] or page["nextForwardToken"] == token:
                    return out
                token = page["nextForwardToken"]
        except self.logs.exceptions.ResourceNotFoundException:
            return []


@pytest.fixture
def cloudwatch():
    cw = CloudWatch()
    try:
        yield cw
    finally:
        cw.close()


def sluice_config(cw: CloudWatch, exporter: dict | None = None):
    def make(ports: rt.Ports) -> dict:
        settings = {"region": cw.region, "endpoint": cw.endpoint, "log_group_name": GROUP, "log_stream_name": "{k8s.pod.name}",
                    "retry_on_failure": dict(FAST_RETRY), "sending_queue": {"sizer": "bytes", "queue_size": 1 << 30}}
        settings.update(exporter or {})
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "processors": {"batch": {"send_batch_size": 5000, "timeout": "200ms"}},
            "exporters": {"awscloudwatchlogs": settings},
            "service": {
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {"logs": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["awscloudwatchlogs"]}},
            },
        }

    return make


def status(process) -> dict:
    return rt.exporter_status(process.ports.url("metrics", "/status"))["awscloudwatchlogs"]


def recent_base_time(count: int) -> int:
    """Records 1 ms apart ending a little before now: CloudWatch Logs takes only
    the last 14 days."""
    return time.time_ns() - (count + 60_000) * 1_000_000


def credential_env(cw: CloudWatch, path: str, tmp_path: Path) -> dict:
    if path == "environment":
        writer = cw.info["writer"]
        return {"AWS_ACCESS_KEY_ID": writer["id"], "AWS_SECRET_ACCESS_KEY": writer["secret"]}
    if path == "web_identity":
        token = tmp_path / "eks.amazonaws.com-serviceaccount-token"
        token.write_text(WEB_IDENTITY_TOKEN + "\n")
        return {"AWS_ROLE_ARN": cw.info["role_arn"], "AWS_WEB_IDENTITY_TOKEN_FILE": str(token), "AWS_ENDPOINT_URL_STS": cw.endpoint}
    if path == "pod_identity":
        token = tmp_path / "eks-pod-identity-token"
        token.write_text(POD_IDENTITY_TOKEN)
        return {"AWS_CONTAINER_CREDENTIALS_FULL_URI": cw.info["pod_identity_uri"], "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token)}
    raise ValueError(path)


# ----------------------------------------------------------------------------
# 1. 50,000 records through each credential path


@pytest.mark.parametrize("path", ["environment", "web_identity", "pod_identity"])
def test_sdk_logs_are_read_back_in_order_exactly_once(tmp_path, track_sluice, cloudwatch, path):
    pod = f"gateway-{path.replace('_', '-')}-0"
    process = rt.start_sluice(tmp_path, sluice_config(cloudwatch, {"log_retention": 30}), track_sluice,
                              env=credential_env(cloudwatch, path, tmp_path))
    results = send_sdk_logs(process.ports.url("otlp", "/v1/logs"), SDK_RECORDS, "cw", base_time=recent_base_time(SDK_RECORDS),
                            resource_attributes={"k8s.pod.name": pod})
    assert results == Counter({"SUCCESS": SDK_RECORDS}), results

    def all_read_back():
        process.check_alive("the SDK's records")
        events = cloudwatch.events(GROUP, pod)
        return len(events) >= SDK_RECORDS and status(process)["lag"]["items"] == 0 and events

    events = rt.wait_until(all_read_back, DELIVERY_TIMEOUT, poll=1, what=f"{SDK_RECORDS} events in {GROUP}/{pod}")
    messages = [json.loads(e["message"]) for e in events]
    ids = [m["event_id"] for m in messages]
    expected = [f"cw-{i:06d}" for i in range(SDK_RECORDS)]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} events stored twice"
    assert ids == expected, "events are not each stored once, in the order they happened"
    timestamps = [e["timestamp"] for e in events]
    assert timestamps == sorted(timestamps)

    # The gateway's fields are top-level members, so Logs Insights can `filter action = "block"`;
    # the record's own members follow the Collector's layout.
    first = messages[1]
    attributes = gateway_attributes("cw", 1)
    for name in ("event_id", "event_type", "action", "policy_name", "model", "gateway_id", "user_id", "org_id"):
        assert first[name] == attributes[name], (name, first)
    assert first["attributes"]["action"] == attributes["action"]
    assert first["resource"]["k8s.pod.name"] == pod
    assert first["body"] == f"{attributes['action']} by {attributes['policy_name']} for {attributes['model']}"
    assert first["severity_text"] == "WARN" and first["severity_number"] == 13
    assert len(first["trace_id"]) == 32 and len(first["span_id"]) == 16

    # Every PutLogEvents call kept the API's limits (cloudwatch_server.py refuses any
    # that does not), so nothing was split or dead-lettered.
    assert not (process.data_dir / "dead-letter" / "awscloudwatchlogs.ndjson").exists()
    assert status(process)["status"] == "active"
    m = rt.scrape(process.ports.url("metrics", "/metrics"))
    assert rt.metric(m, "sluice_exporter_sent_items_total", exporter="awscloudwatchlogs", signal="logs") == SDK_RECORDS
    assert rt.metric(m, "sluice_cloudwatchlogs_requests_total", exporter="awscloudwatchlogs", status="200") >= SDK_RECORDS / 10_000
    log = process.stderr()
    source = {"environment": "AWS_ACCESS_KEY_ID from the environment", "web_identity": "web identity", "pod_identity": "container credentials"}[path]
    assert source in log, f"the log does not say the credentials came from {source}"
    for secret in (cloudwatch.info["writer"]["secret"], WEB_IDENTITY_TOKEN, POD_IDENTITY_TOKEN):
        assert secret not in log


# ----------------------------------------------------------------------------
# 2. A wrong secret key


def test_a_wrong_secret_key_fails_the_exporter_and_dead_letters_the_records(tmp_path, track_sluice, cloudwatch):
    writer = cloudwatch.info["writer"]
    wrong = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYWRONGKEY0"
    process = rt.start_sluice(tmp_path, sluice_config(cloudwatch), track_sluice,
                              env={"AWS_ACCESS_KEY_ID": writer["id"], "AWS_SECRET_ACCESS_KEY": wrong})
    count = 200
    results = send_sdk_logs(process.ports.url("otlp", "/v1/logs"), count, "bad", base_time=recent_base_time(count),
                            resource_attributes={"k8s.pod.name": "gateway-bad-0"})
    assert results == Counter({"SUCCESS": count}), results
    dead_letter = process.data_dir / "dead-letter" / "awscloudwatchlogs.ndjson"

    def dead_lettered():
        process.check_alive("a refused key")
        ids = dead_lettered_ids(read_dead_letters(dead_letter))
        return len(ids) >= count and ids

    ids = rt.wait_until(dead_lettered, DELIVERY_TIMEOUT, what="the records in the dead-letter file")
    assert sorted(ids) == [f"bad-{i:06d}" for i in range(count)]
    s = status(process)
    assert s["status"] == "failed", s
    assert "SignatureDoesNotMatch" in s["last_error"] and "AWS_ACCESS_KEY_ID from the environment" in s["last_error"], s
    lines = read_dead_letters(dead_letter)
    assert "SignatureDoesNotMatch" in lines[0]["reason"], lines[0]["reason"]
    log = process.stderr()
    assert "SignatureDoesNotMatch" in log
    status_text = rt.get(process.ports.url("metrics", "/status")).body.decode()
    for text in (log, status_text, dead_letter.read_text(), rt.get(process.ports.url("metrics", "/metrics")).body.decode()):
        assert wrong not in text
    assert cloudwatch.events(GROUP, "gateway-bad-0") == []
    process.check_alive("a refused key")


# ----------------------------------------------------------------------------
# 3. role_arn, the group's retention and tags, a stream per pod, an event too old


def test_role_arn_creates_the_group_with_retention_and_tags_and_a_stream_per_pod(tmp_path, track_sluice, cloudwatch):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    auditor = cloudwatch.info["auditor"]
    process = rt.start_sluice(
        tmp_path,
        sluice_config(cloudwatch, {"role_arn": cloudwatch.info["role_arn"], "log_retention": 14, "tags": {"team": "security", "app": "ai-gateway"}}),
        track_sluice,
        env={"AWS_ACCESS_KEY_ID": auditor["id"], "AWS_SECRET_ACCESS_KEY": auditor["secret"], "AWS_ENDPOINT_URL_STS": cloudwatch.endpoint},
    )
    now = time.time_ns()
    request = ExportLogsServiceRequest()
    expected: dict[str, list[str]] = {}
    for pod in ("gateway-a", "gateway-b"):
        resource_logs = request.resource_logs.add(resource=Resource(attributes=[KeyValue(key="k8s.pod.name", value=AnyValue(string_value=pod))]))
        scope = resource_logs.scope_logs.add()
        for i in range(300):
            event_id = f"{pod}-{i:04d}"
            # Out of order on purpose: PutLogEvents takes events in time order only.
            t = now - (300 - (i * 7919) % 300) * 1_000_000
            scope.log_records.add(time_unix_nano=t, body=AnyValue(string_value=f"decision {event_id}"),
                                  attributes=[KeyValue(key="event_id", value=AnyValue(string_value=event_id))])
            expected.setdefault(pod, []).append((t, event_id))
    old = now - 20 * 86_400 * 1_000_000_000
    scope.log_records.add(time_unix_nano=old, body=AnyValue(string_value="too old"),
                          attributes=[KeyValue(key="event_id", value=AnyValue(string_value="old-0001"))])
    assert rt.post(process.ports.url("otlp", "/v1/logs"), request.SerializeToString()).status == 200

    def delivered():
        process.check_alive("two pods' records")
        got = {pod: cloudwatch.events(GROUP, pod) for pod in expected}
        return all(len(got[p]) >= 300 for p in expected) and status(process)["lag"]["items"] == 0 and got

    got = rt.wait_until(delivered, DELIVERY_TIMEOUT, what="both pods' streams")
    for pod, pairs in expected.items():
        ids = [json.loads(e["message"])["event_id"] for e in got[pod]]
        assert ids == [event_id for _, event_id in sorted(pairs)], f"{pod}: not each once in time order"
    assert cloudwatch.streams(GROUP) == ["gateway-a", "gateway-b"]
    group = cloudwatch.logs.describe_log_groups(logGroupNamePrefix=GROUP)["logGroups"][0]
    assert group["retentionInDays"] == 14, group
    assert cloudwatch.logs.list_tags_log_group(logGroupName=GROUP)["tags"] == {"team": "security", "app": "ai-gateway"}

    lines = read_dead_letters(process.data_dir / "dead-letter" / "awscloudwatchlogs.ndjson")
    assert dead_lettered_ids(lines) == ["old-0001"]
    assert "too old" in lines[0]["reason"] and "14 days" in lines[0]["reason"], lines[0]["reason"]
    assert "role_arn" in process.stderr()


def test_without_credentials_sluice_starts_says_so_and_keeps_the_records(tmp_path, track_sluice, cloudwatch):
    """`sluice validate` passes where the pod's identity is not; the running exporter
    says it found no credentials and dead-letters what it cannot send."""
    process = rt.start_sluice(tmp_path, sluice_config(cloudwatch), track_sluice, env={})
    assert "no AWS credentials" in process.stderr()
    count = 10
    assert send_sdk_logs(process.ports.url("otlp", "/v1/logs"), count, "none", base_time=recent_base_time(count)) == Counter({"SUCCESS": count})
    dead_letter = process.data_dir / "dead-letter" / "awscloudwatchlogs.ndjson"
    ids = rt.wait_until(lambda: len(dead_lettered_ids(read_dead_letters(dead_letter))) >= count and dead_lettered_ids(read_dead_letters(dead_letter)),
                        DELIVERY_TIMEOUT, what="the records in the dead-letter file")
    assert sorted(ids) == [f"none-{i:06d}" for i in range(count)]
    s = status(process)
    assert s["status"] == "failed" and "no AWS credentials" in s["last_error"], s
