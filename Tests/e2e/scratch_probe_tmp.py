import os, time
import runtime_helpers as rt
from test_durability import *  # noqa
from test_durability import _small_fs_config, _assert_retry_later, _arrived

def free(p):
    s = os.statvfs(p); return s.f_bavail * s.f_frsize // 1024

def test_probe(tmp_path, track_sluice, otlp_sink, small_filesystem):
    otlp_sink.set_outage(3600)
    process = rt.start_sluice(tmp_path, _small_fs_config(otlp_sink, small_filesystem / "storage"), track_sluice)
    sender = Sender(process.ports.url("otlp", "/v1/logs"), "full")
    _assert_retry_later(sender.until_refused(limit=200))
    print("acked", len(sender.acked), "free KiB", free(small_filesystem), sorted(os.listdir(small_filesystem / "storage")))
    for root, dirs, files in os.walk(small_filesystem / "storage"):
        for f in files: print(root, f, os.path.getsize(os.path.join(root, f)))
    otlp_sink.delay = 0.3  # a slow destination
    otlp_sink.set_outage(0)
    t0 = time.monotonic()
    answers = []
    while time.monotonic() - t0 < 20:
        r = sender.send(); answers.append(r.status)
        print(f"{time.monotonic()-t0:.2f} {r.status} free {free(small_filesystem)} arrived {len(set(_arrived(otlp_sink)))}")
        time.sleep(0.05)
    print(answers)
