import SluiceCore
import SluiceNet
import NIOCore

/// `receivers.otlp`, with the Collector's names
/// (receiver/otlpreceiver, config/confighttp).
struct OTLPReceiverConfig: Sendable {
    struct HTTP: Sendable {
        /// localhost, as the Collector's default since v0.104
        /// (component.UseLocalHostAsDefaultHost): a sidecar's client is in its pod.
        var endpoint = HostPort(host: "localhost", port: 4318)
        var maxRequestBodySize = 20 << 20
        var paths: [OTLPSignal: String] = [.logs: "/v1/logs", .traces: "/v1/traces", .metrics: "/v1/metrics"]
        var cors: CORSSettings?
        /// `read_header_timeout`, `read_timeout` (the whole request), `idle_timeout`.
        var headerTimeout: TimeAmount = .seconds(10)
        var readTimeout: TimeAmount = .seconds(30)
        var idleTimeout: TimeAmount = .seconds(120)
        var maxNestingDepth = 64
        /// `max_connections`; `nil`: a share of what `ulimit -n` allows (ConnectionTable).
        var maxConnections: Int?
        var tls: ReceiverTLS?
        var auth: ReceiverAuth?
    }

    /// `protocols.grpc` (config/configgrpc ServerConfig).
    struct GRPC: Sendable {
        var endpoint = HostPort(host: "localhost", port: 4317)
        /// `max_recv_msg_size_mib`: the largest message, before and after
        /// decompression (the Collector's default is 4 MiB).
        var maxRecvMsgSize = 4 << 20
        var maxConcurrentStreams: Int?
        /// `keepalive.server_parameters.max_connection_idle`.
        var idleTimeout: TimeAmount = .seconds(120)
        var headerTimeout: TimeAmount = .seconds(10)
        var readTimeout: TimeAmount = .seconds(30)
        var maxNestingDepth = 64
        /// `max_connections`; `nil`: a share of what `ulimit -n` allows (ConnectionTable).
        var maxConnections: Int?
        var tls: ReceiverTLS?
        var auth: ReceiverAuth?
    }

    var http: HTTP?
    var grpc: GRPC?

    /// `context.extensions` are the started ones (`service.extensions`), where
    /// `auth.authenticator` is looked up; its logger and metrics serve TLS.
    init?(_ config: ConfigMap, context: ComponentContext) {
        let before = config.diagnostics.all.count
        guard let protocols = config.map("protocols") else {
            config.report("protocols", "missing: enable at least one of protocols.http or protocols.grpc")
            config.finish()
            return nil
        }
        if protocols.has("http") {
            var http = HTTP()
            if let section = protocols.map("http") {
                if let text = section.string("endpoint") {
                    if let endpoint = HostPort(text) { http.endpoint = endpoint } else { section.report("endpoint", "expected host:port, like localhost:4318") }
                }
                if let size = section.int("max_request_body_size", min: 1) { http.maxRequestBodySize = size }
                for (key, signal) in [("logs_url_path", OTLPSignal.logs), ("traces_url_path", .traces), ("metrics_url_path", .metrics)] {
                    if let path = section.string(key) { http.paths[signal] = path.hasPrefix("/") ? path : "/" + path }
                }
                if let cors = section.map("cors") { http.cors = CORSSettings(cors) }
                if let timeout = section.duration("read_timeout"), timeout > .zero { http.readTimeout = TimeAmount(timeout) }
                if let timeout = section.duration("idle_timeout"), timeout > .zero { http.idleTimeout = TimeAmount(timeout) }
                if let timeout = section.duration("read_header_timeout"), timeout > .zero { http.headerTimeout = TimeAmount(timeout) }
                if let depth = section.int("max_nesting_depth", min: 8, max: OTLPDecodeLimits.nestingCeiling) { http.maxNestingDepth = depth }
                if let limit = section.int("max_connections", min: 1, max: 1 << 20) { http.maxConnections = limit }
                section.keysWithoutEffect([
                    ("include_metadata", "client metadata is not passed on to processors"),
                    ("write_timeout", "answers are small and written at once; read_header_timeout, read_timeout and idle_timeout bound a connection"),
                    ("response_headers", "answers carry only the headers OTLP defines"),
                    ("compression_algorithms", "every request may use gzip, deflate, zstd or none; other encodings are answered 415"),
                ])
                // Both HTTP versions: h2 preferred by ALPN, HTTP/1.1 for the rest.
                http.tls = ReceiverTLS(section, alpn: ["h2", "http/1.1"], transport: "http", context: context)
                http.auth = ReceiverAuth(section, extensions: context.extensions)
                section.finish()
            }
            self.http = http
        }
        if protocols.has("grpc") {
            grpc = protocols.map("grpc").map { GRPC($0, context: context) } ?? GRPC()
        }
        protocols.finish()
        config.finish()
        if http == nil && grpc == nil {
            config.report("protocols", "enable at least one of protocols.http or protocols.grpc")
        }
        if config.diagnostics.all.count > before { return nil }
    }
}

extension OTLPReceiverConfig.GRPC {
    init(_ section: ConfigMap, context: ComponentContext) {
        if let text = section.string("endpoint") {
            if let endpoint = HostPort(text) { self.endpoint = endpoint } else { section.report("endpoint", "expected host:port, like localhost:4317") }
        }
        if let transport = section.string("transport"), transport != "tcp" {
            section.report("transport", "'\(transport)' is not served by Sluice; use tcp (or remove transport)")
        }
        // 0 is the Collector's "use the default".
        if let mib = section.int("max_recv_msg_size_mib", min: 0, max: 1024), mib > 0 { maxRecvMsgSize = mib << 20 }
        if let streams = section.int("max_concurrent_streams", min: 0), streams > 0 { maxConcurrentStreams = streams }
        if let depth = section.int("max_nesting_depth", min: 8, max: OTLPDecodeLimits.nestingCeiling) { maxNestingDepth = depth }
        if let limit = section.int("max_connections", min: 1, max: 1 << 20) { maxConnections = limit }
        if let keepalive = section.map("keepalive") { readKeepalive(keepalive) }
        // Read so a wrong value is still named, and warned about as changing nothing.
        for key in ["read_buffer_size", "write_buffer_size"] where section.byteSize(key) != nil {
            section.warn(key, "has no effect in Sluice (socket buffers are the kernel's); remove it to silence this warning")
        }
        if section.bool("include_metadata") != nil {
            section.warn("include_metadata", "has no effect in Sluice (client metadata is not passed on to processors); remove it to silence this warning")
        }
        // gRPC is HTTP/2 only: ALPN offers h2 alone, as gRPC clients require it.
        tls = ReceiverTLS(section, alpn: ["h2"], transport: "grpc", context: context)
        auth = ReceiverAuth(section, extensions: context.extensions)
        section.finish()
    }

    /// `keepalive.server_parameters` and `keepalive.enforcement_policy`: the idle
    /// limit closes quiet connections; the rest shape pings and connection ages,
    /// which HTTP/2 here leaves to the client: they are read and warned about.
    private mutating func readKeepalive(_ keepalive: ConfigMap) {
        if let server = keepalive.map("server_parameters") {
            if let idle = server.duration("max_connection_idle"), idle > .zero { idleTimeout = TimeAmount(idle) }
            for key in ["max_connection_age", "max_connection_age_grace", "time", "timeout"] where server.duration(key) != nil {
                server.warn(key, "has no effect in Sluice (connections end when idle for max_connection_idle, or at the read deadlines); remove it to silence this warning")
            }
            server.finish()
        }
        if let policy = keepalive.map("enforcement_policy") {
            let minTime = policy.duration("min_time"), permit = policy.bool("permit_without_stream")
            if minTime != nil || permit != nil {
                keepalive.warn("enforcement_policy", "has no effect in Sluice (client pings are answered, never counted against the client); remove it to silence this warning")
            }
            policy.finish()
        }
        keepalive.finish()
    }
}

/// A protocol's `tls` (configtls.ServerConfig), loaded when the configuration is
/// read so a certificate that does not load, or a key that does not match it, is
/// reported at `….tls` by `sluice validate` too.
struct ReceiverTLS: Sendable {
    let context: TLSServerContext

    /// `nil` without a `tls` section, or when it cannot be used (reported).
    init?(_ section: ConfigMap, alpn: [String], transport: String, context: ComponentContext) {
        guard let tls = section.map("tls") else { return nil }
        let before = tls.diagnostics.all.count
        var settings = TLSServerSettings(tls)
        guard tls.diagnostics.all.count == before else { return nil }
        // `sluice validate` away from the pod's secrets: the files are checked at start.
        if tls.diagnostics.filesMayBeAbsent, tls.diagnostics.warned(under: tls.path) { return nil }
        settings.alpnProtocols = alpn
        do {
            self.context = try TLSServerContext(settings: settings, logger: context.logger, metrics: context.metrics,
                                                metricLabels: [("receiver", Self.receiverName(section.path)), ("transport", transport)])
        } catch {
            section.report("tls", "\(error)")
            return nil
        }
    }

    var warnings: [String] { context.settings.warnings }

    /// `otlp/edge` from `receivers.otlp/edge.protocols.grpc`, as the other receiver
    /// metrics label it.
    private static func receiverName(_ path: String) -> String {
        let receiver = path.hasPrefix("receivers.") ? path.dropFirst("receivers.".count) : Substring(path)
        return String(receiver.prefix { $0 != "." })
    }
}

/// A protocol's `auth: {authenticator: <extension id>}` (config/configauth), resolved
/// to the started extension it names.
struct ReceiverAuth: Sendable {
    let id: ComponentID
    let authenticator: any ServerAuthenticator

    init(id: ComponentID, authenticator: any ServerAuthenticator) {
        self.id = id
        self.authenticator = authenticator
    }

    /// `nil` when the section has no `auth`, or when it names something unusable
    /// (reported at `….auth.authenticator`).
    init?(_ section: ConfigMap, extensions: [ComponentID: any Extension]) {
        guard let auth = section.map("auth") else { return nil }
        defer { auth.finish() }
        guard let name = auth.string("authenticator") else {
            auth.report("authenticator", "missing: name the authenticator extension, like bearertokenauth")
            return nil
        }
        guard let id = ComponentID(name) else {
            auth.report("authenticator", "'\(name)' is not a component id; write type or type/name, like bearertokenauth")
            return nil
        }
        guard let found = extensions[id] else {
            if auth.diagnostics.reported(under: "extensions.\(id)") { return nil }
            auth.report("authenticator", "\(id) is not a started extension; define it under extensions and list it in service.extensions")
            return nil
        }
        guard let authenticator = found as? any ServerAuthenticator else {
            auth.report("authenticator", "\(id) does not authenticate requests; name an authenticator such as bearertokenauth")
            return nil
        }
        self.init(id: id, authenticator: authenticator)
    }
}

/// `cors` as in the Collector's confighttp: origins may use `*` wildcards.
struct CORSSettings: Sendable {
    var allowedOrigins: [String] = []
    var allowedHeaders: [String] = []
    var maxAge: Int?

    init(allowedOrigins: [String], allowedHeaders: [String] = [], maxAge: Int? = nil) {
        self.allowedOrigins = allowedOrigins
        self.allowedHeaders = allowedHeaders
        self.maxAge = maxAge
    }

    init(_ config: ConfigMap) {
        allowedOrigins = config.stringList("allowed_origins") ?? []
        allowedHeaders = config.stringList("allowed_headers") ?? []
        maxAge = config.int("max_age", min: 0)
        config.finish()
    }

    func allows(origin: String) -> Bool {
        allowedOrigins.contains { pattern in
            if pattern == "*" || pattern == origin { return true }
            guard let star = pattern.firstIndex(of: "*") else { return false }
            let prefix = pattern[..<star], suffix = pattern[pattern.index(after: star)...]
            return origin.count >= prefix.count + suffix.count && origin.hasPrefix(prefix) && origin.hasSuffix(suffix)
        }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
