import COpenSSL
import SluiceCore

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

/// Why an OpenSSL call on a session failed, taken right after it failed (the error
/// queue is per thread, and the next call clears it). This is the one place that
/// turns OpenSSL's reasons into advice: for a client (`clientDescription`) and for
/// a receiver (`serverDiagnosis`).
struct OpenSSLFailure {
    /// OpenSSL's reasons, joined with "; ".
    var reasons: String
    /// The certificate check's result (`X509_V_OK` when it did not fail).
    var verifyResult: Int
    /// The version the peer's ClientHello asked for (its legacy_version; a client
    /// that can do 1.3 says 1.2 here). Only meaningful on the server side.
    var clientVersion: Int32

    init(ssl: OpaquePointer, code: Int32) {
        reasons = OpenSSLErrors.drain(fallback: code == SSL_ERROR_SYSCALL ? "the connection failed" : "OpenSSL error \(code)")
        verifyResult = SSL_get_verify_result(ssl)
        clientVersion = SSL_client_version(ssl)
    }

    init(reasons: String, verifyResult: Int = Int(X509_V_OK), clientVersion: Int32 = 0) {
        self.reasons = reasons
        self.verifyResult = verifyResult
        self.clientVersion = clientVersion
    }

    /// OpenSSL's own words for the certificate check's verdict, when that failed.
    private var verifyText: String? {
        guard verifyResult != X509_V_OK, let text = X509_verify_cert_error_string(verifyResult) else { return nil }
        return String(cString: text)
    }

    // MARK: Client

    /// The reasons, the certificate verdict and what to do, for a client's errors.
    var clientDescription: String {
        var text = reasons
        if let verifyText, reasons.contains("certificate verify failed") { text += " (\(verifyText))" }
        if let hint = Self.clientHints.first(where: { text.contains($0.symptom) })?.hint { text += "; \(hint)" }
        return text
    }

    /// What to do about the failures clients meet most.
    private static let clientHints: [(symptom: String, hint: String)] = [
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

    // MARK: Server

    /// What went wrong with a client's handshake, for a receiver's log and metric.
    func serverDiagnosis(minVersion: TLSVersion, maxVersion: TLSVersion?) -> TLSHandshakeFailure {
        func has(_ symptom: String) -> Bool { reasons.contains(symptom) }
        if has("peer did not return a certificate") {
            return .init(.noClientCertificate, "client presented no certificate; this receiver requires one (tls.client_ca_file is set)")
        }
        if has("certificate verify failed") {
            switch Int32(verifyResult) {
            case X509_V_ERR_CERT_HAS_EXPIRED:
                return .init(.expiredClientCertificate, "client certificate has expired")
            case X509_V_ERR_CERT_NOT_YET_VALID:
                return .init(.invalidClientCertificate, "client certificate is not valid yet (is the client's or this machine's clock wrong?)")
            case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT,
                 X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
                return .init(.untrustedClientCertificate, "client certificate is not signed by a CA in tls.client_ca_file")
            case X509_V_ERR_INVALID_PURPOSE:
                return .init(.invalidClientCertificate, "client certificate is not meant for client authentication (its extendedKeyUsage lacks clientAuth)")
            default:
                return .init(.invalidClientCertificate, "client certificate was refused: \(verifyText ?? reasons)")
            }
        }
        if has("unsupported protocol") || has("version too low") || has("wrong ssl version") {
            let offered = TLSVersionName.of(clientVersion)
            let limits = "tls.min_version is \(minVersion.rawValue)" + (maxVersion.map { ", tls.max_version \($0.rawValue)" } ?? "")
            if let offered, clientVersion < minVersion.openSSLVersion {
                return .init(.protocolVersion, "client offered only \(offered); \(limits)")
            }
            return .init(.protocolVersion, "client offered no TLS version this receiver accepts; \(limits)")
        }
        if has("http request") {
            return .init(.notTLS, "client sent plain HTTP to this TLS port; it must use https:// (or TLS for gRPC)")
        }
        if has("https proxy request") {
            return .init(.notTLS, "client sent an HTTP proxy CONNECT request to this TLS port; it is not a proxy")
        }
        if has("wrong version number") || has("unknown protocol") || has("packet length too long") || has("record layer failure") {
            return .init(.notTLS, "client did not speak TLS (its first bytes are not a TLS handshake)")
        }
        if has("alert unknown ca") || has("alert bad certificate") || has("alert certificate unknown")
            || has("alert certificate expired") || has("alert unsupported certificate") {
            return .init(.rejectedByClient, "client refused this receiver's certificate (tls.cert_file): give the client the CA that signed it, and check that the certificate names the host the client dials and has not expired")
        }
        if has("no shared cipher") {
            return .init(.other, "client and receiver share no cipher suite")
        }
        return .init(.other, "TLS handshake failed")
    }
}

/// A receiver's verdict on a failed handshake: a fixed reason (the metric's label)
/// and a sentence saying what to do.
public struct TLSHandshakeFailure: Sendable, Equatable {
    public enum Reason: String, Sendable, CaseIterable {
        case noClientCertificate = "no_client_certificate"
        case untrustedClientCertificate = "untrusted_client_certificate"
        case expiredClientCertificate = "expired_client_certificate"
        case invalidClientCertificate = "invalid_client_certificate"
        case protocolVersion = "protocol_version"
        case notTLS = "not_tls"
        case rejectedByClient = "rejected_by_client"
        /// The connection closed, or timed out, before the handshake finished.
        case incomplete
        case other
    }

    public var reason: Reason
    public var message: String

    init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }
}

/// The names users know TLS versions by, for versions Sluice does not offer as well.
enum TLSVersionName {
    static func of(_ version: Int32) -> String? {
        switch version {
        case SSL3_VERSION: "SSL 3.0"
        case TLS1_VERSION: "TLS 1.0"
        case TLS1_1_VERSION: "TLS 1.1"
        case TLS1_2_VERSION: "TLS 1.2"
        case TLS1_3_VERSION: "TLS 1.3"
        default: nil
        }
    }
}
