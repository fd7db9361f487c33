// One HTTP/2 connection in a NIO pipeline: bytes from below go into the nghttp2
// session; finished requests go to the same `HTTPRequestResponder` HTTP/1.1 uses;
// answers and protocol frames go back down. Closes the connection when nghttp2
// gives up on it (protocol errors, floods, too many resets) and says why in the log.
import CNGHTTP2
import Logging
import NIOCore
import NIOHTTP1
import SluiceCore

final class HTTP2ServerConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let limits: HTTPServerLimits
    private let responder: any HTTPRequestResponder
    private let guardian: ConnectionGuard
    private let logger: Logger
    private var session: HTTP2ServerSession?
    /// Since when bytes have come that complete no frame (a frame sent slowly).
    private var partialFrameSince: NIODeadline?
    /// A read NIO asked for while the socket could not take more output: reading
    /// waits until the client reads what it was sent.
    private var readPending = false
    private var closing = false

    init(limits: HTTPServerLimits, responder: any HTTPRequestResponder, guardian: ConnectionGuard, logger: Logger) {
        self.limits = limits
        self.responder = responder
        self.guardian = guardian
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        do {
            session = try HTTP2ServerSession(limits: limits.http2Session, allocator: context.channel.allocator,
                                             remoteAddress: context.channel.remoteAddress)
            flushOutput(context: context)
        } catch {
            logger.error("cannot start an HTTP/2 session", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session, !closing else { return }
        let bytes = unwrapInboundIn(data)
        let framesBefore = session.framesReceived
        do {
            try bytes.withUnsafeReadableBytes { raw throws(HTTP2SessionError) in try session.receive(raw) }
        } catch {
            closeAbusive(context: context, reason: error.description)
            return
        }
        if session.framesReceived == framesBefore {
            if partialFrameSince == nil { partialFrameSince = .now() }
        } else {
            partialFrameSince = nil
        }
        for event in session.takeEvents() { handle(event, context: context) }
        updateDeadlines()
        flushOutput(context: context)
    }

    /// The connection's deadline phase, from its streams: a request still arriving
    /// has the read deadline (from its HEADERS), answers in progress none, a frame
    /// arriving slowly the header deadline, and otherwise the connection is idle
    /// (PINGs do not make it less so).
    private func updateDeadlines() {
        guard let session else { return }
        if let start = session.oldestIncompleteRequestStart {
            guardian.setPhase(.body(requestStart: start))
        } else if session.hasOpenStreams {
            guardian.setPhase(.answering)
        } else if let since = partialFrameSince {
            guardian.setPhase(.head(since: since, sawBytes: true))
        } else {
            guardian.setPhase(.idle(since: .now()))
        }
    }

    private func handle(_ event: HTTP2SessionEvent, context: ChannelHandlerContext) {
        switch event {
        case .reject(let streamID, let status, let message, let headers):
            session?.respond(streamID: streamID, responder.errorResponse(status, message: message, requestHeaders: headers))
        case .request(let streamID, let request):
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            responder.respond(to: request, on: context.eventLoop).hop(to: context.eventLoop).whenComplete { result in
                let (handler, context) = loopBound.value
                let response = (try? result.get()) ?? .text(.internalServerError, "internal error\n")
                handler.session?.respond(streamID: streamID, response)
                handler.flushOutput(context: context)
                handler.updateDeadlines()
            }
        }
    }

    /// Writes what nghttp2 produced, and closes the connection once the session has
    /// nothing more to do (after GOAWAY).
    private func flushOutput(context: ChannelHandlerContext) {
        guard let session else { return }
        if let output = session.drainOutput() {
            context.writeAndFlush(wrapOutboundOut(output), promise: nil)
        }
        if !session.isAlive, context.channel.isActive, !closing {
            closing = true
            // nghttp2 ended the session itself (rapid resets, a flood): say so once.
            if let code = session.goAwayErrorCode, code != NGHTTP2_NO_ERROR.rawValue {
                logAbusive(context: context, reason: "too many stream resets or control frames")
            }
            context.close(promise: nil)
        }
    }

    private func logAbusive(context: ChannelHandlerContext, reason: String) {
        guard let session else { return }
        var metadata: Logger.Metadata = ["peer": "\(context.channel.remoteAddress.map { "\($0)" } ?? "unknown")", "reason": "\(reason)"]
        if session.resetsReceived > 0 { metadata["stream_resets"] = "\(session.resetsReceived)" }
        if let code = session.goAwayErrorCode { metadata["goaway"] = "\(String(cString: nghttp2_http2_strerror(code)))" }
        logger.warning("closing an HTTP/2 connection that broke the protocol or its limits", metadata: metadata)
        Self.abusiveConnections.increment()
    }

    private func closeAbusive(context: ChannelHandlerContext, reason: String) {
        guard let session else { return }
        logAbusive(context: context, reason: reason)
        closing = true
        if let output = session.drainOutput() {
            // The GOAWAY nghttp2 queued tells the client why; close once it is out.
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(output)).whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    static let abusiveConnections = MetricsRegistry.shared.counter(
        "sluice_http2_connections_closed_abusive_total",
        "HTTP/2 connections closed for protocol violations, floods or rapid stream resets.")

    // MARK: Backpressure on output

    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable { context.read() } else { readPending = true }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, readPending {
            readPending = false
            context.read()
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Timeouts

    /// A request that did not arrive in time, a frame sent too slowly, or a
    /// connection idle too long: GOAWAY, then close.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ConnectionDeadlineEvent, let session else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        session.goAway(NGHTTP2_NO_ERROR)
        flushOutput(context: context)
        closing = true
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension HTTP2ServerConnectionHandler: Sendable {}

extension HTTPServerLimits {
    var http2Session: HTTP2SessionLimits {
        HTTP2SessionLimits(maxBodyBytes: maxBodyBytes, maxConcurrentStreams: maxConcurrentStreams, maxHeaderListBytes: maxHeaderListBytes,
                           bufferedBodyLimit: max(maxBodyBytes, connectionBodyBufferBytes))
    }
}
