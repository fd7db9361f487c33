import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// A request with its whole body, as handlers see it.
public struct HTTPServerRequest {
    public var method: HTTPMethod
    public var uri: String
    public var headers: HTTPHeaders
    public var body: ByteBuffer
    public var remoteAddress: SocketAddress?
    /// HTTP/1.1 or HTTP/2 (gRPC needs the latter).
    public var version: HTTPVersion = .http1_1

    public init(method: HTTPMethod, uri: String, headers: HTTPHeaders, body: ByteBuffer, remoteAddress: SocketAddress? = nil,
                version: HTTPVersion = .http1_1) {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
        self.remoteAddress = remoteAddress
        self.version = version
    }

    /// The path without the query string.
    public var path: Substring {
        if let q = uri.firstIndex(of: "?") { return uri[..<q] }
        return uri[...]
    }
}

public struct HTTPServerResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer?
    /// Sent after the body (HTTP/2 only: gRPC puts its status here). HTTP/1.1
    /// connections never send trailers.
    public var trailers: HTTPHeaders?

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = HTTPHeaders(), body: ByteBuffer? = nil, trailers: HTTPHeaders? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.trailers = trailers
    }

    public init(status: HTTPResponseStatus, contentType: String, body: [UInt8]) {
        self.status = status
        headers = HTTPHeaders([("Content-Type", contentType)])
        self.body = ByteBuffer(bytes: body)
    }

    public static func text(_ status: HTTPResponseStatus, _ text: String) -> HTTPServerResponse {
        HTTPServerResponse(status: status, contentType: "text/plain; charset=utf-8", body: Array(text.utf8))
    }
}

/// Answers requests. Called on the connection's event loop with the complete
/// request; the answer goes back through `respond`, which may be called later from
/// any thread (it hops back to the loop).
public protocol HTTPRequestResponder: Sendable {
    func respond(to request: HTTPServerRequest, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPServerResponse>
    /// The answer the server gives on its own, before a request reaches `respond`
    /// (body over the limit, read timeout), in the form the protocol expects.
    func errorResponse(_ status: HTTPResponseStatus, message: String, requestHeaders: HTTPHeaders) -> HTTPServerResponse
}

extension HTTPRequestResponder {
    public func errorResponse(_ status: HTTPResponseStatus, message: String, requestHeaders: HTTPHeaders) -> HTTPServerResponse {
        .text(status, message + "\n")
    }
}

public struct HTTPServerLimits: Sendable {
    /// Bodies larger than this get 413 without being read to the end.
    public var maxBodyBytes: Int = 20 << 20
    /// A request's headers must be complete this long after its first byte (after
    /// the connection opened, for its first request); else 408 and close.
    public var headerTimeout: TimeAmount = .seconds(10)
    /// The whole request, body included, must arrive within this of its start —
    /// a total, not a time between bytes; else 408 and close.
    public var readTimeout: TimeAmount = .seconds(30)
    /// A kept-alive connection idle between requests is closed after this.
    public var idleTimeout: TimeAmount = .seconds(120)
    /// Connections this listener holds at once; at the limit the oldest quiet (idle
    /// or silent) connection is closed for a new one, and with none, the new one is.
    /// `nil`: a share of what the process's descriptors allow (ConnectionTable),
    /// at most `ConnectionLimits.defaultMaxConnections`.
    public var maxConnections: Int?

    /// HTTP/2: streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    public var maxConcurrentStreams: Int = 100
    /// HTTP/2: the largest header list a request may carry (SETTINGS_MAX_HEADER_LIST_SIZE);
    /// a larger one gets 431.
    public var maxHeaderListBytes: Int = 64 << 10

    /// HTTP/2: request bodies one connection may hold (received, not yet answered)
    /// before its clients' stream windows stop being handed back; never below
    /// `maxBodyBytes`.
    public var connectionBodyBufferBytes: Int = 8 << 20

    public init(maxBodyBytes: Int = 20 << 20, headerTimeout: TimeAmount = .seconds(10), readTimeout: TimeAmount = .seconds(30),
                idleTimeout: TimeAmount = .seconds(120), maxConcurrentStreams: Int = 100, maxHeaderListBytes: Int = 64 << 10,
                maxConnections: Int? = nil) {
        self.maxBodyBytes = maxBodyBytes
        self.headerTimeout = headerTimeout
        self.maxConnections = maxConnections
        self.readTimeout = readTimeout
        self.idleTimeout = idleTimeout
        self.maxConcurrentStreams = maxConcurrentStreams
        self.maxHeaderListBytes = maxHeaderListBytes
    }
}

/// An HTTP/1.1 and HTTP/2 server on the shared event loops.
public final class HTTPServer: Sendable {
    public let channel: any Channel

    public var localAddress: SocketAddress? { channel.localAddress }

    private init(channel: any Channel) { self.channel = channel }

    /// Listens on `address`. `name` labels the listener's connection metrics and
    /// warnings (`otlp:http`, `telemetry`, `health_check`).
    public static func start(
        at address: HostPort, name: String, limits: HTTPServerLimits, responder: any HTTPRequestResponder,
        group: any EventLoopGroup = SluiceEventLoops.group, tls: TLSServerContext? = nil,
        connections: ConnectionTable = .shared
    ) async throws -> HTTPServer {
        let serverLogger = Logger(label: "sluice.http")
        let listener = ServerListener(name: name, maxConnections: limits.maxConnections, table: connections, logger: serverLogger)
        let bootstrap = ServerBootstrap(group: group)
            // Connections a flood queues faster than they are accepted wait here; a
            // full backlog drops SYNs, which clients resend only after a second.
            // The kernel caps it at net.core.somaxconn (4096 since Linux 5.4), as Go asks.
            .serverChannelOption(.backlog, value: HTTPServer.listenBacklog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(AcceptGuard(listener: listener)) }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelOption(.allocator, value: .blockCache)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Admitted to the connection table as it was accepted (AcceptGuard).
                    // Below TLS: a stalled handshake is a request whose headers never came.
                    let guardian = ConnectionGuard(limits: limits, listener: listener, tableID: ConnectionTable.ConnectionID(channel))
                    try channel.pipeline.syncOperations.addHandler(guardian)
                    // TLS next: every handler after it sees plaintext.
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(TLSServerHandler(context: tls, remoteAddress: channel.remoteAddress))
                    }
                    // HTTP/1.1 or HTTP/2 (prior knowledge, or ALPN h2 under TLS), by the first bytes.
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPProtocolSelector(limits: limits, responder: responder, guardian: guardian, logger: serverLogger))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: address.host, port: address.port).get()
        } catch {
            listener.close()
            throw error
        }
        // Its share of the connection budget goes back to the other listeners.
        channel.closeFuture.whenComplete { _ in listener.close() }
        return HTTPServer(channel: channel)
    }

    public func close() async {
        try? await channel.close()
    }

    static let listenBacklog: Int32 = 4096
}


extension HTTPServer {
    /// A 408 as HTTP/1.1 bytes, for a request whose headers never completed: no
    /// request head exists for NIO's encoder to answer.
    static func rawTimeoutResponse(_ message: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        let body = message + "\n"
        return allocator.buffer(string: "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                    + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
    }

    /// Writes that 408 beneath the HTTP/1.1 encoder of `pipeline` and closes.
    static func writeRawTimeout(_ message: String, from pipeline: ChannelPipeline, fallback: ChannelHandlerContext) {
        guard let encoder = try? pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) else {
            fallback.close(promise: nil)
            return
        }
        let channel = encoder.channel
        encoder.writeAndFlush(NIOAny(rawTimeoutResponse(message, allocator: channel.allocator))).whenComplete { _ in channel.close(promise: nil) }
    }
}
