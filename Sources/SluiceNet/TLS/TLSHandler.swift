import COpenSSL
import CSluiceShims
import NIOCore

/// One OpenSSL client session (`SSL`) over two memory BIOs: the handler writes the
/// bytes that arrive into `input` and sends what OpenSSL leaves in `output`, so
/// OpenSSL never touches a socket and everything stays on the channel's event loop.
final class TLSSession {
    let ssl: OpaquePointer
    private let input: OpaquePointer
    private let output: OpaquePointer

    /// `host` is what the certificate must name (and the SNI when it is a DNS name).
    init(context: TLSContext, host: String) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.pointer) else { throw .configuration("cannot create a TLS session: \(OpenSSLErrors.drain())") }
        guard let input = BIO_new(BIO_s_mem()), let output = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw .configuration("cannot create memory BIOs: \(OpenSSLErrors.drain())")
        }
        // The session owns both BIOs from here on: SSL_free frees them.
        SSL_set_bio(ssl, input, output)
        self.ssl = ssl
        self.input = input
        self.output = output
        SSL_set_connect_state(ssl)

        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let isAddress = Self.isIPAddress(bare)
        // RFC 6066: SNI carries DNS names only, never addresses.
        if !isAddress, sluice_ssl_set_tlsext_host_name(ssl, bare) != 1 {
            throw .configuration("cannot set the TLS server name '\(bare)': \(OpenSSLErrors.drain())")
        }
        if !context.configuration.insecureSkipVerify {
            if isAddress {
                guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), bare) == 1 else {
                    throw .configuration("cannot check the certificate against address '\(bare)': \(OpenSSLErrors.drain())")
                }
            } else {
                SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                guard SSL_set1_host(ssl, bare) == 1 else {
                    throw .configuration("cannot check the certificate against host '\(bare)': \(OpenSSLErrors.drain())")
                }
            }
        }
    }

    deinit { SSL_free(ssl) }

    /// Hands bytes received from the network to OpenSSL.
    func receive(_ buffer: inout ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
            // A memory BIO grows to take everything it is given.
            _ = BIO_write(input, base, Int32(bytes.count))
        }
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
    }

    /// The bytes OpenSSL wants sent, or `nil` when there are none.
    func takeOutput(allocator: ByteBufferAllocator) -> ByteBuffer? {
        let pending = Int(sluice_bio_pending(output))
        guard pending > 0 else { return nil }
        var buffer = allocator.buffer(capacity: pending)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { bytes in
            Int(max(0, BIO_read(output, bytes.baseAddress, Int32(pending))))
        }
        return buffer
    }

    /// Why the last call failed, with the certificate check's verdict when that failed.
    func describeFailure(_ code: Int32) -> String {
        var reason = OpenSSLErrors.drain(fallback: code == SSL_ERROR_SYSCALL ? "the connection failed" : "OpenSSL error \(code)")
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK, reason.contains("certificate verify failed"), let text = X509_verify_cert_error_string(verify) {
            reason += " (\(String(cString: text)))"
        }
        if let hint = Self.hints.first(where: { reason.contains($0.symptom) })?.hint { reason += "; \(hint)" }
        return reason
    }

    /// What to do about the failures users meet most.
    private static let hints: [(symptom: String, hint: String)] = [
        ("local issuer certificate", "the server's certificate is not signed by a CA in tls.ca_file (or the system's bundle when ca_file is not set)"),
        ("self-signed certificate", "the server's certificate is not signed by a CA in tls.ca_file (or the system's bundle when ca_file is not set)"),
        ("hostname mismatch", "the certificate does not name this host; fix the endpoint, or set tls.server_name_override to a name it has"),
        ("IP address mismatch", "the certificate does not name this address; use a host name it has, or tls.server_name_override"),
        ("certificate has expired", "the server's certificate (or one of its CAs) has expired"),
        ("certificate is not yet valid", "the server's certificate is not valid yet; check this machine's clock"),
        ("certificate required", "the server wants a client certificate: set tls.cert_file and tls.key_file"),
        ("protocol version", "the server offers no TLS version between tls.min_version and tls.max_version"),
        ("unsupported protocol", "the server offers no TLS version between tls.min_version and tls.max_version"),
        ("wrong version number", "the server did not answer with TLS; is this an http:// port?"),
        ("unknown ca", "the server does not trust the client certificate in tls.cert_file"),
        ("bad certificate", "the server rejected the client certificate in tls.cert_file"),
    ]

    /// The ALPN protocol the server picked, if any.
    var negotiatedProtocol: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    static func isIPAddress(_ text: String) -> Bool {
        (try? SocketAddress(ipAddress: text, port: 0)) != nil
    }
}

/// Fired down the pipeline when the handshake has finished.
public struct TLSHandshakeCompleted: Sendable {
    public var negotiatedProtocol: String?
}

/// A TLS client as a NIO handler: plaintext `ByteBuffer`s above it, TLS records
/// below. It starts the handshake as soon as the channel is active, holds writes
/// until the handshake is done, sends close_notify on close, and reports failures
/// as `TLSError` with OpenSSL's reason.
final class TLSClientHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State { case idle, handshaking, open, closed }

    private let session: TLSSession
    private let peer: String
    private var state = State.idle
    private var handshakePromise: EventLoopPromise<Void>?
    private let onFailure: (@Sendable (TLSError) -> Void)?
    /// Plaintext written before the handshake finished, or while OpenSSL waits for
    /// the peer (a renegotiation), in order.
    private var pendingWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var flushPending = false
    private static let readChunk = 16 * 1024

    /// `host` is checked against the certificate and sent as SNI; `peer` names the
    /// server in errors. The promise completes when the handshake does; `onFailure`
    /// hears of any failure, also when nothing is being read or written.
    init(context: TLSContext, host: String, peer: String, handshakePromise: EventLoopPromise<Void>?,
         onFailure: (@Sendable (TLSError) -> Void)? = nil) throws(TLSError) {
        session = try TLSSession(context: context, host: context.configuration.serverName ?? host)
        self.peer = peer
        self.handshakePromise = handshakePromise
        self.onFailure = onFailure
    }

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
        let wasHandshaking = state == .handshaking || state == .idle
        state = .closed
        if wasHandshaking { failPending(TLSError.closedDuringHandshake(peer: peer)) } else { failPending(ChannelError.ioOnClosedChannel) }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        guard state == .handshaking || state == .open else { return }
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
            if mode != .input { state = .closed; failPending(ChannelError.ioOnClosedChannel) }
            context.close(mode: mode, promise: promise)
            return
        }
        state = .closed
        failPending(ChannelError.ioOnClosedChannel)
        // close_notify, then close without waiting for the server's: the usual client
        // behaviour, and all HTTP/1.1 needs since every message is delimited. Nor is
        // the write awaited: a close often comes from a timeout, when the peer has
        // stopped reading and the write might never finish.
        ERR_clear_error()
        _ = SSL_shutdown(session.ssl)
        ERR_clear_error()
        sendOutput(context: context)
        context.close(mode: mode, promise: promise)
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
            handshakePromise?.succeed()
            handshakePromise = nil
            context.fireUserInboundEventTriggered(TLSHandshakeCompleted(negotiatedProtocol: session.negotiatedProtocol))
            writePending(context: context)
            return
        }
        let code = SSL_get_error(session.ssl, result)
        if code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE {
            sendOutput(context: context)
            return
        }
        fail(TLSError.handshakeFailed(peer: peer, reason: session.describeFailure(code)), context: context)
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
                // The server sent close_notify: nothing more will come.
                state = .closed
                failPending(ChannelError.ioOnClosedChannel)
                context.close(promise: nil)
                return
            default:
                fail(TLSError.sessionFailed(peer: peer, reason: session.describeFailure(code)), context: context)
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
        let error = TLSError.sessionFailed(peer: peer, reason: session.describeFailure(code))
        promise?.fail(error)
        fail(error, context: context)
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

    private func fail(_ error: TLSError, context: ChannelHandlerContext) {
        let wasOpen = state == .open
        guard state != .closed else { return }
        // Whatever alert OpenSSL produced tells the server why.
        sendOutput(context: context)
        state = .closed
        onFailure?(error)
        failPending(error)
        if wasOpen { context.fireErrorCaught(error) }
        context.close(promise: nil)
    }

    private func failPending(_ error: any Error) {
        handshakePromise?.fail(error)
        handshakePromise = nil
        let writes = pendingWrites
        pendingWrites.removeAll()
        for (_, promise) in writes { promise?.fail(error) }
    }
}

@available(*, unavailable)
extension TLSClientHandler: Sendable {}
