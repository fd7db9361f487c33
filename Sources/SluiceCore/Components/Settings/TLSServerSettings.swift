// A receiver's `tls:` section with the Collector's names (configtls.ServerConfig,
// https://github.com/open-telemetry/opentelemetry-collector/blob/main/config/configtls/README.md#server-configuration).
// Plain values only: SluiceNet turns them into an OpenSSL server context
// (`TLSServerContext`).
import Foundation

/// How a receiver speaks TLS: the certificate it shows, which clients it accepts,
/// which versions, and how often it looks for rotated files.
public struct TLSServerSettings: Sendable, Equatable {
    /// The receiver's certificate (PEM, leaf first, may hold the chain) and its key.
    /// A server cannot do TLS without them, so both are required.
    public var certFile: String
    public var keyFile: String
    /// PEM file of the CAs whose client certificates are accepted. When set, every
    /// client must present a certificate signed by one of them (mutual TLS).
    public var clientCAFile: String?
    /// Look at `clientCAFile` for changes about once a second, even without `reloadInterval`.
    public var reloadClientCAFile = false
    public var minVersion: TLSVersion = .v1_2
    public var maxVersion: TLSVersion?
    /// New connections look at most this often whether the certificate, key or
    /// client CA file changed (cert-manager replaces them in place), and if so
    /// load them.
    public var reloadInterval: Duration?
    /// ALPN protocols the receiver speaks, most preferred first (RFC 7301): the
    /// first one the client also offers is chosen; a client offering none of them
    /// gets no ALPN answer. Empty turns ALPN off. Not a Collector key: the receiver
    /// sets it to what its server speaks.
    public var alpnProtocols = ["h2", "http/1.1"]
    /// What the user should be told when the receiver starts.
    public private(set) var warnings: [String] = []

    /// Other settings are set as properties.
    public init(certFile: String, keyFile: String) {
        self.certFile = certFile
        self.keyFile = keyFile
    }

    /// Reads a receiver's `tls:` section; problems are reported into the map's
    /// diagnostics (the configuration then fails to load, so the values of a section
    /// with problems are never used).
    public init(_ config: ConfigMap) {
        certFile = TLSSettings.readableFile(config, "cert_file") ?? ""
        keyFile = TLSSettings.readableFile(config, "key_file") ?? ""
        // configtls.ServerConfig.Validate: a server needs both.
        for key in ["cert_file", "key_file"] where !config.has(key) {
            config.report(key, "missing: a receiver with a tls section needs both cert_file and key_file (its certificate and private key, PEM)")
        }
        clientCAFile = TLSSettings.readableFile(config, "client_ca_file")
        if let v = config.bool("client_ca_file_reload") { reloadClientCAFile = v }
        if reloadClientCAFile, !config.has("client_ca_file") {
            config.report("client_ca_file_reload", "set without client_ca_file; there is no client CA file to reload")
        }
        (minVersion, maxVersion) = TLSSettings.versions(config)
        reloadInterval = TLSSettings.reloadInterval(config)

        // The Collector reads ca_file on a server into Go's RootCAs, which a server
        // never consults: it does not verify clients, however its README reads. Same
        // here: accepted (so Collector configurations load) but unused, and said so,
        // because someone who wrote it most likely wanted mutual TLS.
        if TLSSettings.readableFile(config, "ca_file") != nil {
            warnings.append("tls.ca_file is not used by a receiver (as in the Collector): clients are not asked for certificates by it; set tls.client_ca_file to require and verify client certificates")
        }
        if config.bool("include_system_ca_certs_pool") == true {
            warnings.append("tls.include_system_ca_certs_pool has no effect on a receiver; client certificates are checked against tls.client_ca_file only")
        }
        for key in ["insecure", "insecure_skip_verify", "server_name_override"] where config.has(key) {
            config.accept(key)
            config.report(key, "is a client setting (exporters); a receiver's tls section does not take it")
        }
        TLSSettings.refuseUnsupportedKeys(config, pemKeys: ["ca_pem", "cert_pem", "key_pem"])
        config.finish()
    }
}
