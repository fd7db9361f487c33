import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Where an exporter sends: scheme, host, port and base path, from its `endpoint`.
public struct HTTPEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var scheme: String
    public var host: String
    public var port: Int
    /// The path without a trailing slash ("" for none).
    public var path: String

    /// `nil` for anything but an http(s) URL with a host.
    public init?(_ text: String) {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = url.host, !host.isEmpty else { return nil }
        self.scheme = scheme
        self.host = host
        port = url.port ?? (scheme == "https" ? 443 : 80)
        var path = url.path
        while path.hasSuffix("/") { path.removeLast() }
        self.path = path
    }

    public var description: String {
        let defaultPort = scheme == "https" ? 443 : 80
        let hostText = host.contains(":") ? "[\(host)]" : host
        return "\(scheme)://\(hostText)\(port == defaultPort ? "" : ":\(port)")\(path)"
    }

    /// The Host header value.
    public var authority: String {
        let hostText = host.contains(":") ? "[\(host)]" : host
        return port == (scheme == "https" ? 443 : 80) ? hostText : "\(hostText):\(port)"
    }
}

public struct HTTPClientRequest: Sendable {
    public var method: HTTPMethod
    /// Path and query, starting with `/`.
    public var target: String
    public var headers: HTTPHeaders
    public var body: ByteBuffer?

    public init(method: HTTPMethod = .POST, target: String, headers: HTTPHeaders = HTTPHeaders(), body: ByteBuffer? = nil) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }
}

public struct HTTPClientResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer

    public var bodyText: String { String(buffer: body) }

    /// `Retry-After` as seconds or an HTTP date, if the server sent one.
    public var retryAfter: Duration? {
        guard let value = headers.first(name: "retry-after")?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let seconds = Int(value), seconds >= 0 { return .seconds(seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        if let date = formatter.date(from: value) { return .seconds(max(0, Int(date.timeIntervalSinceNow.rounded(.up)))) }
        return nil
    }
}

public enum HTTPClientError: Error, CustomStringConvertible, Equatable {
    case connect(String)
    case timeout(Duration)
    case connectionClosed
    case responseTooLarge(Int)
    case unsupportedScheme(String)

    public var description: String {
        switch self {
        case .connect(let reason): "cannot connect: \(reason)"
        case .timeout(let limit): "no response within \(limit)"
        case .connectionClosed: "the connection closed before the response was complete"
        case .responseTooLarge(let limit): "response larger than \(limit) bytes"
        case .unsupportedScheme(let scheme): "\(scheme) endpoints need TLS, which this build's HTTP client does not speak yet"
        }
    }
}

/// An HTTP/1.1 client for one endpoint with a pool of keep-alive connections.
/// Every exporter sends through one of these.
public final class HTTPClient: Sendable {
    public struct Settings: Sendable {
        public var maxConnections = 4
        public var idleTimeout: TimeAmount = .seconds(90)
        public var requestTimeout: Duration = .seconds(30)
        public var maxResponseBytes = 4 << 20
        public init() {}
    }

    public let endpoint: HTTPEndpoint
    public let settings: Settings
    private let group: any EventLoopGroup
    private let pool = Mutex<Pool>(Pool())

    private struct Pool {
        var idle: [(channel: any Channel, since: NIODeadline)] = []
        var open = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
        var closed = false
    }

    public init(endpoint: HTTPEndpoint, settings: Settings = Settings(), group: any EventLoopGroup = SluiceEventLoops.group) {
        self.endpoint = endpoint
        self.settings = settings
        self.group = group
    }

    public func send(_ request: HTTPClientRequest) async throws -> HTTPClientResponse {
        guard endpoint.scheme == "http" else { throw HTTPClientError.unsupportedScheme(endpoint.scheme) }
        let channel = try await checkout()
        var request = request
        request.headers.replaceOrAdd(name: "Host", value: endpoint.authority)
        request.headers.replaceOrAdd(name: "Content-Length", value: String(request.body?.readableBytes ?? 0))
        if !request.headers.contains(name: "User-Agent") { request.headers.add(name: "User-Agent", value: "sluice") }
        let promise = channel.eventLoop.makePromise(of: HTTPClientResponse.self)
        let timeout = settings.requestTimeout
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)) {
            promise.fail(HTTPClientError.timeout(timeout))
            channel.close(promise: nil)
        }
        channel.writeAndFlush(PendingRequest(request: request, promise: promise, maxResponseBytes: settings.maxResponseBytes), promise: nil)
        do {
            let response = try await promise.futureResult.get()
            timer.cancel()
            let reusable = channel.isActive && response.headers.first(name: "connection")?.lowercased() != "close"
            checkin(channel, reusable: reusable)
            return response
        } catch {
            timer.cancel()
            channel.close(promise: nil)
            checkin(channel, reusable: false)
            throw error
        }
    }

    public func close() async {
        let (channels, waiters) = pool.withLock { p -> ([any Channel], [CheckedContinuation<Void, Never>]) in
            p.closed = true
            let channels = p.idle.map(\.channel)
            p.idle.removeAll()
            let waiters = p.waiters
            p.waiters.removeAll()
            return (channels, waiters)
        }
        for waiter in waiters { waiter.resume() }
        for channel in channels { try? await channel.close() }
    }

    private func checkout() async throws -> any Channel {
        while true {
            enum Step { case reuse(any Channel), connect, wait }
            let step = pool.withLock { p -> Step in
                let now = NIODeadline.now()
                while let (channel, since) = p.idle.popLast() {
                    if channel.isActive, now - since < settings.idleTimeout { return .reuse(channel) }
                    channel.close(promise: nil)
                    p.open -= 1
                }
                if p.open < settings.maxConnections || p.closed {
                    p.open += 1
                    return .connect
                }
                return .wait
            }
            switch step {
            case .reuse(let channel):
                return channel
            case .connect:
                do {
                    return try await connect()
                } catch {
                    pool.withLock { $0.open -= 1 }
                    wakeOne()
                    throw HTTPClientError.connect("\(endpoint.authority): \(error)")
                }
            case .wait:
                await withCheckedContinuation { continuation in
                    let resumeNow = pool.withLock { p -> Bool in
                        if p.open < settings.maxConnections || !p.idle.isEmpty || p.closed { return true }
                        p.waiters.append(continuation)
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            }
        }
    }

    private func checkin(_ channel: any Channel, reusable: Bool) {
        pool.withLock { p in
            if reusable, !p.closed {
                p.idle.append((channel, .now()))
            } else {
                p.open -= 1
                if reusable { channel.close(promise: nil) }
            }
        }
        wakeOne()
    }

    private func wakeOne() {
        let waiter = pool.withLock { p in p.waiters.isEmpty ? nil : p.waiters.removeFirst() }
        waiter?.resume()
    }

    private func connect() async throws -> any Channel {
        try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(10))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(HTTPClientConnectionHandler())
                }
            }
            .connect(host: endpoint.host, port: endpoint.port).get()
    }
}

struct PendingRequest {
    let request: HTTPClientRequest
    let promise: EventLoopPromise<HTTPClientResponse>
    let maxResponseBytes: Int
}

/// One request at a time on one connection: writes it, collects the answer.
final class HTTPClientConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = PendingRequest
    typealias OutboundOut = HTTPClientRequestPart

    private var pending: PendingRequest?
    private var head: HTTPResponseHead?
    private var body: ByteBuffer?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        pending = request
        head = nil
        body = context.channel.allocator.buffer(capacity: 0)
        let r = request.request
        context.write(wrapOutboundOut(.head(HTTPRequestHead(version: .http1_1, method: r.method, uri: r.target, headers: r.headers))), promise: nil)
        if let payload = r.body { context.write(wrapOutboundOut(.body(.byteBuffer(payload))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            if h.status == .continue { return }
            head = h
        case .body(var chunk):
            guard let pending else { return }
            if (body?.readableBytes ?? 0) + chunk.readableBytes > pending.maxResponseBytes {
                self.pending = nil
                pending.promise.fail(HTTPClientError.responseTooLarge(pending.maxResponseBytes))
                context.close(promise: nil)
                return
            }
            body?.writeBuffer(&chunk)
        case .end:
            guard let pending, let head else { return }
            self.pending = nil
            pending.promise.succeed(HTTPClientResponse(status: head.status, headers: head.headers, body: body ?? ByteBuffer()))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let pending {
            self.pending = nil
            pending.promise.fail(HTTPClientError.connectionClosed)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let pending {
            self.pending = nil
            pending.promise.fail(error)
        }
        context.close(promise: nil)
    }
}
