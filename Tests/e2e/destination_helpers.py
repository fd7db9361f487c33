"""What the e2e tests of the destinations built on the exporter kit share
(test_datadog.py, test_sentinel.py, test_webhooks.py): one logs pipeline from an
OTLP/HTTP receiver to one exporter, its /status entry and dead-letter file, and
waiting until a fixture holds every expected event_id.
"""

from __future__ import annotations

from collections import Counter

import runtime_helpers as rt
from test_splunk_hec import read_dead_letters

DELIVERY_TIMEOUT = 240
FAST_RETRY = {"initial_interval": "100ms", "max_interval": "1s", "max_elapsed_time": "10m"}


def logs_pipeline(exporter: str, settings: dict):
    """A config maker: OTLP/HTTP → batch → `exporter` with `settings`, retries
    fast and a pipeline log that holds a whole test run."""

    def make(ports: rt.Ports) -> dict:
        full = {"retry_on_failure": dict(FAST_RETRY), "sending_queue": {"sizer": "bytes", "queue_size": 1 << 30}, **settings}
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "processors": {"batch": {"send_batch_size": 5000, "timeout": "200ms"}},
            "exporters": {exporter: full},
            "service": {
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {"logs": {"receivers": ["otlp"], "processors": ["batch"], "exporters": [exporter]}},
            },
        }

    return make


def status(process, exporter: str) -> dict:
    return rt.exporter_status(process.ports.url("metrics", "/status"))[exporter]


def dead_letters(process, exporter: str) -> list[dict]:
    return read_dead_letters(process.data_dir / "dead-letter" / f"{exporter}.ndjson")


def wait_delivered(process, exporter: str, server, ids: set[str], what: str) -> Counter:
    """Until `server.ids` (event_id → times stored) holds every id and the
    exporter has nothing left to deliver; returns the counts."""

    def done():
        process.check_alive(what)
        with server.lock:
            arrived = Counter(server.ids)
        return ids <= set(arrived) and status(process, exporter)["lag"]["items"] == 0 and arrived

    return rt.wait_until(done, DELIVERY_TIMEOUT, poll=0.2, what=what)


def post_logs(process, body: bytes) -> None:
    assert rt.post(process.ports.url("otlp", "/v1/logs"), body).status == 200
