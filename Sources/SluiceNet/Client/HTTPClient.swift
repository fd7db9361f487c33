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
    /// `user:password@` of the URL, sent as Basic authentication unless a request
    /// carries its own Authorization; never part of the description.
    public var credentials: URLCredentials?

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
        credentials = URLComponents(string: text).flatMap(URLCredentials.init)
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
    /// Fields after the body (HTTP/2; gRPC's status is there).
    public var trailers: HTTPHeaders

    public init(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer, trailers: HTTPHeaders = HTTPHeaders()) {
        self.status = status
        self.headers = headers
        self.body = body
        self.trailers = trailers
    }

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
    /// The client's TLS or proxy settings cannot be used (a bad PEM file, an unusable HTTPS_PROXY).
    case configuration(String)
    /// HTTP/2: the server ended the request's stream without an answer.
    case streamReset(String)

    public var description: String {
        switch self {
        case .connect(let reason): "cannot connect: \(reason)"
        case .timeout(let limit): "no response within \(limit)"
        case .connectionClosed: "the connection closed before the response was complete"
        case .responseTooLarge(let limit): "response larger than \(limit) bytes"
        case .unsupportedScheme(let scheme): "\(scheme) endpoints are not supported; use http:// or https://"
        case .configuration(let reason): "cannot send: \(reason)"
        case .streamReset(let code): "the server reset the HTTP/2 stream (\(code))"
        }
    }
}

/// An HTTP client for one endpoint: a pool of keep-alive HTTP/1.1 connections, or
/// shared HTTP/2 connections that carry many requests at once (when the server picks
/// h2 by ALPN, or always for gRPC); TLS through OpenSSL for https endpoints, and
/// HTTP proxies (CONNECT tunnels for https, absolute-form targets for http). Every
/// exporter sends through one of these.
public final class HTTPClient: Sendable {
    /// When to speak HTTP/2.
    public enum HTTP2Use: Sendable {
        /// HTTP/1.1 only.
        case never
        /// https: offer h2 and http/1.1 by ALPN and speak what the server picks; http: HTTP/1.1.
        case whenOffered
        /// gRPC: h2 by ALPN on https (a server that does not pick it is an error),
        /// HTTP/2 with prior knowledge on http.
        case required
    }

    public struct Settings: Sendable {
        public var http2 = HTTP2Use.whenOffered
        /// The Host (HTTP/2 :authority) to send instead of the endpoint's (gRPC's `authority`).
        public var authorityOverride: String?
        public var maxConnections = 4
        public var idleTimeout: TimeAmount = .seconds(90)
        public var requestTimeout: Duration = .seconds(30)
        public var maxResponseBytes = 4 << 20
        /// How https endpoints are spoken to; `nil` is the defaults (system CAs, TLS 1.2+).
        public var tls: TLSClientConfiguration?
        /// The proxy to go through; by default the process's HTTPS_PROXY / HTTP_PROXY /
        /// NO_PROXY, as the Collector does. `nil` connects directly.
        public var proxy: ProxySettings? = ProxySettings.environment()
        /// How long the TCP connect, and then the proxy's CONNECT answer and the TLS
        /// handshake, may each take.
        public var connectTimeout: TimeAmount = .seconds(10)
        public init() {}
    }

    public let endpoint: HTTPEndpoint
    public let settings: Settings
    private let group: any EventLoopGroup
    private let pool = Mutex<Pool>(Pool())
    /// The proxy for this endpoint, or why the configured one cannot be used.
    private let route: Result<ProxyServer?, HTTPClientError>
    /// For https endpoints: the OpenSSL context, or why it could not be built.
    private let tlsContext: Result<TLSContextSource, HTTPClientError>?

    /// What the caller should log once (insecure_skip_verify, an unusable proxy variable).
    public var warnings: [String] {
        var warnings: [String] = []
        if endpoint.scheme == "https" { warnings += (settings.tls ?? TLSClientConfiguration()).warnings }
        if case .failure(let error) = route { warnings.append(error.description) }
        if case .failure(let error)? = tlsContext { warnings.append(error.description) }
        return warnings
    }

    private struct Pool {
        var idle: [(connection: Connection, since: NIODeadline)] = []
        /// HTTP/2 connections: never checked out alone, shared by every request.
        var multiplexed: [Connection] = []
        /// Connections being set up; while one is and it will likely be HTTP/2,
        /// others wait to share it instead of opening their own.
        var connecting = 0
        var lastWasMultiplexed = false
        var open = 0

        /// A connection is being set up that will likely be HTTP/2: wait to share it.
        func awaitsSharedSetUp(http2: HTTP2Use) -> Bool {
            connecting > 0 && (http2 == .required || lastWasMultiplexed) && !closed
        }
        var waiters: [CheckedContinuation<Void, Never>] = []
        var closed = false
    }

    public init(endpoint: HTTPEndpoint, settings: Settings = Settings(), group: any EventLoopGroup = SluiceEventLoops.group) {
        self.endpoint = endpoint
        self.settings = settings
        self.group = group
        do {
            route = .success(try settings.proxy?.server(for: endpoint))
        } catch {
            route = .failure(.configuration("proxy for \(endpoint.scheme)://\(endpoint.authority): \(error)"))
        }
        if endpoint.scheme == "https" {
            var tls = settings.tls ?? TLSClientConfiguration()
            if tls.alpnProtocols.isEmpty {
                switch settings.http2 {
                // Saying http/1.1 keeps ALPN servers from picking h2.
                case .never: tls.alpnProtocols = ["http/1.1"]
                case .whenOffered: tls.alpnProtocols = ["h2", "http/1.1"]
                case .required: tls.alpnProtocols = ["h2"]
                }
            }
            do {
                tlsContext = .success(try TLSContextSource(tls))
            } catch {
                tlsContext = .failure(.configuration(error.description))
            }
        } else {
            tlsContext = nil
        }
    }

    public func send(_ request: HTTPClientRequest) async throws -> HTTPClientResponse {
        guard endpoint.scheme == "http" || endpoint.scheme == "https" else { throw HTTPClientError.unsupportedScheme(endpoint.scheme) }
        let proxy = try route.get()
        if case .failure(let error)? = tlsContext { throw error }
        let connection = try await checkout()
        let channel = connection.channel
        var request = request
        if let proxy, endpoint.scheme == "http" {
            // Through a proxy, plain HTTP names the whole URL in the request line.
            request.target = "http://\(endpoint.authority)\(request.target)"
            if let authorization = proxy.authorization { request.headers.replaceOrAdd(name: "Proxy-Authorization", value: authorization) }
        }
        // HTTP/2 sends it as :authority.
        request.headers.replaceOrAdd(name: "Host", value: settings.authorityOverride ?? endpoint.authority)
        request.headers.replaceOrAdd(name: "Content-Length", value: String(request.body?.readableBytes ?? 0))
        if !request.headers.contains(name: "User-Agent") { request.headers.add(name: "User-Agent", value: "sluice") }
        if let credentials = endpoint.credentials, !request.headers.contains(name: "Authorization") {
            request.headers.add(name: "Authorization", value: credentials.basic)
        }
        let promise = channel.eventLoop.makePromise(of: HTTPClientResponse.self)
        let timeout = settings.requestTimeout
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)) {
            promise.fail(HTTPClientError.timeout(timeout))
            channel.close(promise: nil)
        }
        // A connection can die between checkout and this write (a TLS 1.3 server
        // refusing the client certificate does it just after the handshake): then
        // the write fails, and the request with the reason the session ended.
        let state = connection.state
        channel.writeAndFlush(PendingRequest(request: request, promise: promise, maxResponseBytes: settings.maxResponseBytes)).whenFailure { _ in
            promise.fail(state.error ?? HTTPClientError.connectionClosed)
        }
        do {
            let response = try await promise.futureResult.get()
            timer.cancel()
            let reusable = channel.isActive && !state.isDraining && response.headers.first(name: "connection")?.lowercased() != "close"
            checkin(connection, reusable: reusable)
            return response
        } catch {
            timer.cancel()
            // One failed stream does not end an HTTP/2 connection; a dead one is dropped.
            if !connection.multiplexed || !channel.isActive || state.isDraining {
                channel.close(promise: nil)
                checkin(connection, reusable: false)
            }
            if let reason = state.error, (error as? HTTPClientError) == .connectionClosed || error is ChannelError { throw reason }
            throw error
        }
    }

    public func close() async {
        let (channels, waiters) = pool.withLock { p -> ([any Channel], [CheckedContinuation<Void, Never>]) in
            p.closed = true
            let channels = p.idle.map(\.connection.channel) + p.multiplexed.map(\.channel)
            p.idle.removeAll()
            p.multiplexed.removeAll()
            let waiters = p.waiters
            p.waiters.removeAll()
            return (channels, waiters)
        }
        for waiter in waiters { waiter.resume() }
        for channel in channels { try? await channel.close() }
    }

    private func checkout() async throws -> Connection {
        while true {
            enum Step { case reuse(Connection), connect, wait }
            let step = pool.withLock { p -> Step in
                let now = NIODeadline.now()
                p.multiplexed.removeAll { connection in
                    guard !connection.channel.isActive || connection.state.isDraining else { return false }
                    p.open -= 1
                    return true
                }
                if let shared = p.multiplexed.first { return .reuse(shared) }
                if p.awaitsSharedSetUp(http2: settings.http2) { return .wait }
                while let (connection, since) = p.idle.popLast() {
                    if connection.channel.isActive, now - since < settings.idleTimeout { return .reuse(connection) }
                    connection.channel.close(promise: nil)
                    p.open -= 1
                }
                if p.open < settings.maxConnections || p.closed {
                    p.open += 1
                    p.connecting += 1
                    return .connect
                }
                return .wait
            }
            switch step {
            case .reuse(let connection):
                return connection
            case .connect:
                do {
                    let connection = try await connect()
                    pool.withLock { p in
                        p.connecting -= 1
                        p.lastWasMultiplexed = connection.multiplexed
                        if connection.multiplexed { p.multiplexed.append(connection) }
                    }
                    // Requests waiting for the set-up can share an HTTP/2 connection,
                    // or try their own.
                    wakeAll()
                    return connection
                } catch {
                    pool.withLock { p in
                        p.open -= 1
                        p.connecting -= 1
                    }
                    wakeAll()
                    if let error = error as? HTTPClientError { throw error }
                    if let error = error as? TLSError { throw HTTPClientError.connect(error.description) }
                    let via = (try? route.get())?.map { " via proxy \($0)" } ?? ""
                    throw HTTPClientError.connect("\(endpoint.authority)\(via): \(error)")
                }
            case .wait:
                await withCheckedContinuation { continuation in
                    let resumeNow = pool.withLock { p -> Bool in
                        if (p.open < settings.maxConnections && !p.awaitsSharedSetUp(http2: settings.http2)) || !p.idle.isEmpty
                            || !p.multiplexed.isEmpty || p.closed { return true }
                        p.waiters.append(continuation)
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            }
        }
    }

    private func checkin(_ connection: Connection, reusable: Bool) {
        if connection.multiplexed {
            // Shared connections stay in the pool until they die or drain.
            guard !reusable else { return }
            pool.withLock { p in
                let before = p.multiplexed.count
                p.multiplexed.removeAll { $0.channel === connection.channel }
                p.open -= before - p.multiplexed.count
            }
            wakeOne()
            return
        }
        pool.withLock { p in
            if reusable, !p.closed {
                p.idle.append((connection, .now()))
            } else {
                p.open -= 1
                if reusable { connection.channel.close(promise: nil) }
            }
        }
        wakeOne()
    }

    private func wakeOne() {
        let waiter = pool.withLock { p in p.waiters.isEmpty ? nil : p.waiters.removeFirst() }
        waiter?.resume()
    }

    private func wakeAll() {
        let waiters = pool.withLock { p in
            defer { p.waiters.removeAll() }
            return p.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// A connection ready for HTTP: TCP to the endpoint or its proxy, then the
    /// CONNECT tunnel and the TLS handshake where they apply.
    private func connect() async throws -> Connection {
        let proxy = try route.get()
        let tls = try tlsContext?.get().current
        let endpoint = self.endpoint
        let state = ConnectionState()
        // h2c with prior knowledge: the server speaks first (its SETTINGS), so the
        // HTTP/2 handler must be in the pipeline before the first read.
        let h2cFromTheStart = tls == nil && settings.http2 == .required
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                guard h2cFromTheStart else { return channel.eventLoop.makeSucceededVoidFuture() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        HTTP2ClientConnectionHandler(scheme: endpoint.scheme, authority: endpoint.authority, state: state))
                }
            }
            .connectTimeout(settings.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: proxy?.host ?? endpoint.host, port: proxy?.port ?? endpoint.port).get()
        let timeout = settings.connectTimeout
        let http2Use = settings.http2
        let ready = channel.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
            let loop = channel.eventLoop
            let done = loop.makePromise(of: Void.self)
            let timer = loop.scheduleTask(in: timeout) {
                let stage = proxy != nil && tls != nil ? "the proxy's CONNECT answer and the TLS handshake" : (tls == nil ? "connection set-up" : "the TLS handshake")
                let ms = timeout.nanoseconds / 1_000_000
                let limit = ms % 1000 == 0 ? "\(ms / 1000) s" : "\(ms) ms"
                done.fail(HTTPClientError.connect("\(endpoint.authority): \(stage) did not finish within \(limit)"))
                channel.close(promise: nil)
            }
            var step = loop.makeSucceededVoidFuture()
            if let proxy, endpoint.scheme == "https" {
                step = step.flatMap {
                    let tunnel = loop.makePromise(of: Void.self)
                    let target = endpoint.host.contains(":") ? "[\(endpoint.host)]:\(endpoint.port)" : "\(endpoint.host):\(endpoint.port)"
                    do {
                        try channel.pipeline.syncOperations.addHandler(HTTPProxyConnectHandler(target: target, proxy: proxy, promise: tunnel))
                    } catch {
                        tunnel.fail(error)
                    }
                    return tunnel.futureResult
                }
            }
            if let tls {
                step = step.flatMap {
                    let handshake = loop.makePromise(of: Void.self)
                    do {
                        let peer = proxy.map { "\(endpoint.authority) (via proxy \($0))" } ?? endpoint.authority
                        try channel.pipeline.syncOperations.addHandler(
                            TLSClientHandler(context: tls, host: endpoint.host, peer: peer, handshakePromise: handshake,
                                             onFailure: { state.record($0) }))
                    } catch {
                        handshake.fail(error)
                    }
                    return handshake.futureResult
                }
            }
            let http2 = http2Use
            step.flatMapThrowing { () -> Bool in
                // The TLS handler knows the ALPN choice once the handshake is done.
                let negotiated = tls == nil ? nil : try channel.pipeline.syncOperations.handler(type: TLSClientHandler.self).negotiatedProtocol
                let useHTTP2: Bool
                switch http2 {
                case .never: useHTTP2 = false
                case .whenOffered: useHTTP2 = negotiated == "h2"
                case .required:
                    guard tls == nil || negotiated == "h2" else {
                        throw HTTPClientError.connect("\(endpoint.authority) did not agree to HTTP/2 by ALPN (it chose \(negotiated ?? "nothing")); gRPC needs HTTP/2")
                    }
                    useHTTP2 = true
                }
                if h2cFromTheStart {
                    // Added when the channel was created.
                } else if useHTTP2 {
                    try channel.pipeline.syncOperations.addHandler(
                        HTTP2ClientConnectionHandler(scheme: endpoint.scheme, authority: endpoint.authority, state: state))
                } else {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(HTTPClientConnectionHandler())
                }
                return useHTTP2
            }.map { state.setMultiplexed($0) }.cascade(to: done)
            done.futureResult.whenComplete { _ in timer.cancel() }
            return done.futureResult
        }
        do {
            try await ready.get()
        } catch {
            channel.close(promise: nil)
            throw error
        }
        return Connection(channel: channel, state: state)
    }
}

/// A pooled connection and what ended it, if something did.
private struct Connection: Sendable {
    let channel: any Channel
    let state: ConnectionState

    /// HTTP/2: shared by concurrent requests rather than checked out alone.
    var multiplexed: Bool { state.isMultiplexed }
}

/// What requests need to know about a connection beyond its channel: why its TLS
/// session failed (for a request that finds it closed), whether it is HTTP/2, and
/// whether an HTTP/2 server has told it to go away.
final class ConnectionState: Sendable {
    private let recorded = Mutex<(any Error)?>(nil)

    var error: (any Error)? { recorded.withLock { $0 } }

    func record(_ error: any Error) {
        recorded.withLock { if $0 == nil { $0 = error } }
    }

    private let draining = Atomic<Bool>(false)

    /// HTTP/2: the server sent GOAWAY (or the connection ended): no new requests.
    var isDraining: Bool { draining.load(ordering: .relaxed) }

    func markDraining() { draining.store(true, ordering: .relaxed) }

    private let multiplexed = Atomic<Bool>(false)

    /// Whether the connection speaks HTTP/2 (set once, when it is set up).
    var isMultiplexed: Bool { multiplexed.load(ordering: .relaxed) }

    func setMultiplexed(_ value: Bool) { multiplexed.store(value, ordering: .relaxed) }
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
