"""Reloading the configuration without a restart (issue #5, item 6; docs/reload.md):
SIGHUP or a changed file (also a Kubernetes ConfigMap's `..data` symlink swap)
switches pipelines while a client keeps sending; every acknowledged record reaches
some destination, the receiver's port never refuses a connection, an exporter whose
endpoint changed resumes from its cursor, a removed one drains, and an invalid
configuration is refused while the old one keeps delivering."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

import runtime_helpers as rt
from sink import OTLPSink
from test_durability import Load, _arrived, _request


class CountingLoad(Load):
    """`Load` that also counts requests that failed below HTTP (a refused or reset
    connection): a reload must not cause any."""

    def __init__(self, url: str, prefix: str, threads: int = 2):
        super().__init__(url, prefix, threads)
        self.transport_errors: list[str] = []
        self.statuses: dict[int, int] = {}

    def _run(self) -> None:
        while not self._stop.is_set():
            ids = self._ids()
            try:
                response = rt.post(self.url, _request(ids), timeout=10)
            except Exception as error:  # noqa: BLE001 - every failure is counted
                with self._lock:
                    self.transport_errors.append(repr(error))
                continue
            with self._lock:
                self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
                if response.status == 200:
                    self.acked.update(ids)
            time.sleep(0.01)


# Only a guard against hanging: long enough for a slow machine (ASan, two busy
# cores), and it costs nothing when the condition comes sooner.
WAIT = 120


def _config(ports, endpoint: str, batch_size: int = 100, extra: dict | None = None, storage: Path | None = None) -> dict:
    exporters = {"otlphttp": {"endpoint": endpoint, "compression": "none",
                              "retry_on_failure": {"initial_interval": "100ms", "max_interval": "500ms"}}}
    if storage is not None:
        exporters["otlphttp"]["sending_queue"] = {"storage": "file_storage"}
    exporters.update(extra or {})
    service = {
        "telemetry": {"metrics": {"address": ports.address("metrics")}},
        "shutdown_timeout": "20s",
        "pipelines": {"logs": {"receivers": ["otlp"], "processors": ["batch"], "exporters": sorted(exporters)}},
    }
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": ports.address("otlp")}}}},
        "processors": {"batch": {"send_batch_size": batch_size, "timeout": "50ms"}},
        "exporters": exporters,
        "service": service,
    }
    if storage is not None:
        config["extensions"] = {"file_storage": {"directory": str(storage), "fsync": "interval"}}
        service["extensions"] = ["file_storage"]
    return config


def _reloads(process, result: str) -> float:
    return rt.metric(rt.scrape(process.ports.url("metrics", "/metrics")), "sluice_config_reloads_total", result=result)


def _rewrite(process, config: dict) -> None:
    """Writes the new file in one rename, as an editor or a ConfigMap update does."""
    temporary = process.config_path.with_suffix(".new")
    temporary.write_text(rt.to_yaml(config))
    os.replace(temporary, process.config_path)


def _reload(process, config: dict, result: str = "success", hup: bool = True, timeout: float = WAIT) -> None:
    before = _reloads(process, result)
    _rewrite(process, config)
    if hup:
        process.process.send_signal(signal.SIGHUP)
    rt.wait_until(lambda: _reloads(process, result) > before, timeout, what=f"a reload counted as {result}")
    process.check_alive("a reload")


def _ids_at(sink) -> set[str]:
    return set(_arrived(sink))


def test_reload_under_load_moves_the_exporter_changes_batching_and_adds_and_removes_exporters(tmp_path, track_sluice):
    with OTLPSink() as first, OTLPSink() as second, OTLPSink() as third:
        process = rt.start_sluice(tmp_path, lambda ports: _config(ports, first.endpoint), track_sluice)
        ports = process.ports
        with CountingLoad(ports.url("otlp", "/v1/logs"), prefix="r") as load:
            rt.wait_until(lambda: len(_ids_at(first)) > 500, WAIT, what="records at the first sink")
            # 1. The exporter's endpoint moves to the second sink and batches double (SIGHUP).
            _reload(process, _config(ports, second.endpoint, batch_size=200))
            moved_at = len(load.acked)
            rt.wait_until(lambda: len(_ids_at(second)) > 500, WAIT, what="records at the second sink after the switch")
            # 2. Another exporter joins the pipeline; the file poll notices (no signal).
            extra = {"otlphttp/extra": {"endpoint": third.endpoint, "compression": "none"}}
            _reload(process, _config(ports, second.endpoint, batch_size=200, extra=extra), hup=False)
            rt.wait_until(lambda: len(_ids_at(third)) > 200, WAIT, what="records at the added exporter")
            # 3. It leaves again.
            _reload(process, _config(ports, second.endpoint, batch_size=200))
            # The load goes on after the last reload until there is enough of it (how
            # long that takes is the machine's business, not the test's).
            after_last = len(load.acked)
            rt.wait_until(lambda: len(load.acked) > max(2000, after_last + 500), WAIT,
                          what="more records acknowledged after the last reload")
        assert process.stop(timeout=60) == 0
        acked = load.acked
        arrived = _ids_at(first) | _ids_at(second)
        missing = acked - arrived
        print(f"\nreload under load: {len(acked)} acknowledged ({moved_at} before the switch), "
              f"first {len(_ids_at(first))}, second {len(_ids_at(second))}, added exporter {len(_ids_at(third))}, "
              f"answers {load.statuses}, transport errors {len(load.transport_errors)}")
        assert not missing, f"{len(missing)} acknowledged records arrived nowhere, e.g. {sorted(missing)[:5]}"
        assert not load.transport_errors, load.transport_errors[:5]
        assert len(acked) > 2000
        # Nothing sent after the switch went to the old endpoint's sink.
        late = [i for i in _ids_at(first) if int(i.rsplit("-", 1)[1]) > moved_at + 5000]
        assert not late, late[:5]
        logs = [line for line in process.log_lines() if line.get("msg") == "configuration reloaded"]
        assert len(logs) == 3, logs


def test_an_exporter_whose_endpoint_changed_resumes_from_its_cursor(tmp_path, track_sluice):
    """The first destination is down while records are acknowledged into the disk
    log; the reload points the exporter elsewhere and the new destination gets all
    of them — the cursor stayed where the old endpoint left it."""
    with OTLPSink() as down, OTLPSink() as replacement:
        down.set_outage(3600)
        storage = tmp_path / "storage"
        process = rt.start_sluice(tmp_path, lambda ports: _config(ports, down.endpoint, storage=storage), track_sluice)
        ports = process.ports
        ids = [f"evt-k-{i:05d}" for i in range(3000)]
        for chunk in range(0, len(ids), 100):
            assert rt.post(ports.url("otlp", "/v1/logs"), _request(ids[chunk:chunk + 100])).status == 200
        _reload(process, _config(ports, replacement.endpoint, storage=storage))
        rt.wait_until(lambda: set(ids) <= _ids_at(replacement), WAIT, what="every record at the new endpoint")
        assert not _ids_at(down)
        assert process.stop(timeout=60) == 0


def test_a_removed_exporter_drains_what_it_holds(tmp_path, track_sluice):
    with OTLPSink() as kept, OTLPSink() as leaving:
        extra = {"otlphttp/leaving": {"endpoint": leaving.endpoint, "compression": "none",
                                      "retry_on_failure": {"initial_interval": "100ms", "max_interval": "300ms"}}}
        process = rt.start_sluice(tmp_path, lambda ports: _config(ports, kept.endpoint, extra=extra), track_sluice)
        ports = process.ports
        # What it holds piles up until it has been removed: a fixed-length outage could
        # end (and the exporter deliver everything) before the reload on a slow machine,
        # and then there would be nothing left to drain.
        leaving.set_outage(3600)
        ids = [f"evt-d-{i:05d}" for i in range(2000)]
        for chunk in range(0, len(ids), 100):
            assert rt.post(ports.url("otlp", "/v1/logs"), _request(ids[chunk:chunk + 100])).status == 200
        _reload(process, _config(ports, kept.endpoint))
        assert not _ids_at(leaving), "the removed exporter delivered during the outage"
        leaving.set_outage(0)
        rt.wait_until(lambda: set(ids) <= _ids_at(leaving), WAIT, what="the removed exporter delivering what it held")
        after = [f"evt-d-{i:05d}" for i in range(2000, 2500)]
        assert rt.post(ports.url("otlp", "/v1/logs"), _request(after)).status == 200
        rt.wait_until(lambda: set(ids + after) <= _ids_at(kept), WAIT, what="everything at the kept exporter")
        time.sleep(0.5)
        assert not set(after) & _ids_at(leaving), "records sent after the reload went to the removed exporter"
        assert process.stop(timeout=60) == 0


def test_an_invalid_config_is_refused_and_the_old_one_keeps_delivering(tmp_path, track_sluice):
    with OTLPSink() as sink:
        process = rt.start_sluice(tmp_path, lambda ports: _config(ports, sink.endpoint), track_sluice)
        ports = process.ports
        good = _config(ports, sink.endpoint)
        # A typo in a type name: refused with the line, like `sluice validate`.
        bad = _config(ports, sink.endpoint)
        bad["exporters"]["otlphtp"] = bad["exporters"].pop("otlphttp")
        bad["service"]["pipelines"]["logs"]["exporters"] = ["otlphtp"]
        _reload(process, bad, result="failure")
        problems = [line["msg"] for line in process.log_lines() if line.get("reload") == "refused"]
        assert any(f"{process.config_path.name}:" in p and "exporters.otlphtp" in p and "did you mean otlphttp" in p for p in problems), problems
        status = rt.get(ports.url("metrics", "/status"))
        import json
        body = json.loads(status.body)
        assert body["reload"]["result"] == "failure" and body["reload"]["problems"], body
        assert "otlphttp" in body["exporters"], body

        # A port it cannot bind: refused at start, the old receiver still answers.
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        try:
            busy = _config(ports, sink.endpoint)
            busy["receivers"]["otlp/second"] = {"protocols": {"http": {"endpoint": f"127.0.0.1:{taken.getsockname()[1]}"}}}
            busy["service"]["pipelines"]["logs"]["receivers"] = ["otlp", "otlp/second"]
            _reload(process, busy, result="failure")
        finally:
            taken.close()
        assert any("receivers.otlp/second" in line["msg"] and "cannot start" in line["msg"]
                   for line in process.log_lines() if line.get("reload") == "refused"), process.stderr_tail()

        ids = [f"evt-i-{i:05d}" for i in range(500)]
        for chunk in range(0, len(ids), 100):
            assert rt.post(ports.url("otlp", "/v1/logs"), _request(ids[chunk:chunk + 100])).status == 200
        rt.wait_until(lambda: set(ids) <= _ids_at(sink), WAIT, what="records delivered under the old configuration")
        # A valid file again is taken.
        _reload(process, good)
        assert _reloads(process, "failure") == 2 and _reloads(process, "success") == 1
        assert process.stop(timeout=60) == 0


def test_a_configmap_symlink_swap_is_picked_up(tmp_path, track_sluice):
    """The kubelet's layout: collector.yaml → ..data/collector.yaml, ..data →
    ..<timestamp>; an update writes a new timestamped directory and renames a new
    `..data` link over the old one. The file's own path never changes."""
    with OTLPSink() as before, OTLPSink() as after:
        mount = tmp_path / "config"
        first_dir = mount / "..2026_01_01_00_00_00.000000001"
        first_dir.mkdir(parents=True)
        (mount / "..data").symlink_to(first_dir.name)
        (mount / "collector.yaml").symlink_to("..data/collector.yaml")
        ports = rt.Ports()
        process = rt.SluiceProcess(tmp_path, _config(ports, before.endpoint), ports)
        process.config_path = mount / "collector.yaml"  # start() writes through the links
        track_sluice(process)
        process.start()
        process.wait_running()
        assert rt.post(ports.url("otlp", "/v1/logs"), _request(["evt-m-00000"])).status == 200
        rt.wait_until(lambda: "evt-m-00000" in _ids_at(before), WAIT, what="the first record at the first sink")

        second_dir = mount / "..2026_01_01_00_01_00.000000002"
        second_dir.mkdir()
        (second_dir / "collector.yaml").write_text(rt.to_yaml(_config(ports, after.endpoint)))
        (mount / "..data_tmp").symlink_to(second_dir.name)
        os.replace(mount / "..data_tmp", mount / "..data")
        rt.wait_until(lambda: _reloads(process, "success") >= 1, WAIT, what="the poll noticing the swapped ..data link")
        reloaded = [line for line in process.log_lines() if line.get("msg") == "reloading the configuration"]
        assert reloaded and reloaded[-1].get("trigger") == "config file changed", reloaded
        assert rt.post(ports.url("otlp", "/v1/logs"), _request(["evt-m-00001"])).status == 200
        rt.wait_until(lambda: "evt-m-00001" in _ids_at(after), WAIT, what="the next record at the new endpoint")
        assert process.stop(timeout=60) == 0
