"""A local Splunk HEC endpoint for `make bench`: the strict test fixture
(Tests/e2e/hec_server.py) without misbehaviour. Prints its port, runs until stdin closes."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "Tests" / "e2e"))
from hec_server import HECServer  # noqa: E402

server = HECServer(token="bench-token").start()
print(server.port, flush=True)
sys.stdin.read()
server.close()
