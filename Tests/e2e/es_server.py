"""A local Elasticsearch bulk API for the e2e tests: it reads requests as strictly
as Elasticsearch does and misbehaves on demand.

Checked on every request (a failure is an HTTP error, as Elasticsearch answers,
and is recorded in `errors`):
- POST {prefix}/_bulk, Content-Type application/x-ndjson or application/json,
  Content-Encoding gzip or none, the expected Authorization header (401 otherwise);
- the body ends with a newline; lines come as an action line (one of create, index,
  update, delete) then, except for delete, a source line that is a JSON object with
  no duplicate key at any depth;
- data streams (`logs-*-*`, `traces-*-*`) take only `create`;
- `create` of an _id the index already has is a 409 version_conflict_engine_exception,
  and the document is not stored again.

On demand: whole requests answered 413 over `max_body` bytes (as sent), 429/503 for
a while (`outage`), a fraction of items refused with 429 (`item_429_rate`, seeded),
and documents refused with a 400 mapper_parsing_exception (`mapping_error_ids`, by
the source's event_id).
"""

from __future__ import annotations

import gzip
import http.server
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


class DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(f"Duplicate field '{key}'")
        seen[key] = value
    return seen


@dataclass
class BulkRequest:
    path: str
    query: str
    headers: dict
    body_bytes: int
    documents: int
    status: int
    at: float = field(default_factory=time.monotonic)


class ESServer:
    def __init__(self, authorization: str | None = None, prefix: str = "", seed: int = 20261205):
        self.authorization = authorization
        self.prefix = prefix
        self.lock = threading.RLock()
        self.indices: dict[str, dict[str, dict]] = {}
        self.creates: Counter = Counter()  # successful creates per (index, _id)
        self.conflicts = 0
        self.requests: list[BulkRequest] = []
        self.errors: list[str] = []
        self.status_counts: Counter = Counter()
        self.item_counts: Counter = Counter()
        self.max_body: int | None = None
        self.item_429_rate = 0.0
        self.mapping_error_ids: set[str] = set()
        self.outage_until = 0.0
        self.outage_status = 503
        self.random = random.Random(seed)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                pass

            def do_POST(self):  # noqa: N802 - the base class's name
                server._handle(self)

            def do_PUT(self):  # noqa: N802
                server._handle(self)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}{prefix}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="es-server", daemon=True)

    def start(self) -> ESServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ESServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def outage(self, seconds: float, status: int = 503) -> None:
        with self.lock:
            self.outage_until = time.monotonic() + seconds
            self.outage_status = status

    # -- reading what arrived ---------------------------------------------------

    def documents(self, index: str | None = None) -> list[dict]:
        with self.lock:
            return [doc for name, docs in self.indices.items() if index is None or name == index for doc in docs.values()]

    def ids(self) -> Counter:
        """Successful creates per _id, over every index."""
        with self.lock:
            ids: Counter = Counter()
            for (_, doc_id), n in self.creates.items():
                ids[doc_id] += n
            return ids

    def index_names(self) -> set[str]:
        with self.lock:
            return set(self.indices)

    # -- answering -------------------------------------------------------------

    def _reply(self, handler, status: int, body: dict, extra: dict | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
        with self.lock:
            self.status_counts[status] += 1

    def _error(self, handler, status: int, kind: str, reason: str, record: bool = True) -> None:
        if record:
            with self.lock:
                self.errors.append(f"{status} {kind}: {reason}")
        self._reply(handler, status, {"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}, "status": status})

    def _handle(self, handler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        raw = handler.rfile.read(length)
        path, _, query = handler.path.partition("?")
        if path != f"{self.prefix}/_bulk":
            self._error(handler, 404, "not_found", f"no handler for {handler.command} {path}")
            return
        if self.authorization is not None and handler.headers.get("Authorization") != self.authorization:
            kind = "security_exception"
            reason = "missing authentication credentials for REST request [/_bulk]" if handler.headers.get("Authorization") is None \
                else "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
            self._error(handler, 401, kind, reason, record=False)
            return
        with self.lock:
            failing = time.monotonic() < self.outage_until
            outage_status = self.outage_status
        if failing:
            self._error(handler, outage_status, "es_rejected_execution_exception" if outage_status == 429 else "unavailable",
                        "rejected execution of coordinating operation", record=False)
            return
        if self.max_body is not None and len(raw) > self.max_body:
            self._error(handler, 413, "content_too_long", f"request body of {len(raw)} bytes is over {self.max_body}", record=False)
            return
        content_type = handler.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in ("application/x-ndjson", "application/json"):
            self._error(handler, 406, "media_type_header_exception", f"Content-Type header [{content_type}] is not supported")
            return
        encoding = handler.headers.get("Content-Encoding", "").strip().lower()
        try:
            body = gzip.decompress(raw) if encoding == "gzip" else raw
            if encoding not in ("", "gzip", "identity"):
                raise ValueError(f"unsupported Content-Encoding {encoding}")
        except Exception as error:  # noqa: BLE001 - every unreadable body is a finding
            self._error(handler, 400, "parse_exception", f"cannot decompress the body: {error}")
            return
        if not body.endswith(b"\n"):
            self._error(handler, 400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
            return
        lines = body.split(b"\n")[:-1]
        items = []
        i = 0
        try:
            while i < len(lines):
                action = json.loads(lines[i], object_pairs_hook=_no_duplicates)
                if not isinstance(action, dict) or len(action) != 1:
                    raise ValueError(f"line {i + 1}: an action line must hold one action, not {lines[i][:200]!r}")
                (op, meta), = action.items()
                if op not in ("create", "index", "update", "delete"):
                    raise ValueError(f"line {i + 1}: unknown action [{op}]")
                source = None
                if op != "delete":
                    if i + 1 >= len(lines):
                        raise ValueError(f"line {i + 1}: an action without its source line")
                    source_line = lines[i + 1]
                    i += 2
                else:
                    source_line = None
                    i += 1
                items.append((op, meta, source_line))
        except Exception as error:  # noqa: BLE001
            self._error(handler, 400, "illegal_argument_exception", f"Malformed action/metadata line: {error}")
            return
        results = [self._item(op, meta, source_line) for op, meta, source_line in items]
        errors = any(r[op]["status"] >= 300 for r, (op, _, _) in zip(results, items))
        with self.lock:
            self.requests.append(BulkRequest(path, query, dict(handler.headers), len(raw), len(items), 200))
        self._reply(handler, 200, {"took": 1, "errors": errors, "items": results})

    def _item(self, op: str, meta: dict, source_line: bytes | None) -> dict:
        index = meta.get("_index", "")
        doc_id = meta.get("_id")

        def result(status: int, kind: str | None = None, reason: str | None = None, **extra) -> dict:
            body = {"_index": index, "_id": doc_id, "status": status, **extra}
            if kind:
                body["error"] = {"type": kind, "reason": reason}
            with self.lock:
                self.item_counts[status] += 1
            return {op: body}

        if not index:
            return result(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
        if (index.startswith("logs-") or index.startswith("traces-")) and index.count("-") >= 2 and op != "create":
            return result(400, "illegal_argument_exception", f"only write ops with an op_type of create are allowed in data streams [{index}]")
        try:
            source = json.loads(source_line, object_pairs_hook=_no_duplicates)
            if not isinstance(source, dict):
                raise ValueError("the source is not an object")
        except Exception as error:  # noqa: BLE001
            with self.lock:
                self.errors.append(f"unreadable source for {doc_id}: {error}")
            return result(400, "document_parsing_exception", f"[1:1] failed to parse: {error}")
        event_id = source.get("event_id") or (source.get("attributes") or {}).get("event_id") or source.get("Attributes.event_id")
        with self.lock:
            refuse_429 = self.item_429_rate and self.random.random() < self.item_429_rate
            bad = event_id in self.mapping_error_ids
        if refuse_429:
            return result(429, "es_rejected_execution_exception", "rejected execution of processing of [bulk item]")
        if bad:
            return result(400, "mapper_parsing_exception", "failed to parse field [model] of type [keyword] in document")
        if doc_id is None:
            doc_id = f"auto-{self.random.getrandbits(64):016x}"
        with self.lock:
            docs = self.indices.setdefault(index, {})
            if doc_id in docs and op == "create":
                self.conflicts += 1
                return result(409, "version_conflict_engine_exception", f"[{doc_id}]: version conflict, document already exists (current version [1])")
            docs[doc_id] = source
            self.creates[(index, doc_id)] += 1
        return result(201, _version=1, result="created")
