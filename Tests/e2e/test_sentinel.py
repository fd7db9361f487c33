"""The `sentinel` exporter end to end: the real `sluice` binary, the OpenTelemetry
Python SDK in front of it, and azure_server.py behind it — an Entra ID token
endpoint, a Logs Ingestion API that only takes the tokens it issued while they
are valid, and a Data Collector API that recomputes every SharedKey signature
(issue 14).

1. Logs Ingestion, client secret: 20,000 SDK records reach the rule's stream
   exactly once per event_id while tokens live 4 s, so the exporter must fetch
   new ones before they lapse; rows carry TimeGenerated and the gateway's columns.
2. Workload identity: the federated token file is exchanged for tokens; when it
   holds an expired token the exporter is `degraded` with an error naming the
   file, and it delivers again once Kubernetes (here: the test) renews the file.
3. A refused client secret: `failed`, Entra's AADSTS error in /status and the log,
   the secret nowhere.
4. Data Collector API: 20,000 records, each request's SharedKey verified; the
   columns `action_s == "block"` queries.
5. A clock skew: the Data Collector API refuses the x-ms-date; /status says the
   clocks disagree, by how much.

No assertion is about time: timeouts only keep a broken build from hanging.
"""

from __future__ import annotations

import base64
import json
from collections import Counter

import destination_helpers as dh
import otlp_samples as samples
import runtime_helpers as rt
from azure_server import DataCollectorServer, EntraServer, LogsIngestionServer, make_service_account_token
from test_splunk_hec import dead_lettered_ids, gateway_attributes, log_request, send_sdk_logs

rt.env_without_proxies()

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0f4c1a6e-2b7d-4e59-9a3c-8d1e6f2b7a90"
CLIENT_SECRET = "Qx8~kR2.vN7pL4_wZ9sT1yU6mB3nC5dF0gH"
DCR = "dcr-5f2b8c1e9a7d4b3c8e6f1a2d9c7b4e3a"
STREAM = "Custom-AIGatewayEvents_CL"
WORKSPACE = "b1e3c5d7-a9f2-4b6d-8e0c-2a4f6b8d0e1c"
SHARED_KEY = base64.b64encode(bytes(range(64))).decode()
FEDERATED_KEY = b"the cluster's service account issuer key"
SUBJECT = "system:serviceaccount:ai-gateway:sluice"
RECORDS = 20_000


def ingestion_settings(entra: EntraServer, dcr: LogsIngestionServer, **credential) -> dict:
    return {"endpoint": dcr.url, "dcr_immutable_id": DCR, "stream_name": STREAM, "tenant_id": TENANT, "client_id": CLIENT_ID,
            "authority_host": entra.url, **credential}


# ----------------------------------------------------------------------------
# 1. Logs Ingestion API, client credentials, short-lived tokens


def test_sdk_records_reach_the_rule_once_each_with_tokens_fetched_before_they_lapse(tmp_path, track_sluice):
    with EntraServer(TENANT, CLIENT_ID, client_secret=CLIENT_SECRET, token_lifetime=4) as entra, \
            LogsIngestionServer(entra, DCR, STREAM) as dcr:
        process = rt.start_sluice(tmp_path, dh.logs_pipeline("sentinel", ingestion_settings(entra, dcr, client_secret=CLIENT_SECRET)), track_sluice)
        results = send_sdk_logs(process.ports.url("otlp", "/v1/logs"), RECORDS, "az")
        assert results == Counter({"SUCCESS": RECORDS}), results
        ids = {f"az-{i:06d}" for i in range(RECORDS)}
        arrived = dh.wait_delivered(process, "sentinel", dcr, ids, "the 20,000 rows in the stream")
        assert entra.errors == [] and dcr.errors == [], (entra.errors[:3], dcr.errors[:3])
        assert set(arrived) == ids and all(n == 1 for n in arrived.values()), arrived.most_common(3)
        assert all(r["raw"] <= 1_000_000 and r["encoding"] == "gzip" for r in dcr.requests)

        row = next(r for r in dcr.rows if r["event_id"] == "az-000001")
        expected = gateway_attributes("az", 1)
        for name in ("event_type", "action", "policy_name", "model", "gateway_id", "user_id", "org_id"):
            assert row[name] == expected[name], (name, row)
        assert row["TimeGenerated"].startswith(rt.utc_day(samples.BASE_TIME).replace(".", "-")), row
        assert row["timestamp"] == row["TimeGenerated"], row
        assert row["tokens_prompt"] == 3 and row["ServiceName"] == "ai-gateway" and row["SeverityText"] == "WARN", row
        assert sum(1 for r in dcr.rows if r["action"] == "block") == sum(
            1 for i in range(RECORDS) if gateway_attributes("az", i)["action"] == "block")

        # The SDK sends for longer than one token lives whatever the host's speed
        # is not guaranteed; what is: every request was taken with a valid token,
        # and a lapsed one (if any) was replaced, not sent again and again.
        print(f"\n{RECORDS} SDK records: {len(dcr.requests)} requests, {entra.issued} tokens issued, "
              f"token refusals {dict(dcr.token_refusals)}")
        assert entra.issued >= 1
        assert sum(dcr.token_refusals.values()) <= entra.issued
        assert dh.status(process, "sentinel")["status"] == "active"
        assert process.stop(timeout=60) == 0
        assert CLIENT_SECRET not in process.stderr()


def test_a_token_is_fetched_again_once_it_lapses(tmp_path, track_sluice):
    with EntraServer(TENANT, CLIENT_ID, client_secret=CLIENT_SECRET, token_lifetime=2) as entra, \
            LogsIngestionServer(entra, DCR, STREAM) as dcr:
        process = rt.start_sluice(tmp_path, dh.logs_pipeline("sentinel", ingestion_settings(entra, dcr, client_secret=CLIENT_SECRET)), track_sluice)
        first, body = log_request("t1", 0, 10)
        dh.post_logs(process, body)
        dh.wait_delivered(process, "sentinel", dcr, set(first), "the first rows")
        issued = entra.issued
        # Until the first token has certainly lapsed on the fixture's clock.
        rt.wait_until(lambda: all(entra.now() >= expiry for expiry in entra.tokens.values()), 30, what="every token to expire")
        second, body = log_request("t2", 0, 10)
        dh.post_logs(process, body)
        dh.wait_delivered(process, "sentinel", dcr, set(second), "the rows after the token lapsed")
        assert entra.issued > issued
        assert dcr.token_refusals["expired token"] == 0, "a token past its expiry was sent"
        assert process.stop(timeout=60) == 0


# ----------------------------------------------------------------------------
# 2. Workload identity: a federated token file, expired and renewed


def test_workload_identity_degrades_on_an_expired_token_file_and_recovers_when_it_is_renewed(tmp_path, track_sluice):
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(make_service_account_token(FEDERATED_KEY, SUBJECT, expires_in=3600))
    with EntraServer(TENANT, CLIENT_ID, federated_key=FEDERATED_KEY, federated_subject=SUBJECT, token_lifetime=2) as entra, \
            LogsIngestionServer(entra, DCR, STREAM) as dcr:
        process = rt.start_sluice(tmp_path, dh.logs_pipeline("sentinel", ingestion_settings(entra, dcr, federated_token_file=str(token_file))), track_sluice)
        before, body = log_request("wi", 0, 20)
        dh.post_logs(process, body)
        dh.wait_delivered(process, "sentinel", dcr, set(before), "rows sent with the exchanged token")

        # The file now holds a token that expired a minute ago; the access token lapses too.
        token_file.write_text(make_service_account_token(FEDERATED_KEY, SUBJECT, expires_in=-60))
        rt.wait_until(lambda: all(entra.now() >= expiry for expiry in entra.tokens.values()), 30, what="the access token to expire")
        during, body = log_request("wi", 20, 20)
        dh.post_logs(process, body)
        entry = rt.wait_until(lambda: (e := dh.status(process, "sentinel"))["status"] == "degraded" and e, dh.DELIVERY_TIMEOUT, what="degraded")
        error = entry["last_error"]
        assert f"the federated token in {token_file} expired" in error and "Kubernetes replaces" in error, error
        assert any(line.get("msg", "").startswith("exporter degraded") and "expired" in json.dumps(line) for line in process.log_lines())
        assert dh.dead_letters(process, "sentinel") == [], "an expired token file must not send data to the dead-letter file"

        # Kubernetes renews the file: the waiting rows go out, the exporter is active.
        token_file.write_text(make_service_account_token(FEDERATED_KEY, SUBJECT, expires_in=3600))
        dh.wait_delivered(process, "sentinel", dcr, set(during), "the rows after the file was renewed")
        assert dh.status(process, "sentinel")["status"] == "active"
        assert entra.errors == [] and dcr.errors == []
        assert all(n == 1 for n in dcr.ids.values())
        print(f"\nexpired federated token: /status last_error {error!r}")
        assert process.stop(timeout=60) == 0


# ----------------------------------------------------------------------------
# 3. A refused client secret


def test_a_refused_client_secret_fails_the_exporter_with_entras_error(tmp_path, track_sluice):
    wrong = "Wr0ng~secret.value_that-Entra_refuses"
    with EntraServer(TENANT, CLIENT_ID, client_secret=CLIENT_SECRET) as entra, LogsIngestionServer(entra, DCR, STREAM) as dcr:
        process = rt.start_sluice(tmp_path, dh.logs_pipeline("sentinel", ingestion_settings(entra, dcr, client_secret=wrong)), track_sluice)
        ids, body = log_request("bad", 0, 50)
        dh.post_logs(process, body)
        entry = rt.wait_until(lambda: (e := dh.status(process, "sentinel"))["dead_lettered_items"] == 50 and e, dh.DELIVERY_TIMEOUT, what="50 rows dead-lettered")
        assert entry["status"] == "failed", entry
        error = entry["last_error"]
        assert "Entra ID refused the credentials" in error and "AADSTS7000215" in error and "client_secret" in error, error
        assert sorted(dead_lettered_ids(dh.dead_letters(process, "sentinel"))) == sorted(ids)
        assert dcr.requests == [] and entra.issued == 0
        assert any(line.get("msg", "").startswith("exporter failed") and "AADSTS7000215" in json.dumps(line) for line in process.log_lines())
        assert process.stop(timeout=60) == 0
        for text in (process.stderr(), json.dumps(entry), json.dumps(dh.dead_letters(process, "sentinel"))):
            assert wrong not in text
        print(f"\nrefused secret: /status last_error {error!r}")


# ----------------------------------------------------------------------------
# 4. The Data Collector API


def collector_settings(server: DataCollectorServer) -> dict:
    return {"endpoint": server.url, "workspace_id": WORKSPACE, "shared_key": SHARED_KEY, "log_type": "AIGatewayEvents"}


def test_data_collector_api_takes_every_record_once_with_shared_key_signatures(tmp_path, track_sluice):
    with DataCollectorServer(WORKSPACE, SHARED_KEY) as server:
        process = rt.start_sluice(tmp_path, dh.logs_pipeline("sentinel", collector_settings(server)), track_sluice)
        results = send_sdk_logs(process.ports.url("otlp", "/v1/logs"), RECORDS, "dc")
        assert results == Counter({"SUCCESS": RECORDS}), results
        ids = {f"dc-{i:06d}" for i in range(RECORDS)}
        arrived = dh.wait_delivered(process, "sentinel", server, ids, "the 20,000 rows in AIGatewayEvents_CL")
        assert server.errors == [] and server.refusals == Counter(), (server.errors[:3], server.refusals)
        assert set(arrived) == ids and all(n == 1 for n in arrived.values())
        table = server.rows["AIGatewayEvents_CL"]
        # AIGatewayEvents_CL | where action_s == "block"
        blocked = [r for r in table if r.get("action_s") == "block"]
        assert len(blocked) == sum(1 for i in range(RECORDS) if gateway_attributes("dc", i)["action"] == "block")
        row = next(r for r in table if r["event_id_s"] == "dc-000001")
        assert row["policy_name_s"] == gateway_attributes("dc", 1)["policy_name"] and row["blocked_b"] is True
        assert row["timestamp_t"].startswith(rt.utc_day(samples.BASE_TIME).replace(".", "-"))
        assert any(line.get("msg", "").startswith("the HTTP Data Collector API was retired") for line in process.log_lines())
        assert process.stop(timeout=60) == 0
        assert SHARED_KEY not in process.stderr()


def test_a_clock_skew_shows_in_status_as_the_clocks_disagreeing(tmp_path, track_sluice):
    with DataCollectorServer(WORKSPACE, SHARED_KEY) as server:
        server.clock_offset = 20 * 60
        process = rt.start_sluice(tmp_path, dh.logs_pipeline("sentinel", collector_settings(server)), track_sluice)
        ids, body = log_request("skew", 0, 30)
        dh.post_logs(process, body)
        entry = rt.wait_until(lambda: (e := dh.status(process, "sentinel"))["dead_lettered_items"] == 30 and e, dh.DELIVERY_TIMEOUT, what="30 rows dead-lettered")
        assert entry["status"] == "failed", entry
        error = entry["last_error"]
        assert "HTTP 403" in error and "InvalidAuthorization" in error, error
        assert "s ahead of this host's" in error and "x-ms-date more than 15 minutes off" in error and "NTP" in error, error
        assert server.refusals["skew"] >= 1 and server.ids == Counter()
        assert any(line.get("msg", "").startswith("exporter failed") and "ahead of this host" in json.dumps(line) for line in process.log_lines())
        print(f"\nclock skew: /status last_error {error!r}")
        assert process.stop(timeout=60) == 0
