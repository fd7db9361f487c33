"""Durable delivery with the disk log: a 2xx means the data reaches the destination
across `kill -9` at random moments, and a shutdown leaves what it could not deliver
on disk for the next start."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest

import otlp_samples as samples
import runtime_helpers as rt
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

pytestmark = pytest.mark.skipif("file_storage" not in rt.sluice_components().get("extensions", []),
                                reason="this build has no file_storage extension")


def _request(event_ids: list[str]) -> bytes:
    message = ExportLogsServiceRequest()
    scope = message.resource_logs.add().scope_logs.add()
    for event_id in event_ids:
        record = scope.log_records.add()
        record.time_unix_nano = samples.BASE_TIME
        record.body.string_value = f"decision {event_id}"
        record.attributes.add(key="event_id").value.string_value = event_id
    return message.SerializeToString()


def _arrived(sink) -> Counter:
    ids: Counter = Counter()
    for message in sink.messages("logs"):
        for resource_logs in message.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    for attribute in record.attributes:
                        if attribute.key == "event_id":
                            ids[attribute.value.string_value] += 1
                    # Corruption would show as a body that does not match its id.
                    assert record.body.string_value.startswith("decision evt-"), record
    return ids


def _disk_config(sink, fsync: str):
    def config(ports):
        return {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
            "processors": {"batch": {"send_batch_size": 500, "timeout": "50ms"}},
            "exporters": {"otlphttp": {"endpoint": sink.endpoint, "compression": "none",
                                       "retry_on_failure": {"initial_interval": "100ms", "max_interval": "1s"},
                                       "sending_queue": {"storage": "file_storage"}}},
            "extensions": {"file_storage": {"directory": "STORAGE", "fsync": fsync}},
            "service": {
                "extensions": ["file_storage"],
                "telemetry": {"metrics": {"address": ports.address("metrics")}},
                "pipelines": {"logs": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["otlphttp"]}},
            },
        }
    return config


class Load:
    """Client threads posting requests of 50 unique event ids; remembers which got 200."""

    def __init__(self, url: str, prefix: str, threads: int = 3):
        self.url = url
        self.prefix = prefix
        self.acked: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._next = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _ids(self) -> list[str]:
        with self._lock:
            start = self._next
            self._next += 50
        return [f"evt-{self.prefix}-{i:07d}" for i in range(start, start + 50)]

    def _run(self) -> None:
        while not self._stop.is_set():
            ids = self._ids()
            try:
                response = rt.post(self.url, _request(ids), timeout=5)
            except Exception:  # the process was killed mid-request: not acknowledged
                continue
            if response.status == 200:
                with self._lock:
                    self.acked.update(ids)

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def test_kill_9_under_load_loses_nothing_acknowledged(tmp_path, track_sluice, otlp_sink):
    config = _disk_config(otlp_sink, "always")
    ports = rt.Ports()
    settings = config(ports)
    settings["extensions"]["file_storage"]["directory"] = str(tmp_path / "storage")
    process = rt.SluiceProcess(tmp_path, settings, ports)
    track_sluice(process)
    rng = random.Random(20261121)
    acked: set[str] = set()
    for cycle in range(20):
        process.start()
        process.wait_running()
        with Load(ports.url("otlp", "/v1/logs"), prefix=f"c{cycle:02d}") as load:
            time.sleep(rng.uniform(0.3, 1.2))
            process.process.kill()  # SIGKILL, at a random moment under load
            process.process.wait(timeout=30)
        acked |= load.acked
    process.kill()
    # One last start delivers what the log still holds.
    process.start()
    process.wait_running()
    arrived: Counter = Counter()

    def all_arrived() -> bool:
        nonlocal arrived
        arrived = _arrived(otlp_sink)
        return acked <= set(arrived)

    rt.wait_until(all_arrived, 120, what=f"all {len(acked)} acknowledged records at the sink")
    duplicates = sum(n - 1 for n in arrived.values() if n > 1)
    print(f"\n20 kill -9 cycles: {len(acked)} acknowledged, {len(set(arrived))} distinct arrived, {duplicates} duplicates")
    assert len(acked) > 1000
    assert process.stop(timeout=30) == 0


def test_shutdown_leaves_undelivered_data_for_the_next_start(tmp_path, track_sluice, otlp_sink):
    otlp_sink.set_outage(3600)  # the destination is down for the whole first run
    ports = rt.Ports()
    settings = _disk_config(otlp_sink, "interval")(ports)
    settings["extensions"]["file_storage"]["directory"] = str(tmp_path / "storage")
    settings["service"]["shutdown_timeout"] = "1s"
    process = rt.SluiceProcess(tmp_path, settings, ports)
    track_sluice(process)
    process.start()
    process.wait_running()
    ids = [f"evt-s-{i:05d}" for i in range(2000)]
    for chunk in range(0, len(ids), 100):
        assert rt.post(ports.url("otlp", "/v1/logs"), _request(ids[chunk:chunk + 100])).status == 200
    assert process.stop(timeout=30) == 0
    assert not _arrived(otlp_sink)
    otlp_sink.set_outage(0)
    process.start()
    process.wait_running()
    rt.wait_until(lambda: set(ids) <= set(_arrived(otlp_sink)), 60, what="the records left on disk delivered after restart")
    assert process.stop(timeout=30) == 0


@pytest.mark.skipif(not __import__("os").environ.get("SLUICE_LONG_TESTS"),
                    reason="takes over 10 minutes; run with SLUICE_LONG_TESTS=1")
def test_ten_minute_outage_with_200000_records(tmp_path, track_sluice, otlp_sink):
    """The destination is down for 10 minutes while 200,000 records arrive; all of
    them arrive after it comes back, and /status goes active → degraded → active."""
    ports = rt.Ports()
    settings = _disk_config(otlp_sink, "interval")(ports)
    settings["extensions"]["file_storage"]["directory"] = str(tmp_path / "storage")
    settings["exporters"]["otlphttp"]["retry_on_failure"]["max_interval"] = "5s"
    process = rt.SluiceProcess(tmp_path, settings, ports)
    track_sluice(process)
    process.start()
    process.wait_running()
    status_url = ports.url("metrics", "/status")
    assert rt.exporter_status(status_url)["otlphttp"]["status"] == "active"
    outage_start = time.monotonic()
    otlp_sink.set_outage(600)
    ids = [f"evt-o-{i:06d}" for i in range(200_000)]
    seen_states = {"active"}
    per_request = 100
    pause = 540 / (len(ids) / per_request)  # spread the records over 9 minutes
    for chunk in range(0, len(ids), per_request):
        assert rt.post(ports.url("otlp", "/v1/logs"), _request(ids[chunk:chunk + per_request])).status == 200
        if chunk % 20_000 == 0:
            seen_states.add(rt.exporter_status(status_url)["otlphttp"]["status"])
        time.sleep(pause)
    seen_states.add(rt.exporter_status(status_url)["otlphttp"]["status"])
    assert "degraded" in seen_states, seen_states
    assert not _arrived(otlp_sink)
    rt.wait_until(lambda: set(ids) <= set(_arrived(otlp_sink)), 600 - (time.monotonic() - outage_start) + 180,
                  what="all 200,000 records after the outage")
    rt.wait_until(lambda: rt.exporter_status(status_url)["otlphttp"]["status"] == "active", 30, what="status active again")
    arrived = _arrived(otlp_sink)
    print(f"\n10-minute outage: {len(ids)} sent, {len(set(arrived))} distinct arrived, "
          f"{sum(n - 1 for n in arrived.values() if n > 1)} duplicates, states seen {sorted(seen_states)}")
    assert process.stop(timeout=30) == 0
