import SluiceCore
import SluiceNet
import NIOCore

/// `receivers.otlp`, with the Collector's names
/// (receiver/otlpreceiver, config/confighttp).
struct OTLPReceiverConfig: Sendable {
    /// `protocols.http`: the shared HTTP settings and the three paths.
    struct HTTP: Sendable {
        var server = HTTPReceiverSettings(endpoint: HostPort(host: "localhost", port: 4318))
        var paths: [OTLPSignal: String] = [.logs: "/v1/logs", .traces: "/v1/traces", .metrics: "/v1/metrics"]
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
                http.server = HTTPReceiverSettings(section, defaultEndpoint: http.server.endpoint, context: context)
                for (key, signal) in [("logs_url_path", OTLPSignal.logs), ("traces_url_path", .traces), ("metrics_url_path", .metrics)] {
                    if let path = section.string(key) { http.paths[signal] = path.hasPrefix("/") ? path : "/" + path }
                }
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
