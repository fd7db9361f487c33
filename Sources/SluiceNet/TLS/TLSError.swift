import COpenSSL

/// A TLS failure, with OpenSSL's own reason (and the certificate check's, when that
/// is what failed) so the message says what to fix.
public enum TLSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The configuration could not be turned into an OpenSSL context (a file that is
    /// not PEM, a key that does not match its certificate).
    case configuration(String)
    /// The handshake with `peer` failed.
    case handshakeFailed(peer: String, reason: String)
    /// The peer closed the connection before the handshake finished.
    case closedDuringHandshake(peer: String)
    /// Reading or writing on an established session failed.
    case sessionFailed(peer: String, reason: String)

    public var description: String {
        switch self {
        case .configuration(let reason): "TLS configuration: \(reason)"
        case .handshakeFailed(let peer, let reason): "TLS handshake with \(peer) failed: \(reason)"
        case .closedDuringHandshake(let peer): "\(peer) closed the connection during the TLS handshake (is it a TLS port? does it accept this TLS version and client certificate?)"
        case .sessionFailed(let peer, let reason): "TLS session with \(peer) failed: \(reason)"
        }
    }
}

enum OpenSSLErrors {
    /// Drains this thread's OpenSSL error queue into one line: reasons joined with "; ".
    /// `fallback` is used when the queue is empty.
    static func drain(fallback: String = "unknown OpenSSL error") -> String {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            if let reason = ERR_reason_error_string(code) {
                reasons.append(String(cString: reason))
            } else {
                var buffer = [CChar](repeating: 0, count: 256)
                ERR_error_string_n(code, &buffer, buffer.count)
                reasons.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
        }
        var seen = Set<String>()
        reasons = reasons.filter { seen.insert($0).inserted }
        return reasons.isEmpty ? fallback : reasons.joined(separator: "; ")
    }
}
