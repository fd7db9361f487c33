// HTTP/2 on the server's cleartext port, driven by real clients from Debian's
// nghttp2-client and curl packages: prior-knowledge h2c next to HTTP/1.1, trailers,
// the body and header limits, and many concurrent streams.
import Foundation
import NIOCore
import NIOHTTP1
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
            case "/slow":
                return eventLoop.scheduleTask(in: .milliseconds(5)) { .text(.ok, "slow \(version)") }.futureResult
            default:
                var response = HTTPServerResponse(status: .ok, headers: HTTPHeaders([("x-version", version)]), body: request.body)
                response.headers.add(name: "Connection", value: "keep-alive")  // must not reach an HTTP/2 client
                return eventLoop.makeSucceededFuture(response)
            }
        }
    }

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
        let server = try await HTTPServer.start(at: HostPort(host: "127.0.0.1", port: 0), limits: limits, responder: Echo())
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
}
