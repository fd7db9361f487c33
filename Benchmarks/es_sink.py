"""A local Elasticsearch bulk endpoint for `make bench`: the strict test fixture
(Tests/e2e/es_server.py) without misbehaviour. Prints its port, runs until stdin closes."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "Tests" / "e2e"))
from es_server import ESServer  # noqa: E402

server = ESServer().start()
print(server.port, flush=True)
sys.stdin.read()
server.close()
