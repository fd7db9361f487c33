// The HTTP client over HTTP/2 against Sluice's own server: prior knowledge on
// http, ALPN h2 on https, many requests sharing one connection, trailers, and a
// server that refuses h2 when the client requires it.
import Logging
import NIOCore
import NIOHTTP1
import SluiceCore
import Synchronization
import Testing
@testable import SluiceNet

@Suite struct HTTP2ClientTests {
    /// Answers with the request's version and client port, gRPC-style trailers,
    /// and holds each answer briefly so requests overlap.
    struct Responder: HTTPRequestResponder {
        func respond(to request: HTTPServerRequest, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPServerResponse> {
            let text = "v\(request.version.major) port=\(request.remoteAddress?.port ?? 0) bytes=\(request.body.readableBytes)"
            let response = HTTPServerResponse(status: .ok, headers: HTTPHeaders([("content-type", "text/plain")]),
                                              body: ByteBuffer(string: text), trailers: HTTPHeaders([("grpc-status", "0")]))
            return eventLoop.scheduleTask(in: .milliseconds(20)) { response }.futureResult
        }
    }

    static func send(_ client: HTTPClient, count: Int) async throws -> [HTTPClientResponse] {
        try await withThrowingTaskGroup(of: HTTPClientResponse.self) { group in
            for i in 0..<count {
                group.addTask {
                    try await client.send(HTTPClientRequest(target: "/x", headers: HTTPHeaders([("content-type", "text/plain")]),
                                                            body: ByteBuffer(repeating: UInt8(i % 256), count: 1000 + i)))
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }

    @Test func priorKnowledgeSharesOneConnectionAndReadsTrailers() async throws {
        let server = try await HTTPServer.start(at: HostPort(host: "127.0.0.1", port: 0), name: "test", limits: HTTPServerLimits(), responder: Responder())
        let port = try #require(server.localAddress?.port)
        var settings = HTTPClient.Settings()
        settings.http2 = .required
        settings.proxy = nil
        let client = HTTPClient(endpoint: try #require(HTTPEndpoint("http://127.0.0.1:\(port)")), settings: settings)
        let responses = try await Self.send(client, count: 40)
        #expect(responses.count == 40)
        #expect(responses.allSatisfy { $0.status == .ok && $0.bodyText.hasPrefix("v2 ") && $0.trailers.first(name: "grpc-status") == "0" })
        let ports = Set(responses.map { $0.bodyText.split(separator: " ")[1] })
        #expect(ports.count == 1, "40 concurrent requests share one HTTP/2 connection: \(ports)")
        await client.close()
        await server.close()
    }

    @Test func httpsPicksH2ByALPNWhenTheServerOffersIt() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let context = try TLSServerContext(settings: TLSServerSettings(certFile: bed.serverCert, keyFile: bed.serverKey),
                                           logger: Logger(label: "test"), metrics: MetricsRegistry())
        let server = try await HTTPServer.start(at: HostPort(host: "127.0.0.1", port: 0), name: "test", limits: HTTPServerLimits(),
                                                responder: Responder(), tls: context)
        let port = try #require(server.localAddress?.port)
        for (use, expected) in [(HTTPClient.HTTP2Use.whenOffered, "v2 "), (.never, "v1 "), (.required, "v2 ")] {
            var settings = HTTPClient.Settings()
            settings.http2 = use
            settings.proxy = nil
            settings.tls = TLSClientConfiguration(caFile: bed.caFile)
            let client = HTTPClient(endpoint: try #require(HTTPEndpoint("https://localhost:\(port)")), settings: settings)
            let responses = try await Self.send(client, count: 8)
            #expect(responses.allSatisfy { $0.status == .ok && $0.bodyText.hasPrefix(expected) }, "\(use): \(responses.map(\.bodyText))")
            await client.close()
        }
        await server.close()
    }

    @Test func requiredH2AgainstAnHTTP1OnlyServerSaysWhy() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let port = try await bed.startServer(cert: bed.serverCert, key: bed.serverKey)
        var settings = HTTPClient.Settings()
        settings.http2 = .required
        settings.proxy = nil
        settings.tls = TLSClientConfiguration(caFile: bed.caFile)
        let client = HTTPClient(endpoint: try #require(HTTPEndpoint("https://localhost:\(port)")), settings: settings)
        await #expect {
            _ = try await client.send(HTTPClientRequest(target: "/x"))
        } throws: { error in
            "\(error)".contains("HTTP/2")
        }
        await client.close()
    }
}
