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
    /// A connection with nothing to read for this long is closed (slow or silent
    /// clients cannot hold it forever); a request cut off this way gets 408.
    public var readTimeout: TimeAmount = .seconds(30)
    /// A keep-alive connection idle between requests is closed after this.
    public var idleTimeout: TimeAmount = .seconds(120)

    /// HTTP/2: streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    public var maxConcurrentStreams: Int = 100
    /// HTTP/2: the largest header list a request may carry (SETTINGS_MAX_HEADER_LIST_SIZE);
    /// a larger one gets 431.
    public var maxHeaderListBytes: Int = 64 << 10

    /// HTTP/2: request bodies one connection may hold (received, not yet answered)
    /// before its clients' stream windows stop being handed back; never below
    /// `maxBodyBytes`.
    public var connectionBodyBufferBytes: Int = 8 << 20

    public init(maxBodyBytes: Int = 20 << 20, readTimeout: TimeAmount = .seconds(30), idleTimeout: TimeAmount = .seconds(120),
                maxConcurrentStreams: Int = 100, maxHeaderListBytes: Int = 64 << 10) {
        self.maxBodyBytes = maxBodyBytes
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

    public static func start(
        at address: HostPort, limits: HTTPServerLimits, responder: any HTTPRequestResponder,
        group: any EventLoopGroup = SluiceEventLoops.group, tls: TLSServerContext? = nil
    ) async throws -> HTTPServer {
        let serverLogger = Logger(label: "sluice.http")
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelOption(.allocator, value: .blockCache)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // TLS first: every handler after it sees plaintext.
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(TLSServerHandler(context: tls, remoteAddress: channel.remoteAddress))
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        IdleStateHandler(readTimeout: min(limits.readTimeout, limits.idleTimeout)))
                    // HTTP/1.1 or HTTP/2 (prior knowledge, or ALPN h2 under TLS), by the first bytes.
                    try channel.pipeline.syncOperations.addHandler(HTTPProtocolSelector(limits: limits, responder: responder, logger: serverLogger))
                }
            }
        let channel = try await bootstrap.bind(host: address.host, port: address.port).get()
        return HTTPServer(channel: channel)
    }

    public func close() async {
        try? await channel.close()
    }
}

/// One connection: collects each request's body up to the limit, hands complete
/// requests to the responder, writes the answers in order. Not Sendable: it lives on
/// its channel's event loop.
final class HTTPConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let limits: HTTPServerLimits
    private let responder: any HTTPRequestResponder

    private enum State {
        case idle
        case receiving(HTTPRequestHead, ByteBuffer)
        /// Answered early (413, 408): the rest of the body is read and dropped, up to
        /// a cap, so the client sees the answer instead of a reset while it sends.
        case discarding(remaining: Int)
        case responding
    }

    private var state = State.idle
    private var lastActivity = NIODeadline.now()

    init(limits: HTTPServerLimits, responder: any HTTPRequestResponder) {
        self.limits = limits
        self.responder = responder
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastActivity = .now()
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .idle = state else { return }
            if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > limits.maxBodyBytes {
                reject(context, head: head, status: .payloadTooLarge,
                       message: "request body of \(length) bytes is over max_request_body_size (\(limits.maxBodyBytes) bytes)")
                return
            }
            if head.headers.first(name: "expect")?.lowercased() == "100-continue" {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
            let initial = head.headers.first(name: "content-length").flatMap(Int.init) ?? 0
            state = .receiving(head, context.channel.allocator.buffer(capacity: min(initial, limits.maxBodyBytes)))
        case .body(var chunk):
            switch state {
            case .discarding(let remaining):
                if chunk.readableBytes >= remaining {
                    context.close(promise: nil)
                } else {
                    state = .discarding(remaining: remaining - chunk.readableBytes)
                }
            case .receiving(let head, var body):
                if body.readableBytes + chunk.readableBytes > limits.maxBodyBytes {
                    reject(context, head: head, status: .payloadTooLarge,
                           message: "request body is over max_request_body_size (\(limits.maxBodyBytes) bytes)")
                    return
                }
                state = .idle  // drop the reference so the write below does not copy
                body.writeBuffer(&chunk)
                state = .receiving(head, body)
            default:
                break
            }
        case .end:
            switch state {
            case .receiving(let head, let body):
                state = .responding
                let request = HTTPServerRequest(method: head.method, uri: head.uri, headers: head.headers, body: body,
                                                remoteAddress: context.channel.remoteAddress, version: head.version)
                let keepAlive = head.isKeepAlive
                let version = head.version
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                responder.respond(to: request, on: context.eventLoop).hop(to: context.eventLoop).whenComplete { result in
                    let (handler, context) = loopBound.value
                    let response = (try? result.get()) ?? .text(.internalServerError, "internal error\n")
                    handler.write(response, version: version, keepAlive: keepAlive, context: context)
                }
            case .discarding:
                context.close(promise: nil)
            default:
                break
            }
        }
    }

    private func reject(_ context: ChannelHandlerContext, head: HTTPRequestHead, status: HTTPResponseStatus, message: String) {
        // Answer at once. The connection closes when the request ends or after 8 MiB
        // more (whichever is first): a client cannot keep it busy, and one that is
        // still sending reads the answer instead of a broken pipe.
        state = .discarding(remaining: 8 << 20)
        let response = responder.errorResponse(status, message: message, requestHeaders: head.headers)
        var headers = response.headers
        headers.replaceOrAdd(name: "Connection", value: "close")
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body?.readableBytes ?? 0))
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if let body = response.body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    private func write(_ response: HTTPServerResponse, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
        var headers = response.headers
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body?.readableBytes ?? 0))
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: response.status, headers: headers))), promise: nil)
        if let body = response.body, body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        state = .idle
        lastActivity = .now()
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch state {
        case .receiving(let head, _):
            // A request started and stalled: tell the client, then close.
            reject(context, head: head, status: .requestTimeout, message: "request not received within the read timeout")
        case .responding:
            break  // the answer is being worked out; the client is waiting, not us
        case .idle, .discarding:
            if NIODeadline.now() - lastActivity >= min(limits.readTimeout, limits.idleTimeout) {
                context.close(promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
