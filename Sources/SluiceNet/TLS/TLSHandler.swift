// TLS as a NIO handler for either end of a connection: plaintext `ByteBuffer`s above
// it, TLS records below, one `TLSSession` over memory BIOs inside. What differs
// between the ends (who is told of a finished or failed handshake, and how) is the
// `Role`: `TLSClientRole` (TLSHandler+Client.swift) for the HTTP client,
// `TLSServerRole` (TLSHandler+Server.swift) for receivers.
import COpenSSL
import CSluiceShims
import NIOCore

/// Fired down the pipeline when the handshake has finished.
public struct TLSHandshakeCompleted: Sendable {
    public var negotiatedProtocol: String?
}

/// How a connection's TLS ended before it should have.
enum TLSHandlerFailure {
    /// OpenSSL refused the handshake.
    case handshake(OpenSSLFailure)
    /// Reading or writing on the established session failed.
    case session(OpenSSLFailure)
    /// The connection closed before the handshake finished: by the peer, or by a
    /// handler above (a timeout). `receivedBytes` counts what the peer had sent.
    case closedDuringHandshake(byPeer: Bool, receivedBytes: Int)
}

/// What one end of a connection does that the other does not. Lives in the handler,
/// on the channel's event loop.
protocol TLSHandlerRole {
    /// The handshake finished.
    mutating func handshakeCompleted(negotiatedProtocol: String?)
    /// The connection is failing or closed early. Called once, before the channel is
    /// closed, so the role may still write (raw, below TLS) to `context`. Returns the
    /// error that writes waiting for the handshake fail with.
    mutating func failed(_ failure: TLSHandlerFailure, context: ChannelHandlerContext) -> any Error
    /// Whatever waits on the handshake fails with `error` (the handler is going away).
    mutating func abandon(_ error: any Error)
}

/// TLS as a NIO handler: plaintext `ByteBuffer`s above it, TLS records below. It
/// starts the handshake as soon as the channel is active, holds writes until the
/// handshake is done, sends close_notify on close, and tells its `Role` how the
/// handshake went.
final class TLSHandler<Role: TLSHandlerRole>: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State { case idle, handshaking, open, closed }

    private let session: TLSSession
    private var role: Role
    private var state = State.idle
    /// What the peer sent before the handshake finished: a connection that closes
    /// having sent nothing is a port probe, not a failed client.
    private var handshakeBytes = 0
    /// Plaintext written before the handshake finished, or while OpenSSL waits for
    /// the peer (a renegotiation), in order.
    private var pendingWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var flushPending = false
    private static var readChunk: Int { 16 * 1024 }

    init(session: TLSSession, role: Role) {
        self.session = session
        self.role = role
    }

    /// The ALPN protocol agreed in the handshake, if any.
    var negotiatedProtocol: String? { session.negotiatedProtocol }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startHandshake(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failPending(ChannelError.ioOnClosedChannel)
    }

    func channelActive(context: ChannelHandlerContext) {
        startHandshake(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if state != .closed { closedEarly(byPeer: true, context: context) }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        guard state == .handshaking || state == .open else { return }
        if state == .handshaking { handshakeBytes += bytes.readableBytes }
        session.receive(&bytes)
        if state == .handshaking { continueHandshake(context: context) }
        if state == .open { readPlaintext(context: context) }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let plaintext = unwrapOutboundIn(data)
        switch state {
        case .idle, .handshaking:
            pendingWrites.append((plaintext, promise))
        case .open:
            // Order matters: behind a queued write, a new one waits too.
            if pendingWrites.isEmpty { _ = encrypt(plaintext, promise: promise, context: context) } else { pendingWrites.append((plaintext, promise)) }
        case .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    func flush(context: ChannelHandlerContext) {
        if state == .open { context.flush() }
        if state != .open || !pendingWrites.isEmpty { flushPending = true }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode != .input, state == .open else {
            if mode != .input, state != .closed { closedEarly(byPeer: false, context: context) }
            context.close(mode: mode, promise: promise)
            return
        }
        state = .closed
        failPending(ChannelError.ioOnClosedChannel)
        // close_notify, then close without waiting for the peer's: what clients and
        // servers usually do, and all HTTP needs since every message is delimited
        // (RFC 8446 section 6.1 lets either side close without waiting). Nor is
        // the write awaited: a close often comes from a timeout, when the peer has
        // stopped reading and the write might never finish.
        sendCloseNotify(context: context)
        context.close(mode: mode, promise: promise)
    }

    private func sendCloseNotify(context: ChannelHandlerContext) {
        ERR_clear_error()
        _ = SSL_shutdown(session.ssl)
        ERR_clear_error()
        sendOutput(context: context)
    }

    /// The connection closes without a TLS goodbye: before the handshake finished
    /// (the role hears of it), or by the peer (`byPeer`) without close_notify.
    private func closedEarly(byPeer: Bool, context: ChannelHandlerContext) {
        let wasHandshaking = state == .handshaking || state == .idle
        state = .closed
        failPending(wasHandshaking
            ? role.failed(.closedDuringHandshake(byPeer: byPeer, receivedBytes: handshakeBytes), context: context)
            : ChannelError.ioOnClosedChannel)
    }

    // MARK: Handshake

    private func startHandshake(context: ChannelHandlerContext) {
        guard state == .idle else { return }
        state = .handshaking
        continueHandshake(context: context)
    }

    private func continueHandshake(context: ChannelHandlerContext) {
        ERR_clear_error()
        let result = SSL_do_handshake(session.ssl)
        if result == 1 {
            sendOutput(context: context)
            state = .open
            let negotiated = session.negotiatedProtocol
            role.handshakeCompleted(negotiatedProtocol: negotiated)
            context.fireUserInboundEventTriggered(TLSHandshakeCompleted(negotiatedProtocol: negotiated))
            writePending(context: context)
            return
        }
        let code = SSL_get_error(session.ssl, result)
        if code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE {
            sendOutput(context: context)
            return
        }
        fail(.handshake(session.failure(code)), context: context)
    }

    // MARK: Data

    private func readPlaintext(context: ChannelHandlerContext) {
        while state == .open {
            var chunk = context.channel.allocator.buffer(capacity: Self.readChunk)
            var result: Int32 = 0
            ERR_clear_error()
            chunk.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.readChunk) { bytes in
                result = SSL_read(session.ssl, bytes.baseAddress, Int32(bytes.count))
                return Int(max(0, result))
            }
            if result > 0 {
                context.fireChannelRead(wrapInboundOut(chunk))
                continue
            }
            let code = SSL_get_error(session.ssl, result)
            switch code {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                // Session tickets and key updates may need an answer; a write that
                // waited for the peer may go now.
                sendOutput(context: context)
                writePending(context: context)
                return
            case SSL_ERROR_ZERO_RETURN:
                // The peer sent close_notify: nothing more will come. Answer with
                // ours before closing (RFC 8446 section 6.1: each party sends one
                // before it closes its write side).
                state = .closed
                failPending(ChannelError.ioOnClosedChannel)
                sendCloseNotify(context: context)
                context.close(promise: nil)
                return
            default:
                fail(.session(session.failure(code)), context: context)
                return
            }
        }
    }

    /// Encrypts one write. Returns false when OpenSSL must hear from the peer first
    /// (the write is then queued) or the session failed (the promise is failed).
    private func encrypt(_ plaintext: ByteBuffer, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) -> Bool {
        guard plaintext.readableBytes > 0 else {
            promise?.succeed()
            return true
        }
        ERR_clear_error()
        let result = plaintext.withUnsafeReadableBytes { bytes in
            SSL_write(session.ssl, bytes.baseAddress, Int32(bytes.count))
        }
        if result > 0 {
            // Without partial writes, a positive result means the whole buffer went in.
            if let records = session.takeOutput(allocator: context.channel.allocator) {
                context.write(wrapOutboundOut(records), promise: promise)
            } else {
                promise?.succeed()
            }
            return true
        }
        let code = SSL_get_error(session.ssl, result)
        if code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE {
            sendOutput(context: context)
            pendingWrites.insert((plaintext, promise), at: 0)
            return false
        }
        let error = fail(.session(session.failure(code)), context: context)
        promise?.fail(error ?? ChannelError.ioOnClosedChannel)
        return false
    }

    private func writePending(context: ChannelHandlerContext) {
        while state == .open, !pendingWrites.isEmpty {
            let (plaintext, promise) = pendingWrites.removeFirst()
            if !encrypt(plaintext, promise: promise, context: context) { return }
        }
        if state == .open, flushPending {
            flushPending = false
            context.flush()
        }
    }

    /// Sends what OpenSSL produced on its own (handshake messages, alerts, close_notify).
    private func sendOutput(context: ChannelHandlerContext) {
        guard let records = session.takeOutput(allocator: context.channel.allocator) else { return }
        context.writeAndFlush(wrapOutboundOut(records), promise: nil)
    }

    /// Ends the connection after OpenSSL failed; returns the error it failed with
    /// (nil when it had already ended).
    @discardableResult
    private func fail(_ failure: TLSHandlerFailure, context: ChannelHandlerContext) -> (any Error)? {
        let wasOpen = state == .open
        guard state != .closed else { return nil }
        // Whatever alert OpenSSL produced tells the peer why.
        sendOutput(context: context)
        state = .closed
        let error = role.failed(failure, context: context)
        failPending(error)
        if wasOpen { context.fireErrorCaught(error) }
        context.close(promise: nil)
        return error
    }

    private func failPending(_ error: any Error) {
        role.abandon(error)
        let writes = pendingWrites
        pendingWrites.removeAll()
        for (_, promise) in writes { promise?.fail(error) }
    }
}

@available(*, unavailable)
extension TLSHandler: Sendable {}
