"""A destination for `make bench` that costs as little as a destination can: one
asyncio loop, HTTP/1.1 keep-alive, no JSON parsing. The strict fixtures in Tests/e2e
parse every event and would be the bottleneck here; this one checks what a
benchmark can trust cheaply and counts records.

    python3 Benchmarks/sink.py KIND ARRIVALS

KIND is `hec` (Splunk HEC event endpoint: token checked, events counted by their
`"event":` member), `es` (Elasticsearch `_bulk`: answers one `create` item per
action line, all 201) or `otlp` (OTLP/HTTP protobuf logs: the request is parsed with
opentelemetry-proto and its log records counted). Prints its port, runs until stdin
closes, then writes ARRIVALS: one line per request, `<microseconds since the epoch>
<records>`, which runtime.py turns into receipt-to-sink latency.
"""
import asyncio
import gzip
import sys
import threading
import time
import zlib

KIND = sys.argv[1]
ARRIVALS = sys.argv[2]
arrivals = []  # (µs since the epoch, records) per request, kept until the end

if KIND == "otlp":
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest


def count_records(path, headers, body):
    """(status, response body, content type, records) for one request."""
    if KIND == "hec":
        if headers.get("authorization") != "Splunk bench-token":
            return 401, b'{"text":"Invalid token","code":4}', "application/json", 0
        if not path.startswith("/services/collector"):
            return 404, b'{"text":"The requested URL was not found on this server.","code":404}', "application/json", 0
        return 200, b'{"text":"Success","code":0}', "application/json", body.count(b'"event":')
    if KIND == "es":
        if not path.startswith("/_bulk"):
            return 404, b'{"error":"no handler"}', "application/json", 0
        actions = body.count(b"\n") // 2
        items = b",".join([b'{"create":{"status":201}}'] * actions)
        return 200, b'{"took":1,"errors":false,"items":[' + items + b"]}", "application/json", actions
    if KIND == "otlp":
        request = ExportLogsServiceRequest.FromString(body)
        records = sum(len(scope.log_records) for resource in request.resource_logs for scope in resource.scope_logs)
        return 200, b"", "application/x-protobuf", records
    raise SystemExit(f"unknown kind {KIND}")


async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            if method == "GET" and path == "/count":
                # runtime.py asks how many records arrived (Rotel has no counter of its own).
                answer = str(sum(n for _, n in arrivals)).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(answer), answer))
                await writer.drain()
                continue
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            if headers.get("transfer-encoding", "").lower() == "chunked":
                parts = []
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    parts.append(await reader.readexactly(size + 2))
                    if size == 0:
                        break
                body = b"".join(part[:-2] for part in parts)
            else:
                body = await reader.readexactly(int(headers.get("content-length", "0")))
            encoding = headers.get("content-encoding", "")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            status, answer, content_type, records = count_records(path, headers, body)
            if records:
                arrivals.append((time.time_ns() // 1000, records))
            writer.write(b"HTTP/1.1 %d OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
                         % (status, content_type.encode(), len(answer), answer))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0, limit=1 << 20)
    print(server.sockets[0].getsockname()[1], flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(done.set)), daemon=True).start()
    await done.wait()
    with open(ARRIVALS, "w") as out:
        out.writelines(f"{t} {n}\n" for t, n in arrivals)


asyncio.run(main())
