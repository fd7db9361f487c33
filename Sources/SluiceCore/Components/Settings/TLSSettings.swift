import Foundation

/// A TLS protocol version Sluice will negotiate. Nothing below 1.2 is offered: the
/// destinations Sluice sends to all speak 1.2, and older versions are broken.
public enum TLSVersion: String, Sendable, Comparable, CaseIterable {
    case v1_2 = "1.2"
    case v1_3 = "1.3"

    public static func < (a: TLSVersion, b: TLSVersion) -> Bool { a.rawValue < b.rawValue }
}

/// A client's `tls:` section with the Collector's names (configtls.ClientConfig).
/// Plain values only: SluiceNet turns them into an OpenSSL context
/// (`TLSClientConfiguration`). Files are checked here, when the configuration is
/// read, so a wrong path is reported with its key rather than at the first send.
public struct TLSSettings: Sendable, Equatable {
    /// The Collector's `insecure`: for gRPC it means "no TLS at all". For HTTP the
    /// endpoint's scheme decides, so HTTP exporters ignore it.
    public var insecure = false
    /// Do not check the server's certificate (or its name). Logged as a warning.
    public var insecureSkipVerify = false
    /// PEM file of the CAs to trust; `nil` trusts the system's CA bundle.
    public var caFile: String?
    /// Trust the system's CA bundle as well as `caFile`.
    public var includeSystemCACertificates = false
    /// Client certificate (PEM, may hold the chain) and key, for mutual TLS.
    public var certFile: String?
    public var keyFile: String?
    public var minVersion: TLSVersion = .v1_2
    public var maxVersion: TLSVersion?
    /// The name sent as SNI and checked against the certificate instead of the endpoint's host.
    public var serverNameOverride: String?
    /// Re-read the CA, certificate and key files this often (certificate rotation).
    public var reloadInterval: Duration?

    public init() {}

    /// Reads a `tls:` section; problems are reported into the map's diagnostics.
    public init(_ config: ConfigMap?) {
        guard let config else { return }
        if let v = config.bool("insecure") { insecure = v }
        if let v = config.bool("insecure_skip_verify") { insecureSkipVerify = v }
        caFile = Self.readableFile(config, "ca_file")
        certFile = Self.readableFile(config, "cert_file")
        keyFile = Self.readableFile(config, "key_file")
        if let v = config.bool("include_system_ca_certs_pool") { includeSystemCACertificates = v }
        (minVersion, maxVersion) = Self.versions(config)
        if let v = config.string("server_name_override") { serverNameOverride = v }
        reloadInterval = Self.reloadInterval(config)
        // cert_file and key_file only make sense together: name the missing one.
        if (certFile != nil) != (keyFile != nil) {
            let missing = certFile != nil ? "key_file" : "cert_file"
            config.report(missing, "missing: mutual TLS needs both cert_file and key_file")
        }
        Self.refuseUnsupportedKeys(config, pemKeys: ["ca_pem", "cert_pem", "key_pem"])
        config.finish()
    }

    /// What the user should be told when the client starts; empty when nothing is risky.
    public var warnings: [String] {
        insecureSkipVerify
            ? ["tls.insecure_skip_verify is on: the server's certificate and name are not checked, so anyone on the network path can read and change what is sent"]
            : []
    }
}
