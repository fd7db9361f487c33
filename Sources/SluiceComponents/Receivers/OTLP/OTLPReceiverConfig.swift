import SluiceCore
import SluiceNet
import NIOCore

/// `receivers.otlp`, with the Collector's names
/// (receiver/otlpreceiver, config/confighttp).
struct OTLPReceiverConfig: Sendable {
    struct HTTP: Sendable {
        var endpoint = HostPort(host: "0.0.0.0", port: 4318)
        var maxRequestBodySize = 20 << 20
        var paths: [OTLPSignal: String] = [.logs: "/v1/logs", .traces: "/v1/traces", .metrics: "/v1/metrics"]
        var cors: CORSSettings?
        var readTimeout: TimeAmount = .seconds(30)
        var idleTimeout: TimeAmount = .seconds(120)
        var maxNestingDepth = 64
    }

    var http: HTTP?
    /// gRPC is declared but not served by this build (HTTP/2 arrives with its own
    /// issue); kept so the start-up log can say so instead of ignoring it.
    var grpcEndpoint: String?

    init?(_ config: ConfigMap) {
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
                    if let endpoint = HostPort(text) { http.endpoint = endpoint } else { section.report("endpoint", "expected host:port, like 0.0.0.0:4318") }
                }
                if let size = section.int("max_request_body_size", min: 1) { http.maxRequestBodySize = size }
                for (key, signal) in [("logs_url_path", OTLPSignal.logs), ("traces_url_path", .traces), ("metrics_url_path", .metrics)] {
                    if let path = section.string(key) { http.paths[signal] = path.hasPrefix("/") ? path : "/" + path }
                }
                if let cors = section.map("cors") { http.cors = CORSSettings(cors) }
                if let timeout = section.duration("read_timeout"), timeout > .zero { http.readTimeout = TimeAmount(timeout) }
                if let timeout = section.duration("idle_timeout"), timeout > .zero { http.idleTimeout = TimeAmount(timeout) }
                if let depth = section.int("max_nesting_depth", min: 8, max: OTLPDecodeLimits.nestingCeiling) { http.maxNestingDepth = depth }
                section.accept("include_metadata", "read_header_timeout", "write_timeout", "response_headers", "compression_algorithms")
                if section.has("tls") { section.report("tls", "TLS on the receiver is not in this build yet; terminate TLS in front of Sluice or remove tls") }
                if section.has("auth") { section.report("auth", "receiver authentication is not in this build yet; remove auth") }
                section.accept("tls", "auth")
                section.finish()
            }
            self.http = http
        }
        if protocols.has("grpc") {
            grpcEndpoint = protocols.map("grpc")?.string("endpoint") ?? "0.0.0.0:4317"
            // The section's keys are the Collector's; they are read when gRPC is served.
            protocols.map("grpc")?.accept("endpoint", "transport", "max_recv_msg_size_mib", "max_concurrent_streams", "read_buffer_size",
                                          "write_buffer_size", "keepalive", "tls", "auth", "include_metadata")
            protocols.map("grpc")?.finish()
        }
        protocols.finish()
        config.finish()
        if http == nil && grpcEndpoint == nil {
            config.report("protocols", "enable at least one of protocols.http or protocols.grpc")
        }
        if config.diagnostics.all.count > before { return nil }
    }
}

/// `cors` as in the Collector's confighttp: origins may use `*` wildcards.
struct CORSSettings: Sendable {
    var allowedOrigins: [String] = []
    var allowedHeaders: [String] = []
    var maxAge: Int?

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
