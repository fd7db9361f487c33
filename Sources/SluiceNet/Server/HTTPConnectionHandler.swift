// One HTTP/1.1 connection: checks each request head (HTTP1RequestCheck), collects
// the body up to the limit, hands complete requests to the responder and writes the
// answers in order. Deadlines are the ConnectionGuard's; this handler answers when
// one passes. Not Sendable: it lives on its channel's event loop.
import NIOCore
import NIOHTTP1

final class HTTPConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// After an early answer (413, 408) the rest of the body is read and dropped for
    /// at most this long or this many bytes, so a client still sending reads the
    /// answer instead of a reset; then the connection closes.
    static let lingerTime = TimeAmount.seconds(1)
    static let lingerBytes = 8 << 20

    private let limits: HTTPServerLimits
    private let responder: any HTTPRequestResponder
    private let guardian: ConnectionGuard

    private enum State {
        case idle
        case receiving(HTTPRequestHead, ByteBuffer)
        /// Answered early and closing: the rest of the body is read and dropped.
        case discarding(remaining: Int)
        case responding
    }

    private var state = State.idle

    init(limits: HTTPServerLimits, responder: any HTTPRequestResponder, guardian: ConnectionGuard) {
        self.limits = limits
        self.responder = responder
        self.guardian = guardian
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .idle = state else { return }
            guardian.headReceived()
            if case .refuse(let status, let message) = HTTP1RequestCheck.check(head, maxBodyBytes: limits.maxBodyBytes) {
                reject(context, version: head.version, headers: head.headers, status: status, message: message)
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
                    reject(context, version: head.version, headers: head.headers, status: .payloadTooLarge,
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
                guardian.requestComplete()
                let request = HTTPServerRequest(method: head.method, uri: head.uri, headers: head.headers, body: body,
                                                remoteAddress: context.channel.remoteAddress, version: head.version)
                // HTTP/1.0 keeps the connection only when the client asked (NIO's
                // isKeepAlive), and then the answer must say so.
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

    /// Answers at once and closes: when the request ends, after `lingerBytes` more,
    /// or after `lingerTime`, whichever is first.
    private func reject(_ context: ChannelHandlerContext, version: HTTPVersion, headers requestHeaders: HTTPHeaders,
                        status: HTTPResponseStatus, message: String) {
        state = .discarding(remaining: Self.lingerBytes)
        let response = responder.errorResponse(status, message: message, requestHeaders: requestHeaders)
        var headers = response.headers
        headers.replaceOrAdd(name: "Connection", value: "close")
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body?.readableBytes ?? 0))
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        if let body = response.body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            channel.eventLoop.scheduleTask(in: Self.lingerTime) { channel.close(promise: nil) }
        }
    }

    private func write(_ response: HTTPServerResponse, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
        var headers = response.headers
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body?.readableBytes ?? 0))
        if !keepAlive {
            headers.replaceOrAdd(name: "Connection", value: "close")
        } else if version.major == 1, version.minor == 0 {
            headers.replaceOrAdd(name: "Connection", value: "keep-alive")
        }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: response.status, headers: headers))), promise: nil)
        if let body = response.body, body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        state = .idle
        if keepAlive {
            guardian.answered()
        } else {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let deadline = event as? ConnectionDeadlineEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        let message = deadline.expiry == .headerTimeout
            ? "request headers not received within \(limits.headerTimeout.shortDescription)"
            : "request not received within \(limits.readTimeout.shortDescription)"
        switch state {
        case .receiving(let head, _):
            reject(context, version: head.version, headers: head.headers, status: .requestTimeout, message: message)
        case .idle where deadline.expiry.requestStarted:
            // Headers still arriving: the decoder has no head to answer, so the 408
            // goes out as bytes below the encoder.
            HTTPServer.writeRawTimeout(message, from: context.pipeline, fallback: context)
        case .idle, .discarding, .responding:
            context.close(promise: nil)
        }
    }

    /// Parser errors (NIO's HTTPServerProtocolErrorHandler answers all of them 400):
    /// headers over the decoder's limits get 431 (RFC 6585 §5), the rest 400.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let parserError = error as? HTTPParserError, case .idle = state {
            let status: HTTPResponseStatus = parserError == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
            let headers = HTTPHeaders([("Connection", "close"), ("Content-Length", "0")])
            state = .responding
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
            return
        }
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension HTTPConnectionHandler: Sendable {}

extension TimeAmount {
    /// `10s` or `300ms`, for messages.
    var shortDescription: String {
        nanoseconds % 1_000_000_000 == 0 ? "\(nanoseconds / 1_000_000_000)s" : "\(nanoseconds / 1_000_000)ms"
    }
}
