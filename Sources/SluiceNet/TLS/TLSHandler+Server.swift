// The server end of `TLSHandler`, for receivers. A client whose handshake fails
// cannot tell its user much (often just "connection reset"), so the receiver logs
// why, once per connection, with the client's address and what to change, and
// counts it in sluice_receiver_tls_handshake_failures_total{reason}.
import Logging
import NIOCore

typealias TLSServerHandler = TLSHandler<TLSServerRole>

struct TLSServerRole: TLSHandlerRole {
    let server: TLSServerContext
    /// The client's address, as the log names it.
    let peer: String

    mutating func handshakeCompleted(negotiatedProtocol: String?) {
        server.logger.trace("TLS handshake done", metadata: ["peer": "\(peer)", "alpn": "\(negotiatedProtocol ?? "none")"])
    }

    mutating func failed(_ failure: TLSHandlerFailure, context: ChannelHandlerContext) -> any Error {
        switch failure {
        case .handshake(let openSSL):
            let settings = server.settings
            let diagnosis = openSSL.serverDiagnosis(minVersion: settings.minVersion, maxVersion: settings.maxVersion)
            server.handshakeFailed(diagnosis, peer: peer, detail: openSSL.reasons)
            if openSSL.reasons.contains("http request") { answerPlainHTTP(context: context) }
            return TLSError.handshakeFailed(peer: peer, reason: diagnosis.message)
        case .session(let openSSL):
            // After the handshake: a client that vanished or sent garbage; the
            // HTTP layer above sees the error and closes.
            server.logger.debug("TLS session failed", metadata: ["peer": "\(peer)", "openssl": "\(openSSL.reasons)"])
            return TLSError.sessionFailed(peer: peer, reason: openSSL.reasons)
        case .closedDuringHandshake(let byPeer, let receivedBytes):
            // Nothing received: a port probe (a TCP health check, a scanner), not a
            // client that tried TLS.
            if receivedBytes > 0 {
                let message = byPeer
                    ? "client closed the connection during the TLS handshake"
                    : "client did not finish the TLS handshake before the connection was closed (read timeout or shutdown)"
                server.handshakeFailed(TLSHandshakeFailure(.incomplete, message), peer: peer, detail: nil)
            }
            return TLSError.closedDuringHandshake(peer: peer)
        }
    }

    mutating func abandon(_ error: any Error) {}

    /// Plain HTTP on a TLS port: answer in plain HTTP so curl and browsers show the
    /// reason instead of an empty reply (Go's net/http does the same).
    private func answerPlainHTTP(context: ChannelHandlerContext) {
        let body = "This port speaks HTTPS (TLS); the client sent plain HTTP. Use https://.\n"
        let response = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
            + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: response)), promise: nil)
    }
}

extension TLSHandler where Role == TLSServerRole {
    /// A session on the context's current certificate for a connection from `remoteAddress`.
    convenience init(context: TLSServerContext, remoteAddress: SocketAddress?) throws(TLSError) {
        let session = try TLSSession.server(context: context.current)
        self.init(session: session, role: TLSServerRole(server: context, peer: Self.describe(remoteAddress)))
    }

    /// "192.0.2.7:50312", "[2001:db8::7]:50312".
    static func describe(_ address: SocketAddress?) -> String {
        guard let address, let ip = address.ipAddress else { return address.map { "\($0)" } ?? "unknown client" }
        let port = address.port.map { ":\($0)" } ?? ""
        return ip.contains(":") ? "[\(ip)]\(port)" : "\(ip)\(port)"
    }
}
