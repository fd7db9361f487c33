// TLS for receivers, on OpenSSL directly. `TLSServerSettings` (SluiceCore) is the
// plain description; `ServerSSLContext` owns one `SSL_CTX` built from it;
// `TLSServerContext` is what a receiver holds: the context in use now, rebuilt when
// the files are replaced, plus the log and metric of failed handshakes.
// `TLSServerHandler` (TLSHandler+Server.swift) runs one session per connection.
import COpenSSL
import CSluiceShims
import Foundation
import Logging
import SluiceCore
import Synchronization

/// One server `SSL_CTX`: certificate and key, client CAs, versions, ALPN choice.
final class ServerSSLContext: @unchecked Sendable {
    // @unchecked: the SSL_CTX is only written in `init`; afterwards it is only read
    // (by SSL_new and the handshake, from any event loop), which OpenSSL supports.
    let pointer: OpaquePointer
    /// The ALPN names in preference order, read by the select callback.
    fileprivate let alpnProtocols: [[UInt8]]

    init(_ settings: TLSServerSettings) throws(TLSError) {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_server_method()) else {
            throw .configuration("cannot create an OpenSSL context: \(OpenSSLErrors.drain())")
        }
        pointer = ctx
        alpnProtocols = settings.alpnProtocols.map { Array($0.utf8) }
        // From here on `deinit` frees the context if a check below throws.

        try SSLContextSetup.useCertificate(ctx, certFile: settings.certFile, keyFile: settings.keyFile)
        if let caFile = settings.clientCAFile {
            guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else {
                throw .configuration("tls.client_ca_file '\(caFile)' holds no usable CA certificate: \(OpenSSLErrors.drain())")
            }
            // The CertificateRequest names these CAs, so a client holding several
            // certificates picks one they signed.
            guard let names = SSL_load_client_CA_file(caFile) else {
                throw .configuration("tls.client_ca_file '\(caFile)' holds no usable CA certificate: \(OpenSSLErrors.drain())")
            }
            SSL_CTX_set_client_CA_list(ctx, names)
            // configtls: client_ca_file means tls.RequireAndVerifyClientCert.
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        }
        // Sessions resumed with a client certificate must come from this context;
        // without an id context OpenSSL refuses every resumption when verifying peers.
        let sessionContext = Array("sluice".utf8)
        guard SSL_CTX_set_session_id_context(ctx, sessionContext, UInt32(sessionContext.count)) == 1 else {
            throw .configuration("cannot set the TLS session id context: \(OpenSSLErrors.drain())")
        }
        try SSLContextSetup.limitVersions(ctx, min: settings.minVersion, max: settings.maxVersion)
        if !settings.alpnProtocols.isEmpty {
            _ = try SSLContextSetup.alpnWire(settings.alpnProtocols)  // checks the names
            SSL_CTX_set_alpn_select_cb(ctx, alpnSelectCallback, Unmanaged.passUnretained(self).toOpaque())
        }
    }

    deinit { SSL_CTX_free(pointer) }

    /// The offset and length, in the client's ALPN list (wire format), of the first
    /// of `preferences` the client offers; nil when it offers none of them or the
    /// list is malformed.
    static func selectALPN(preferences: [[UInt8]], offered: UnsafeBufferPointer<UInt8>) -> (offset: Int, length: Int)? {
        var names: [(offset: Int, length: Int)] = []
        var index = 0
        while index < offered.count {
            let length = Int(offered[index])
            guard length > 0, index + 1 + length <= offered.count else { return nil }
            names.append((index + 1, length))
            index += 1 + length
        }
        for wanted in preferences {
            if let match = names.first(where: { $0.length == wanted.count && offered[$0.offset..<$0.offset + $0.length].elementsEqual(wanted) }) {
                return match
            }
        }
        return nil
    }
}

/// OpenSSL's ALPN select callback (SSL_CTX_set_alpn_select_cb): `arg` is the
/// ServerSSLContext, which outlives its SSL_CTX. The answer points into the client's
/// list, which OpenSSL copies before it returns.
private func alpnSelectCallback(
    _ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?, _ outLength: UnsafeMutablePointer<UInt8>?,
    _ offered: UnsafePointer<UInt8>?, _ offeredLength: UInt32, _ arg: UnsafeMutableRawPointer?
) -> Int32 {
    guard let out, let outLength, let offered, let arg else { return SSL_TLSEXT_ERR_NOACK }
    let context = Unmanaged<ServerSSLContext>.fromOpaque(arg).takeUnretainedValue()
    let list = UnsafeBufferPointer(start: offered, count: Int(offeredLength))
    guard let match = ServerSSLContext.selectALPN(preferences: context.alpnProtocols, offered: list) else {
        // No common protocol: go on without ALPN rather than fail the handshake
        // (RFC 7301 lets a server do either); the client may still speak HTTP/1.1.
        return SSL_TLSEXT_ERR_NOACK
    }
    out.pointee = offered + match.offset
    outLength.pointee = UInt8(match.length)
    return SSL_TLSEXT_ERR_OK
}

/// What a receiver holds for TLS: the `SSL_CTX` new connections use, looked at
/// again when `reloadInterval` has passed, and the log and metric for handshakes
/// that fail.
///
/// Reload: a new connection that finds the interval passed hashes the files; when
/// their content changed, it builds a new context and later connections use it.
/// Connections already open keep theirs. A new file that does not load (half
/// written, a key that does not match) leaves the old context in use and is logged
/// once per change, naming the file.
public final class TLSServerContext: Sendable {
    public let settings: TLSServerSettings
    let logger: Logger
    private let failureCounters: [TLSHandshakeFailure.Reason: Counter]
    private let reload: (interval: Duration, files: [(key: String, path: String)])?
    private let state: Mutex<ReloadState>

    private struct ReloadState {
        var context: ServerSSLContext
        /// Hash of the files `context` was built from.
        var fingerprint: [UInt8]
        /// Hash of files that failed to load, logged once already.
        var refused: [UInt8]?
        var nextCheck: ContinuousClock.Instant
    }

    /// Loads every file now: a file that is missing or not PEM, or a key that does
    /// not belong to its certificate, throws with the key and file named. `logger`
    /// gets failed handshakes and reloads; `metricLabels` are added to the failure
    /// metric (a receiver's name, say).
    public init(settings: TLSServerSettings, logger: Logger, metrics: MetricsRegistry = .shared,
                metricLabels: [(String, String)] = []) throws(TLSError) {
        self.settings = settings
        self.logger = logger
        var counters: [TLSHandshakeFailure.Reason: Counter] = [:]
        for reason in TLSHandshakeFailure.Reason.allCases {
            counters[reason] = metrics.counter(
                "sluice_receiver_tls_handshake_failures_total",
                "TLS handshakes with clients that failed, by reason",
                labels: metricLabels + [("reason", reason.rawValue)])
        }
        failureCounters = counters

        var files = [("cert_file", settings.certFile), ("key_file", settings.keyFile)]
        if let clientCAFile = settings.clientCAFile { files.append(("client_ca_file", clientCAFile)) }
        if let interval = settings.reloadInterval {
            reload = (interval, files)
        } else if settings.reloadClientCAFile, let clientCAFile = settings.clientCAFile {
            reload = (.seconds(1), [("client_ca_file", clientCAFile)])
        } else {
            reload = nil
        }
        // Hashed before loading: if a file changes in between, the next check sees
        // a difference and loads again, which is harmless.
        let fingerprint = Self.fingerprint(reload?.files ?? []).digest
        let context = try ServerSSLContext(settings)
        state = Mutex(ReloadState(context: context, fingerprint: fingerprint, refused: nil,
                                  nextCheck: .now + (reload?.interval ?? .zero)))
    }

    /// The context for a new connection.
    var current: ServerSSLContext {
        guard let reload else { return state.withLock { $0.context } }
        let now = ContinuousClock.now
        let (context, due) = state.withLock { state in
            guard now >= state.nextCheck else { return (state.context, false) }
            state.nextCheck = now + reload.interval
            return (state.context, true)
        }
        guard due else { return context }
        return reloadIfChanged(reload.files) ?? context
    }

    /// Builds a new context when the files' content changed; nil when it did not or
    /// the new files do not load.
    private func reloadIfChanged(_ files: [(key: String, path: String)]) -> ServerSSLContext? {
        let (digest, unreadable) = Self.fingerprint(files)
        guard state.withLock({ $0.fingerprint != digest && $0.refused != digest }) else { return nil }
        let fresh: ServerSSLContext
        do throws(TLSError) {
            if let unreadable {
                throw .configuration("tls.\(unreadable.key) '\(unreadable.path)' cannot be read")
            }
            fresh = try ServerSSLContext(settings)
        } catch {
            state.withLock { $0.refused = digest }
            logger.error("TLS files changed but do not load; new connections keep the certificate loaded before: \(error)",
                         metadata: ["files": "\(files.map(\.path).joined(separator: " "))"])
            return nil
        }
        state.withLock { state in
            state.context = fresh
            state.fingerprint = digest
            state.refused = nil
        }
        logger.info("TLS files changed; new connections use them", metadata: ["files": "\(files.map(\.path).joined(separator: " "))"])
        return fresh
    }

    /// SHA-256 over the files' paths and contents, and the first file that could not
    /// be read (it counts as empty).
    private static func fingerprint(_ files: [(key: String, path: String)]) -> (digest: [UInt8], unreadable: (key: String, path: String)?) {
        var unreadable: (key: String, path: String)?
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard let hash = EVP_MD_CTX_new() else { return ([], nil) }
        defer { EVP_MD_CTX_free(hash) }
        _ = EVP_DigestInit_ex(hash, EVP_sha256(), nil)
        for file in files {
            let contents = FileManager.default.contents(atPath: file.path)
            if contents == nil, unreadable == nil { unreadable = file }
            // Path, then length and contents: no two different sets of files hash alike.
            let header = Array("\(file.path)\u{0}\(contents?.count ?? -1)\u{0}".utf8)
            _ = EVP_DigestUpdate(hash, header, header.count)
            contents?.withUnsafeBytes { _ = EVP_DigestUpdate(hash, $0.baseAddress, $0.count) }
        }
        _ = EVP_DigestFinal_ex(hash, &digest, &length)
        return (Array(digest.prefix(Int(length))), unreadable)
    }

    /// Logs a failed handshake and counts it. Warning: a client cannot send, and
    /// only this line says why. A handshake the client abandoned without a word is
    /// only counted and logged at debug: benchmarks, scanners and health checks
    /// that reset the connection after the handshake (SO_LINGER 0, as
    /// `openssl s_time` does) would otherwise fill the log, and clients that
    /// distrust the certificate say so with an alert (rejected_by_client).
    func handshakeFailed(_ failure: TLSHandshakeFailure, peer: String, detail: String?) {
        failureCounters[failure.reason]?.increment()
        var metadata: Logger.Metadata = ["peer": "\(peer)", "reason": "\(failure.reason.rawValue)"]
        if let detail { metadata["openssl"] = "\(detail)" }
        logger.log(level: failure.reason == .incomplete ? .debug : .warning,
                   "TLS handshake from \(peer) failed: \(failure.message)", metadata: metadata)
    }
}
