"""CloudWatch Logs, STS and IAM for the e2e tests: moto in server mode with its
signature and IAM checks on, as strict as AWS where the exporter depends on it.

Run as a process of its own (`python3 cloudwatch_server.py`): it prints one JSON
line with the endpoint and the credentials it made, then serves until killed.

- IAM: a user `sluice-writer` holding only the policy docs/cloudwatch.md asks for,
  with an access key; a role `sluice-irsa` trusted by an OIDC provider (IRSA) and
  by the auditor (role_arn, and the Pod Identity agent), holding the same policy; an `auditor`
  user allowed everything, for the tests' own reads with boto3.
- Authentication is switched on after that (moto's INITIAL_NO_AUTH_ACTION_COUNT,
  counted from the start): from then on every request must be signed with a key
  moto issued, and IAM policies decide what it may do.
- AssumeRoleWithWebIdentity is unsigned in AWS (the token is the proof), so it is
  let through unsigned; the token must be the one in `--web-identity-token`, else
  InvalidIdentityToken, as STS answers for a token its OIDC provider did not issue.
- PutLogEvents keeps AWS's limits, which moto does not check: at most 10,000
  events, 1,048,576 bytes counting 26 per event, at most 24 hours apart, 1 MiB per
  event; over any of them the whole call is refused with InvalidParameterException.
- A Pod Identity agent on `--pod-identity-port`: GET with `Authorization` equal to
  the token in `--pod-identity-token` answers the role's temporary credentials
  (assumed through moto's STS); anything else is a 401.
"""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import os
import sys
import threading

os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")

import boto3  # noqa: E402
from moto import settings  # noqa: E402
from moto.logs.exceptions import InvalidParameterException  # noqa: E402
from moto.logs.models import LogsBackend  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402
from moto.sts.exceptions import STSClientError  # noqa: E402
from moto.sts.responses import TokenResponse  # noqa: E402

ACCOUNT = "123456789012"
REGION = "eu-west-1"

# What the exporter needs, and nothing else (docs/cloudwatch.md). moto checks
# actions against resource "*" for CloudWatch Logs, so the resources are not narrowed here.
WRITER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["logs:PutLogEvents", "logs:CreateLogStream", "logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:TagResource"],
            "Resource": "*",
        }
    ],
}


def enforce_put_log_events_limits() -> None:
    original = LogsBackend.put_log_events

    def checked(self, log_group_name, log_stream_name, log_events):
        count = len(log_events)
        size = sum(len(e["message"].encode()) + 26 for e in log_events)
        if count > 10_000:
            raise InvalidParameterException(f"{count} log events: at most 10000 per PutLogEvents")
        if size > 1_048_576:
            raise InvalidParameterException(f"batch of {size} bytes: at most 1048576 counting 26 per event")
        if count and log_events[-1]["timestamp"] - log_events[0]["timestamp"] > 24 * 3600 * 1000:
            raise InvalidParameterException("a batch of log events in a single request cannot span more than 24 hours")
        for e in log_events:
            if len(e["message"].encode()) + 26 > 1_048_576:
                raise InvalidParameterException("Log event too large")
            if not e["message"]:
                raise InvalidParameterException("empty message")
        return original(self, log_group_name, log_stream_name, log_events)

    LogsBackend.put_log_events = checked


def check_web_identity_token(expected: str | None) -> None:
    from moto.core.authorization import ActionAuthenticatorMixin

    authorize = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def unsigned_web_identity(self, iam_request_cls, resource="*"):
        if self._get_action() == "AssumeRoleWithWebIdentity":
            return
        return authorize(self, iam_request_cls, resource)

    ActionAuthenticatorMixin._authenticate_and_authorize_action = unsigned_web_identity

    assume = TokenResponse.assume_role_with_web_identity

    def checked(self):
        if self._get_param("WebIdentityToken") != expected:
            raise STSClientError("InvalidIdentityToken", "Couldn't verify the web identity token")
        return assume(self)

    TokenResponse.assume_role_with_web_identity = checked


def pod_identity_agent(port: int, token: str, credentials) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002
            pass

        def do_GET(self):  # noqa: N802 - the base class's name
            if self.headers.get("Authorization") != token:
                body = b'{"Message":"invalid authorization token"}'
                self.send_response(401)
            else:
                c = credentials()
                body = json.dumps(
                    {
                        "AccessKeyId": c["AccessKeyId"],
                        "SecretAccessKey": c["SecretAccessKey"],
                        "Token": c["SessionToken"],
                        "Expiration": c["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "AccountId": ACCOUNT,
                    }
                ).encode()
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pod-identity-port", type=int, required=True)
    parser.add_argument("--pod-identity-token", required=True)
    parser.add_argument("--web-identity-token", required=True)
    args = parser.parse_args()

    enforce_put_log_events_limits()
    check_web_identity_token(args.web_identity_token)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{args.port}"

    def client(service, key="setup", secret="setup", token=None):
        return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token)

    iam = client("iam")
    iam.create_user(UserName="sluice-writer")
    iam.put_user_policy(UserName="sluice-writer", PolicyName="sluice-cloudwatch", PolicyDocument=json.dumps(WRITER_POLICY))
    writer = iam.create_access_key(UserName="sluice-writer")["AccessKey"]
    iam.create_user(UserName="auditor")
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="auditor", PolicyName="all", PolicyDocument=json.dumps(everything))
    auditor = iam.create_access_key(UserName="auditor")["AccessKey"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{ACCOUNT}:user/auditor"]}, "Action": "sts:AssumeRole"},
            {
                "Effect": "Allow",
                "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"},
                "Action": "sts:AssumeRoleWithWebIdentity",
            },
        ],
    }
    role = iam.create_role(RoleName="sluice-irsa", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="sluice-irsa", PolicyName="sluice-cloudwatch", PolicyDocument=json.dumps(WRITER_POLICY))

    # From here on, every request is checked.
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0

    sts = client("sts", auditor["AccessKeyId"], auditor["SecretAccessKey"])

    def pod_credentials():
        return sts.assume_role(RoleArn=role, RoleSessionName="eks-pod-identity")["Credentials"]

    pod_identity_agent(args.pod_identity_port, args.pod_identity_token, pod_credentials)
    print(
        json.dumps(
            {
                "endpoint": url,
                "region": REGION,
                "writer": {"id": writer["AccessKeyId"], "secret": writer["SecretAccessKey"]},
                "auditor": {"id": auditor["AccessKeyId"], "secret": auditor["SecretAccessKey"]},
                "role_arn": role,
                "pod_identity_uri": f"http://127.0.0.1:{args.pod_identity_port}/v1/credentials",
            }
        ),
        flush=True,
    )
    threading.Event().wait()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
