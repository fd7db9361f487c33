// TLS for the HTTP client, on OpenSSL directly. `TLSClientConfiguration` is the plain
// description; `TLSContext` owns the `SSL_CTX` built from it; `TLSClientHandler`
// (TLSHandler+Client.swift) runs one session per connection over memory BIOs.
import COpenSSL
import CSluiceShims
import Foundation
import SluiceCore
import Synchronization

/// How a client speaks TLS: whom it trusts, which certificate it shows, which versions.
public struct TLSClientConfiguration: Sendable, Equatable {
    /// PEM file of the CAs to trust; `nil` trusts the system's default CA paths.
    public var caFile: String?
    /// Trust the system's CAs as well as `caFile`.
    public var includeSystemCACertificates = false
    /// Client certificate chain and key (PEM) for mutual TLS.
    public var certFile: String?
    public var keyFile: String?
    /// No certificate or name check at all. Callers log `warnings`.
    public var insecureSkipVerify = false
    public var minVersion: TLSVersion = .v1_2
    public var maxVersion: TLSVersion?
    /// Sent as SNI and checked against the certificate instead of the connection's host.
    public var serverName: String?
    /// ALPN protocols to offer, most preferred first; empty offers none.
    public var alpnProtocols: [String] = []
    /// Rebuild the context from the files this often (certificate rotation).
    public var reloadInterval: Duration?

    public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, insecureSkipVerify: Bool = false,
                minVersion: TLSVersion = .v1_2, maxVersion: TLSVersion? = nil, serverName: String? = nil, alpnProtocols: [String] = []) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.insecureSkipVerify = insecureSkipVerify
        self.minVersion = minVersion
        self.maxVersion = maxVersion
        self.serverName = serverName
        self.alpnProtocols = alpnProtocols
    }

    /// From a `tls:` section read by SluiceCore.
    public init(_ settings: TLSSettings) {
        self.init(caFile: settings.caFile, certFile: settings.certFile, keyFile: settings.keyFile,
                  insecureSkipVerify: settings.insecureSkipVerify, minVersion: settings.minVersion,
                  maxVersion: settings.maxVersion, serverName: settings.serverNameOverride)
        includeSystemCACertificates = settings.includeSystemCACertificates
        reloadInterval = settings.reloadInterval
    }

    /// What the caller should log when it starts using this configuration.
    public var warnings: [String] {
        insecureSkipVerify
            ? ["tls.insecure_skip_verify is on: the server's certificate and name are not checked, so anyone on the network path can read and change what is sent"]
            : []
    }

    /// Builds the OpenSSL context, loading every file now. Exporters call this when
    /// their configuration is read so a bad PEM file is reported then.
    public func makeContext() throws(TLSError) -> TLSContext { try TLSContext(self) }
}

/// Owns one `SSL_CTX`: the trust store, client certificate and protocol limits that
/// every connection of a client shares.
public final class TLSContext: @unchecked Sendable {
    // @unchecked: the SSL_CTX is only written in `init`; afterwards it is only read
    // (by SSL_new, from any event loop), which OpenSSL supports from many threads.
    let pointer: OpaquePointer
    public let configuration: TLSClientConfiguration

    public init(_ configuration: TLSClientConfiguration) throws(TLSError) {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else {
            throw .configuration("cannot create an OpenSSL context: \(OpenSSLErrors.drain())")
        }
        pointer = ctx
        self.configuration = configuration
        // From here on `deinit` frees the context if a check below throws.

        if configuration.insecureSkipVerify {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        }
        if let caFile = configuration.caFile {
            guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else {
                throw .configuration("tls.ca_file '\(caFile)' holds no usable CA certificate: \(OpenSSLErrors.drain())")
            }
        }
        if configuration.caFile == nil || configuration.includeSystemCACertificates {
            // The system bundle (OpenSSL's default paths, or SSL_CERT_FILE / SSL_CERT_DIR).
            guard SSL_CTX_set_default_verify_paths(ctx) == 1 else {
                throw .configuration("cannot load the system's CA certificates: \(OpenSSLErrors.drain())")
            }
        }
        switch (configuration.certFile, configuration.keyFile) {
        case let (cert?, key?):
            try SSLContextSetup.useCertificate(ctx, certFile: cert, keyFile: key)
        case (nil, nil):
            break
        case (.some, nil):
            throw .configuration("tls.cert_file is set without tls.key_file")
        case (nil, .some):
            throw .configuration("tls.key_file is set without tls.cert_file")
        }
        try SSLContextSetup.limitVersions(ctx, min: configuration.minVersion, max: configuration.maxVersion)
        if !configuration.alpnProtocols.isEmpty {
            let wire = try SSLContextSetup.alpnWire(configuration.alpnProtocols)
            // Unlike most of OpenSSL, 0 is success here.
            guard sluice_ssl_ctx_set_alpn_protos(ctx, wire, UInt32(wire.count)) == 0 else {
                throw .configuration("cannot set ALPN protocols: \(OpenSSLErrors.drain())")
            }
        }
    }

    deinit { SSL_CTX_free(pointer) }
}

extension TLSVersion {
    var openSSLVersion: Int32 {
        switch self {
        case .v1_2: TLS1_2_VERSION
        case .v1_3: TLS1_3_VERSION
        }
    }
}

/// The context a client uses now, rebuilt from the files every `reloadInterval` so
/// rotated certificates are picked up. A rebuild that fails keeps the old context
/// (the files may be halfway through being replaced) and is tried again next time.
final class TLSContextSource: Sendable {
    private let state: Mutex<(context: TLSContext, built: ContinuousClock.Instant)>
    private let reloadInterval: Duration?

    init(_ configuration: TLSClientConfiguration) throws(TLSError) {
        state = Mutex((try TLSContext(configuration), .now))
        reloadInterval = configuration.reloadInterval
    }

    var current: TLSContext {
        let (context, built) = state.withLock { ($0.context, $0.built) }
        guard let reloadInterval, built.duration(to: .now) >= reloadInterval else { return context }
        let fresh = try? TLSContext(context.configuration)
        return state.withLock { s in
            if let fresh { s.context = fresh }
            s.built = .now
            return s.context
        }
    }
}
