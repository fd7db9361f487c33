// HTTP/2 on the server's cleartext port, driven by real clients from Debian's
// nghttp2-client and curl packages: prior-knowledge h2c next to HTTP/1.1, trailers,
// the body and header limits, and many concurrent streams.
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import Testing
@testable import SluiceNet

@Suite struct HTTP2ServerTests {
    /// Echoes the body; `/trailers` answers like gRPC; `/slow` waits a little so
    /// many streams are open at once.
    struct Echo: HTTPRequestResponder {
        func respond(to request: HTTPServerRequest, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPServerResponse> {
            let version = "\(request.version.major).\(request.version.minor)"
            switch request.path {
            case "/trailers":
                var response = HTTPServerResponse(status: .ok, headers: HTTPHeaders([("content-type", "application/grpc")]),
                                                  body: request.body)
                response.trailers = HTTPHeaders([("grpc-status", "0"), ("grpc-message", "fine")])
                return eventLoop.makeSucceededFuture(response)
            case "/trailers-only":
                let response = HTTPServerResponse(status: .ok, headers: HTTPHeaders([("content-type", "application/grpc")]), body: nil,
                                                  trailers: HTTPHeaders([("grpc-status", "16")]))
                return eventLoop.makeSucceededFuture(response)
            case "/hold":
                // Holds the body a while, as a slow pipeline log would, and keeps
                // count of how much is held at once.
                let held = request.body.readableBytes
                let now = Held.shared.withLock { state in
                    state.current += held
                    state.peak = max(state.peak, state.current)
                    return state.current
                }
                _ = now
                return eventLoop.scheduleTask(in: .milliseconds(400)) {
                    Held.shared.withLock { $0.current -= held }
                    return .text(.ok, "held")
                }.futureResult
            case "/slow":
                return eventLoop.scheduleTask(in: .milliseconds(5)) { .text(.ok, "slow \(version)") }.futureResult
            default:
                var response = HTTPServerResponse(status: .ok, headers: HTTPHeaders([("x-version", version)]), body: request.body)
                response.headers.add(name: "Connection", value: "keep-alive")  // must not reach an HTTP/2 client
                return eventLoop.makeSucceededFuture(response)
            }
        }
    }

    /// Bodies the `/hold` path has at the moment, and the most it had at once.
    enum Held {
        static let shared = Mutex<(current: Int, peak: Int)>((0, 0))
    }

    /// An h2 client (the pure-Python `h2` package) that opens `streams` uploads of
    /// `size` bytes each, sends whatever the flow-control windows allow, and prints
    /// how many uploads it finished and how many answers it got.
    static let uploader = #"""
import socket, sys, time
import h2.config, h2.connection, h2.events

port, streams, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sock = socket.create_connection(("127.0.0.1", port))
sock.settimeout(0.2)
conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
conn.initiate_connection()
ids, sent, answered = [], {}, set()
for _ in range(streams):
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "POST"), (":path", "/hold"), (":scheme", "http"),
                            (":authority", "test"), ("content-length", str(size))])
    ids.append(sid)
    sent[sid] = 0
sock.sendall(conn.data_to_send())
deadline = time.time() + 30
while len(answered) < streams and time.time() < deadline:
    for sid in ids:
        while True:
            room = min(conn.local_flow_control_window(sid), size - sent[sid], conn.max_outbound_frame_size)
            if room <= 0:
                break
            sent[sid] += room
            conn.send_data(sid, b"x" * room, end_stream=sent[sid] == size)
    out = conn.data_to_send()
    if out:
        sock.sendall(out)
    try:
        data = sock.recv(1 << 16)
    except socket.timeout:
        continue
    if not data:
        break
    for event in conn.receive_data(data):
        if isinstance(event, h2.events.StreamEnded):
            answered.add(event.stream_id)
    out = conn.data_to_send()
    if out:
        sock.sendall(out)
print(sum(1 for sid in ids if sent[sid] == size), len(answered))
"""#

    static func run(_ tool: String, _ arguments: [String], stdin: String? = nil) throws -> (status: Int32, out: String, err: String) {
        let process = Process()
        if let stdin { process.standardInput = FileHandle(forReadingAtPath: stdin) } else { process.standardInput = FileHandle.nullDevice }
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [tool] + arguments
        let out = Pipe()
        let errPath = FileManager.default.temporaryDirectory.appendingPathComponent("h2-stderr-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: errPath.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errPath) }
        process.standardOutput = out
        process.standardError = try FileHandle(forWritingTo: errPath)
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let errText = (try? String(contentsOf: errPath, encoding: .utf8)) ?? ""
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), errText)
    }

    static func withServer(limits: HTTPServerLimits = HTTPServerLimits(), _ body: (Int) async throws -> Void) async throws {
        let server = try await HTTPServer.start(at: HostPort(host: "127.0.0.1", port: 0), name: "test", limits: limits, responder: Echo())
        let port = try #require(server.localAddress?.port)
        do {
            try await body(port)
        } catch {
            await server.close()
            throw error
        }
        await server.close()
    }

    static func temporaryFile(_ bytes: Int) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("h2-body-\(UUID().uuidString)").path
        try Data((0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func priorKnowledgeHTTP2AndHTTP1OnOnePort() async throws {
        try await Self.withServer { port in
            let file = try Self.temporaryFile(300_000)
            defer { try? FileManager.default.removeItem(atPath: file) }
            let h2 = try Self.run("curl", ["-sS", "--http2-prior-knowledge", "--data-binary", "@\(file)", "-o", file + ".out", "-D", "-",
                                           "-w", "%{http_version} %{http_code}", "http://127.0.0.1:\(port)/echo"])
            #expect(h2.status == 0, "\(h2.err)")
            #expect(h2.out.hasSuffix("2 200"), "\(h2.out)")
            #expect(h2.out.contains("x-version: 2.0"))
            #expect(!h2.out.lowercased().contains("connection: keep-alive"))
            #expect(try Data(contentsOf: URL(fileURLWithPath: file + ".out")) == Data(contentsOf: URL(fileURLWithPath: file)))
            try? FileManager.default.removeItem(atPath: file + ".out")

            let h1 = try Self.run("curl", ["-sS", "--http1.1", "--data-binary", "hello", "-D", "-", "-w", " %{http_version} %{http_code}",
                                           "http://127.0.0.1:\(port)/echo"])
            #expect(h1.out.hasSuffix("hello 1.1 200"), "\(h1.out)")
            #expect(h1.out.contains("x-version: 1.1"))
        }
    }

    @Test func trailersFollowTheBodyAndTrailersOnlyIsOneHeadersFrame() async throws {
        try await Self.withServer { port in
            let file = try Self.temporaryFile(1000)
            defer { try? FileManager.default.removeItem(atPath: file) }
            let withBody = try Self.run("nghttp", ["-nv", "-d", file, "http://127.0.0.1:\(port)/trailers"])
            #expect(withBody.status == 0, "\(withBody.err)")
            // The body's DATA frame comes before a HEADERS frame with the trailers.
            let data = try #require(withBody.out.range(of: "recv DATA frame"))
            let trailer = try #require(withBody.out.range(of: "grpc-status: 0"))
            #expect(data.lowerBound < trailer.lowerBound)
            #expect(withBody.out.contains("grpc-message: fine"))

            let only = try Self.run("nghttp", ["-nv", "http://127.0.0.1:\(port)/trailers-only"])
            #expect(only.status == 0, "\(only.err)")
            #expect(only.out.contains("grpc-status: 16"))
            #expect(!only.out.contains("recv DATA frame"))
        }
    }

    @Test func bodyOverTheLimitGets413WhetherDeclaredOrFoundWhileReading() async throws {
        try await Self.withServer(limits: HTTPServerLimits(maxBodyBytes: 100_000)) { port in
            let big = try Self.temporaryFile(1_000_000)
            defer { try? FileManager.default.removeItem(atPath: big) }
            // Without content-length (curl sends none for a body from a pipe), the
            // limit is found while the body arrives.
            let streamed = try Self.run("curl", ["-sS", "--http2-prior-knowledge", "-X", "POST", "-T", "-", "-o", "/dev/null",
                                                 "-w", "%{http_code}", "http://127.0.0.1:\(port)/echo"], stdin: big)
            #expect(streamed.out == "413", "\(streamed.out) \(streamed.err)")
            let declared = try Self.run("curl", ["-sS", "--http2-prior-knowledge", "--data-binary", "@\(big)", "-o", "/dev/null",
                                                 "-w", "%{http_code}", "http://127.0.0.1:\(port)/echo"])
            #expect(declared.out == "413", "\(declared.out) \(declared.err)")
        }
    }

    @Test func headersOverTheLimitGet431() async throws {
        try await Self.withServer(limits: HTTPServerLimits(maxHeaderListBytes: 8 << 10)) { port in
            let big = String(repeating: "a", count: 20_000)
            let result = try Self.run("curl", ["-sS", "--http2-prior-knowledge", "-H", "x-big: \(big)", "-o", "/dev/null",
                                               "-w", "%{http_code}", "http://127.0.0.1:\(port)/echo"])
            #expect(result.out == "431", "\(result.out) \(result.err)")
            let fine = try Self.run("curl", ["-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                                             "http://127.0.0.1:\(port)/echo"])
            #expect(fine.out == "200")
        }
    }

    @Test func manyConcurrentStreamsAllSucceed() async throws {
        try await Self.withServer(limits: HTTPServerLimits(maxConcurrentStreams: 64)) { port in
            let body = try Self.temporaryFile(20_000)
            defer { try? FileManager.default.removeItem(atPath: body) }
            let result = try Self.run("h2load", ["-n", "4000", "-c", "4", "-m", "64", "-d", body, "http://127.0.0.1:\(port)/slow"])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("requests: 4000 total, 4000 started, 4000 done, 4000 succeeded, 0 failed, 0 errored"), "\(result.out)")
            #expect(result.out.contains("status codes: 4000 2xx"), "\(result.out)")
        }
    }

    @Test func flowControlHoldsBackAClientFasterThanTheResponder() async throws {
        // 20 uploads of 1 MiB against a responder that holds each body 400 ms: the
        // connection holds at most its body buffer (2 MiB here), one more body, and
        // what the stream windows (128 KiB each) let in flight — not all 20 MiB at
        // once; and every upload is still answered in the end.
        var limits = HTTPServerLimits(maxBodyBytes: 1 << 20)
        limits.connectionBodyBufferBytes = 2 << 20
        try await Self.withServer(limits: limits) { port in
            let script = FileManager.default.temporaryDirectory.appendingPathComponent("h2-uploader-\(UUID().uuidString).py").path
            try Self.uploader.write(toFile: script, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: script) }
            Held.shared.withLock { $0 = (0, 0) }
            let result = try Self.run("python3", [script, String(port), "20", String(1 << 20)])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.trimmingCharacters(in: .whitespacesAndNewlines) == "20 20", "uploads finished, answers: \(result.out) \(result.err)")
            let peak = Held.shared.withLock { $0.peak }
            #expect(peak <= (2 << 20) + (1 << 20) + 20 * (128 << 10), "held at once: \(peak) bytes")
            #expect(peak >= 1 << 20)
        }
    }

    @Test func aConnectionThatSendsNothingIsClosedAfterTheReadTimeout() async throws {
        // Before the first byte no protocol is chosen yet; the selector itself must
        // close a silent connection (with TLS, a stalled handshake looks the same).
        try await Self.withServer(limits: HTTPServerLimits(readTimeout: .milliseconds(300))) { port in
            let result = try Self.run("python3", ["-c", """
                import socket
                s = socket.create_connection(("127.0.0.1", \(port)))
                s.settimeout(10)
                print(len(s.recv(1)))
                """])
            #expect(result.status == 0 && result.out.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "\(result.out) \(result.err)")
        }
    }
}
