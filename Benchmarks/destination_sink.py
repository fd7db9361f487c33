"""Local destinations for `make bench`, the strict test fixtures without
misbehaviour: `datadog` (Tests/e2e/datadog_server.py), `sentinel` (an Entra ID
token endpoint and a Logs Ingestion API, Tests/e2e/azure_server.py) or `webhook`
(Tests/e2e/webhook_receiver.py). Prints its port (sentinel: the API's, then Entra's),
runs until stdin closes. Received events are counted, not kept."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "Tests" / "e2e"))
from azure_server import EntraServer, LogsIngestionServer  # noqa: E402
from datadog_server import DatadogServer  # noqa: E402
from webhook_receiver import WebhookReceiver  # noqa: E402


class Counted(list):
    """Stands in for a fixture's list of received events: counts, keeps nothing."""

    received = 0

    def __iadd__(self, items):
        self.received += len(items)
        return self


kind = sys.argv[1]
servers = []
if kind == "datadog":
    servers = [DatadogServer("bench-key")]
    servers[0].entries = Counted()
elif kind == "sentinel":
    entra = EntraServer("bench-tenant", "bench-client", client_secret="bench-secret")
    servers = [LogsIngestionServer(entra, "dcr-bench", "Custom-Bench_CL"), entra]
    servers[0].rows = Counted()
elif kind == "webhook":
    servers = [WebhookReceiver("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    servers[0].events = Counted()
else:
    sys.exit(f"unknown destination {kind}")
for server in servers:
    server.start()
print(" ".join(str(server.port) for server in servers), flush=True)
sys.stdin.read()
for server in servers:
    server.close()
