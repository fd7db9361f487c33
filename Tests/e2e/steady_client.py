"""A well-behaved OTLP/HTTP client in a process of its own, for the edge tests
(test_edge.py): one POST on a new connection, then a pause, again and again, until
its standard input closes. Each outcome is one JSON line on standard output:
`{"started": <CLOCK_MONOTONIC seconds>, "status": 200 or "<error>", "seconds": <time to the answer>,
"connect": <of which the TCP handshake, done by the kernel>}`.

Its own process, so that what it measures is the server: in the test's process the
threads that hold thousands of flood connections would take the interpreter lock
from it and add their time to its requests.

Usage: steady_client.py URL PAUSE_SECONDS BODY_HEX
"""

from __future__ import annotations

import http.client
import json
import select
import sys
import time
from urllib.parse import urlsplit


def main() -> None:
    url, pause, body = urlsplit(sys.argv[1]), float(sys.argv[2]), bytes.fromhex(sys.argv[3])
    headers = {"Content-Type": "application/x-protobuf"}
    while True:
        started = time.monotonic()
        connected = None
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
        try:
            connection.connect()
            connected = time.monotonic() - started
            connection.request("POST", url.path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            status: object = response.status
        except OSError as error:
            status = repr(error)
        finally:
            connection.close()
        print(json.dumps({"started": started, "status": status, "seconds": time.monotonic() - started, "connect": connected}), flush=True)
        # Standard input readable: closed by the test (or a line from it): stop.
        if select.select([sys.stdin], [], [], pause)[0]:
            return


if __name__ == "__main__":
    main()
