"""Local stand-ins for Azure Monitor's ingestion for the e2e tests, as strict as
the real services and misbehaving on demand:

- `EntraServer`: Entra ID's token endpoint (`POST /<tenant>/oauth2/v2.0/token`,
  client credentials). It takes `client_secret`, or a `client_assertion` of type
  jwt-bearer (workload identity): a JWT it verifies itself (signature, audience
  `api://AzureADTokenExchange`, subject, expiry), as Entra ID checks the cluster's
  service account token against the federated credential. Errors are Entra's:
  `invalid_client` with AADSTS7000215 (wrong secret) or AADSTS700024 (assertion
  out of its time range). Tokens live `token_lifetime` seconds.
- `LogsIngestionServer`: the Logs Ingestion API
  (`POST /dataCollectionRules/<dcr>/streams/<stream>?api-version=2023-01-01`):
  the bearer token must be one EntraServer issued, not expired (401 otherwise);
  a known rule and stream (404); JSON array of objects, each with `TimeGenerated`;
  at most 1 MB (413). 204 when taken.
- `DataCollectorServer`: the HTTP Data Collector API (`POST /api/logs`): the
  SharedKey signature recomputed here from the workspace key, `x-ms-date` within
  15 minutes of the fixture's clock (403 InvalidAuthorization otherwise), a valid
  `Log-Type`. Stored rows get the API's type suffixes (`action_s`, `cost_usd_d`,
  `blocked_b`), so a test can run what `action_s == "block"` would find.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import re
import secrets
import time
import urllib.parse
from collections import Counter

from fixture_http import FixtureServer, Reply, Request

SCOPE = "https://monitor.azure.com//.default"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_service_account_token(signing_key: bytes, subject: str, expires_in: float, issuer: str = "https://oidc.aks.local/") -> str:
    """A JWT as Kubernetes projects it for workload identity (HS256 here: the
    fixture holds the key, standing in for the issuer's published keys)."""
    now = int(time.time())
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"iss": issuer, "sub": subject, "aud": [EXCHANGE_AUDIENCE],
                                  "iat": now, "nbf": now, "exp": int(now + expires_in)}).encode())
    signature = _b64url(hmac.new(signing_key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


class EntraServer(FixtureServer):
    name = "entra-id"

    def __init__(self, tenant: str, client_id: str, client_secret: str | None = None,
                 federated_key: bytes | None = None, federated_subject: str | None = None, token_lifetime: int = 3600):
        super().__init__()
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.federated_key = federated_key
        self.federated_subject = federated_subject
        self.token_lifetime = token_lifetime
        self.tokens: dict[str, float] = {}  # token → expiry (fixture clock)
        self.issued = 0
        self.refusals: Counter = Counter()

    def valid(self, token: str) -> str | None:
        """None when the token is good now, else why not."""
        with self.lock:
            expiry = self.tokens.get(token)
        if expiry is None:
            return "unknown token"
        if self.now() >= expiry:
            return "expired token"
        return None

    def _refuse(self, status: int, error: str, description: str) -> Reply:
        with self.lock:
            self.refusals[description.split(":")[0]] += 1
        return Reply(status, {"error": error, "error_description": f"{description}\r\nTrace ID: {secrets.token_hex(8)}",
                              "error_codes": [int(re.sub(r"\D", "", description.split(":")[0]) or 0)]})

    def handle(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != f"/{self.tenant}/oauth2/v2.0/token":
            return self._refuse(400, "invalid_request", f"AADSTS90002: Tenant or path not found: {request.path}")
        if (request.headers.get("Content-Type") or "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            self.finding(f"token request Content-Type {request.headers.get('Content-Type')!r}")
            return self._refuse(400, "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'grant_type'.")
        form = dict(urllib.parse.parse_qsl(request.raw.decode(), strict_parsing=True))
        if form.get("grant_type") != "client_credentials":
            return self._refuse(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.")
        if form.get("scope") != SCOPE:
            self.finding(f"scope {form.get('scope')!r}")
            return self._refuse(400, "invalid_scope", f"AADSTS70011: The provided value for scope {form.get('scope')} is not valid.")
        if form.get("client_id") != self.client_id:
            return self._refuse(400, "unauthorized_client", f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not found in the directory.")
        if "client_secret" in form:
            if self.client_secret is None or not hmac.compare_digest(form["client_secret"], self.client_secret):
                return self._refuse(401, "invalid_client", f"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{self.client_id}'.")
        elif form.get("client_assertion_type") == ASSERTION_TYPE:
            problem = self._check_assertion(form.get("client_assertion", ""))
            if problem:
                return problem
        else:
            return self._refuse(401, "invalid_client", "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = self.now() + self.token_lifetime
            self.issued += 1
        return Reply(200, {"token_type": "Bearer", "expires_in": self.token_lifetime, "ext_expires_in": self.token_lifetime, "access_token": token})

    def _check_assertion(self, assertion: str) -> Reply | None:
        try:
            header, payload, signature = assertion.split(".")
            expected = _b64url(hmac.new(self.federated_key or b"", f"{header}.{payload}".encode(), hashlib.sha256).digest())
            claims = json.loads(_b64url_decode(payload))
        except Exception:  # noqa: BLE001
            return self._refuse(400, "invalid_client", "AADSTS50027: JWT token is invalid or malformed.")
        if self.federated_key is None or not hmac.compare_digest(signature, expected):
            return self._refuse(400, "invalid_client", "AADSTS700211: No matching federated identity record found for presented assertion issuer.")
        if claims.get("sub") != self.federated_subject or EXCHANGE_AUDIENCE not in (claims.get("aud") or []):
            return self._refuse(400, "invalid_client", "AADSTS700213: No matching federated identity record found for presented assertion subject.")
        if not (claims.get("nbf", 0) - 300 <= self.now() < claims.get("exp", 0)):
            return self._refuse(400, "invalid_client", "AADSTS700024: Client assertion is not within its valid time range.")
        return None


class LogsIngestionServer(FixtureServer):
    name = "logs-ingestion"

    def __init__(self, entra: EntraServer, dcr: str, stream: str, max_body: int = 1_000_000):
        super().__init__()
        self.entra = entra
        self.dcr = dcr
        self.stream = stream
        self.max_body = max_body
        self.rows: list[dict] = []
        self.ids: Counter = Counter()
        self.token_refusals: Counter = Counter()
        self.requests: list[dict] = []

    def handle(self, request: Request) -> Reply:
        match = re.fullmatch(r"/dataCollectionRules/([^/]+)/streams/([^/]+)", request.path)
        if request.method != "POST" or not match:
            return Reply(404, {"error": {"code": "NotFound", "message": f"{request.path} not found"}})
        auth = request.headers.get("Authorization") or ""
        problem = "no bearer token" if not auth.startswith("Bearer ") else self.entra.valid(auth[len("Bearer "):])
        if problem:
            with self.lock:
                self.token_refusals[problem] += 1
            return Reply(401, {"error": {"code": "InvalidToken" if problem != "expired token" else "ExpiredAuthenticationToken",
                                         "message": f"The authentication token provided is invalid or expired ({problem})."}})
        if request.query.get("api-version") != "2023-01-01":
            self.finding(f"api-version {request.query.get('api-version')!r}")
            return Reply(400, {"error": {"code": "InvalidApiVersion", "message": "api-version is missing or not supported"}})
        dcr, stream = match.group(1), urllib.parse.unquote(match.group(2))
        if dcr != self.dcr or stream != self.stream:
            return Reply(404, {"error": {"code": "InvalidDataCollectionRule" if dcr != self.dcr else "InvalidStream",
                                         "message": f"Data collection rule {dcr} with stream {stream} not found"}})
        if len(request.raw) > self.max_body:
            return Reply(413, {"error": {"code": "ContentLengthLimitExceeded", "message": f"Maximum request size is {self.max_body} bytes"}})
        try:
            body = request.body()
            rows = json.loads(body)
        except Exception as error:  # noqa: BLE001
            self.finding(f"unreadable body: {error}")
            return Reply(400, {"error": {"code": "InvalidPayload", "message": str(error)}})
        if len(body) > self.max_body:
            return Reply(413, {"error": {"code": "ContentLengthLimitExceeded", "message": f"Maximum request size is {self.max_body} bytes"}})
        if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("TimeGenerated"), str) for r in rows):
            self.finding("rows are not an array of objects with TimeGenerated")
            return Reply(400, {"error": {"code": "InvalidPayload", "message": "Expected an array of objects with TimeGenerated"}})
        with self.lock:
            self.rows += rows
            for row in rows:
                self.ids[row.get("event_id")] += 1
            self.requests.append({"rows": len(rows), "raw": len(request.raw), "encoding": request.headers.get("Content-Encoding")})
        return Reply(204)


class DataCollectorServer(FixtureServer):
    name = "data-collector"

    def __init__(self, workspace_id: str, shared_key: str):
        super().__init__()
        self.workspace_id = workspace_id
        self.key = base64.b64decode(shared_key)
        self.rows: dict[str, list[dict]] = {}  # table → rows with type-suffixed columns
        self.ids: Counter = Counter()
        self.refusals: Counter = Counter()

    def _refuse(self, why: str, message: str) -> Reply:
        with self.lock:
            self.refusals[why] += 1
        return Reply(403, {"Error": "InvalidAuthorization", "Message": message})

    def handle(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/api/logs" or request.query.get("api-version") != "2016-04-01":
            return Reply(404, {"Error": "NotFound", "Message": f"{request.path} not found"})
        date = request.headers.get("x-ms-date") or ""
        try:
            sent = email.utils.parsedate_to_datetime(date).timestamp()
        except Exception:  # noqa: BLE001
            return self._refuse("date", "x-ms-date is missing or not an RFC 1123 date")
        if abs(self.now() - sent) > 15 * 60:
            return self._refuse("skew", "Request date is more than 15 minutes off the server's time")
        content_type = request.headers.get("Content-Type") or ""
        string_to_sign = f"POST\n{len(request.raw)}\n{content_type}\nx-ms-date:{date}\n/api/logs"
        expected = base64.b64encode(hmac.new(self.key, string_to_sign.encode(), hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(request.headers.get("Authorization") or "", f"SharedKey {self.workspace_id}:{expected}"):
            return self._refuse("signature", "An invalid signature was specified in the Authorization header")
        if content_type != "application/json" or request.headers.get("Content-Encoding"):
            self.finding(f"Content-Type {content_type!r}, Content-Encoding {request.headers.get('Content-Encoding')!r}")
            return Reply(400, {"Error": "InvalidContentType", "Message": "application/json, uncompressed"})
        log_type = request.headers.get("Log-Type") or ""
        if not re.fullmatch(r"[A-Za-z0-9_]{1,100}", log_type):
            return Reply(400, {"Error": "InvalidLogType", "Message": "Log-Type must be letters, digits and underscores"})
        time_field = request.headers.get("time-generated-field")
        try:
            rows = json.loads(request.raw)
        except ValueError as error:
            self.finding(f"not JSON: {error}")
            return Reply(400, {"Error": "InvalidJson", "Message": str(error)})
        if not isinstance(rows, list):
            rows = [rows]
        stored = []
        for row in rows:
            if time_field and not isinstance(row.get(time_field), str):
                self.finding(f"time-generated-field {time_field} missing in a row")
            out = {}
            for name, value in row.items():
                if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                    self.finding(f"column name {name!r}")
                suffix = "_b" if isinstance(value, bool) else "_d" if isinstance(value, (int, float)) else \
                    "_t" if name == time_field else "_s"
                out[name + suffix] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
            stored.append(out)
        with self.lock:
            self.rows.setdefault(log_type + "_CL", []).extend(stored)
            for row in stored:
                self.ids[row.get("event_id_s")] += 1
        return Reply(200)
