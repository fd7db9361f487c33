import NIOHTTP1
import SluiceCore
import SluiceNet

/// The Collector's client settings every HTTP exporter shares (config/confighttp,
/// exporterhelper's `retry_on_failure` and `sending_queue`), read once here so that
/// every exporter means the same by them and checks them as strictly: `timeout`,
/// `headers`, `compression`, `tls` (with its PEM files tried when the config is
/// read), `proxy_url`, `max_conns_per_host`, `auth.authenticator`.
///
/// Keys the Collector defines for its Go HTTP client that change nothing here are
/// named in `warnings`, never silently taken.
struct HTTPExporterSettings: Sendable {
    var shared: HTTPClientSettings
    var client: HTTPClient.Settings
    var retry: RetrySettings
    var queue: QueueSettings
    var authenticator: (any ClientAuthenticator)?
    /// `compression_params.level` for gzip; 1 by default, which on JSON events
    /// gives most of level 6's size at a fraction of its CPU.
    var gzipLevel: Int32 = 1
    /// To log once at start: TLS verification off, keys without effect.
    var warnings: [String]

    /// How an exporter takes `auth`.
    enum Auth {
        /// `auth.authenticator` names a client authenticator among these extensions.
        case extensions([ComponentID: any Extension])
        /// The exporter has its own credential (Splunk's token); `auth` is refused with this advice.
        case refused(instead: String)
    }

    /// Keys of confighttp's Go client that Sluice's client has no use for, and why.
    static let goClientKeys: [(key: String, why: String)] = [
        ("read_buffer_size", "buffers are sized per request"),
        ("write_buffer_size", "buffers are sized per request"),
        ("max_idle_conns", "idle connections are bounded by max_conns_per_host"),
        ("max_idle_conns_per_host", "idle connections are bounded by max_conns_per_host"),
        ("idle_conn_timeout", "idle connections close after 90s"),
        ("disable_keep_alives", "connections are always kept alive"),
        ("http2_read_idle_timeout", "HTTP/2 connections are checked by their requests' timeout"),
        ("http2_ping_timeout", "HTTP/2 connections are checked by their requests' timeout"),
        ("cookies", "no destination Sluice sends to sets cookies"),
    ]

    init(_ config: ConfigMap, defaultCompression: String = "gzip", auth: Auth) {
        shared = HTTPClientSettings(config, defaultCompression: defaultCompression)
        client = HTTPClient.Settings(exporterConfig: config, shared: shared)
        if let connections = config.int("max_conns_per_host", min: 1, max: 256) { client.maxConnections = connections }
        if let params = config.map("compression_params") {
            if let level = params.int("level", min: 1, max: 9) { gzipLevel = Int32(level) }
            params.finish()
        }
        retry = RetrySettings(config.map("retry_on_failure"))
        queue = QueueSettings(config.map("sending_queue"))
        warnings = client.warnings
        config.keysWithoutEffect(Self.goClientKeys)
        switch auth {
        case .refused(let instead):
            config.refuseClientAuthenticator(instead: instead)
        case .extensions(let extensions):
            authenticator = Self.authenticator(config, extensions)
        }
    }

    private static func authenticator(_ config: ConfigMap, _ extensions: [ComponentID: any Extension]) -> (any ClientAuthenticator)? {
        guard let auth = config.map("auth") else { return nil }
        defer { auth.finish() }
        guard let name = auth.string("authenticator") else {
            auth.report("authenticator", "missing: name the extension that authenticates this exporter, like bearertokenauth or basicauth/client")
            return nil
        }
        guard let id = ComponentID(name), let found = extensions[id] else {
            if let id = ComponentID(name), auth.diagnostics.reported(under: "extensions.\(id)") { return nil }
            auth.report("authenticator", "'\(name)' is not an extension listed in service.extensions; add it there")
            return nil
        }
        guard let client = found as? any ClientAuthenticator else {
            auth.report("authenticator", "'\(name)' cannot authenticate an exporter; use bearertokenauth or basicauth with client_auth")
            return nil
        }
        return client
    }

    var gzip: Bool { shared.compression == "gzip" }

    /// `body` gzipped when compression is on (and zlib could), with whether it was.
    func compress(_ body: [UInt8]) -> (body: [UInt8], gzipped: Bool) {
        guard gzip, let compressed = Compression.gzip(body, level: gzipLevel) else { return (body, false) }
        return (compressed, true)
    }

    /// The configured headers, then the authenticator's credential.
    func headers(_ base: [(String, String)] = []) -> HTTPHeaders {
        var headers = HTTPHeaders(base)
        for (name, value) in shared.headers.sorted(by: { $0.key < $1.key }) { headers.replaceOrAdd(name: name, value: value) }
        if let credential = authenticator?.credentialHeader() { headers.replaceOrAdd(name: credential.name, value: credential.value) }
        return headers
    }

    /// Values that must never reach a log line, an error or the dead-letter file:
    /// the authenticator's credential and headers that carry one (SecretMask says
    /// which header names do, the same rule as for log metadata).
    var secrets: [String] {
        (authenticator?.secretValues() ?? []) + SecretMask.secrets(inHeaders: shared.headers)
    }
}
