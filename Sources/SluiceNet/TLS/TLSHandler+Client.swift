// The client end of `TLSHandler`, for the HTTP client: the handshake's outcome goes
// to a promise (the connection is handed out only after it), and every failure is
// a `TLSError` naming the server, with OpenSSL's reason and what to fix.
import NIOCore

typealias TLSClientHandler = TLSHandler<TLSClientRole>

struct TLSClientRole: TLSHandlerRole {
    /// Names the server in errors.
    let peer: String
    var handshakePromise: EventLoopPromise<Void>?
    let onFailure: (@Sendable (TLSError) -> Void)?

    mutating func handshakeCompleted(negotiatedProtocol: String?) {
        handshakePromise?.succeed()
        handshakePromise = nil
    }

    mutating func failed(_ failure: TLSHandlerFailure, context: ChannelHandlerContext) -> any Error {
        let error: TLSError
        switch failure {
        case .handshake(let openSSL):
            error = .handshakeFailed(peer: peer, reason: openSSL.clientDescription)
        case .session(let openSSL):
            error = .sessionFailed(peer: peer, reason: openSSL.clientDescription)
        case .closedDuringHandshake(byPeer: true, _):
            return TLSError.closedDuringHandshake(peer: peer)
        case .closedDuringHandshake(byPeer: false, _):
            // Closed from above (the connect timeout, which says so itself).
            return ChannelError.ioOnClosedChannel
        }
        onFailure?(error)
        return error
    }

    mutating func abandon(_ error: any Error) {
        handshakePromise?.fail(error)
        handshakePromise = nil
    }
}

extension TLSHandler where Role == TLSClientRole {
    /// `host` is checked against the certificate and sent as SNI; `peer` names the
    /// server in errors. The promise completes when the handshake does; `onFailure`
    /// hears of any failure, also when nothing is being read or written.
    convenience init(context: TLSContext, host: String, peer: String, handshakePromise: EventLoopPromise<Void>?,
                     onFailure: (@Sendable (TLSError) -> Void)? = nil) throws(TLSError) {
        let session = try TLSSession.client(context: context, host: context.configuration.serverName ?? host)
        self.init(session: session, role: TLSClientRole(peer: peer, handshakePromise: handshakePromise, onFailure: onFailure))
    }
}
