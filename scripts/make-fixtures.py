#!/usr/bin/env python3
"""Writes the OTLP fixtures the Swift unit tests decode, with the OpenTelemetry
Python SDK (pinned in Tests/e2e/requirements.txt):

  Tests/SluiceOTLPTests/Fixtures/
    logs.pb               ExportLogsServiceRequest, the SDK's protobuf encoder
    logs.json             the same records, the SDK's OTLP/JSON encoder (as
                          opentelemetry-exporter-otlp-json-http sends them)
    logs.expected.json    the OTLP/JSON of logs.pb as the protobuf library writes
                          it (json_format.MessageToDict: lowerCamelCase keys,
                          64-bit integers as strings, enums as integers, defaults
                          left out) with trace/span ids as lowercase hex
    traces.pb, traces.json, traces.expected.json   the same for spans

The expected files are pretty-printed and say 0.0 where sluice writes 0: compare
them as parsed JSON, not byte for byte.

The records are those the end-to-end tests use (Tests/e2e/otlp_samples.py):
every attribute type and its edge values, unicode, empty strings and keys, with
and without trace context, events, links, statuses, span kinds, dropped counts,
resources and scopes with schema URLs, AI-gateway audit events. Timestamps and
ids are fixed, so running this again gives the same bytes.

Usage: python3 scripts/make-fixtures.py [OUTDIR]
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "Tests" / "e2e"))

import otlp_samples as samples  # noqa: E402


def write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({len(data)} bytes)")


def expected_json(message) -> bytes:
    document = samples.message_to_otlp_json(message)
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def main() -> int:
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "Tests" / "SluiceOTLPTests" / "Fixtures"
    out.mkdir(parents=True, exist_ok=True)

    records = samples.sdk_log_records()
    logs = samples.proto_logs(records)
    write(out / "logs.pb", logs.SerializeToString(deterministic=True))
    write(out / "logs.json", samples.json_logs(records))
    write(out / "logs.expected.json", expected_json(logs))

    spans = samples.sdk_spans()
    traces = samples.proto_spans(spans)
    write(out / "traces.pb", traces.SerializeToString(deterministic=True))
    write(out / "traces.json", samples.json_spans(spans))
    write(out / "traces.expected.json", expected_json(traces))

    # The two SDK encoders must agree, or the fixtures contradict each other.
    for name, message, sdk_json in [("logs", logs, out / "logs.json"), ("traces", traces, out / "traces.json")]:
        from_json = samples.otlp_json_to_message(sdk_json.read_bytes(), type(message))
        if from_json != message:
            print(f"error: the SDK's protobuf and JSON encoders disagree on {name}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
