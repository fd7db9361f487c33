// The receiver kit: what every receiver that listens for HTTP requests shares —
// its settings (the Collector's confighttp.ServerConfig), the checks a request
// passes before its body is read (HTTPReceiverGate), the ingest that decompresses,
// decodes, hands to the pipelines and counts (ReceiverIngest), and starting and
// stopping its servers (ReceiverServers). The `otlp` receiver's OTLP/HTTP protocol
// and the `events` receiver are built from these pieces, so both have the same
// limits, TLS, authentication, CORS, deadlines and backpressure.
import NIOCore
import SluiceCore
import SluiceNet

/// An HTTP listener's settings, with the Collector's names (config/confighttp).
struct HTTPReceiverSettings: Sendable {
    var endpoint: HostPort
    /// Bytes, before and after decompression; larger → 413.
    var maxRequestBodySize = 20 << 20
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

    /// `endpoint` is the default: a localhost address, as the Collector's defaults
    /// since v0.104 (component.UseLocalHostAsDefaultHost), since a sidecar's client
    /// is in its pod.
    init(endpoint: HostPort) {
        self.endpoint = endpoint
    }

    /// Reads the shared keys of `section`; the caller reads its own and finishes it.
    /// `context.extensions` are where `auth.authenticator` is looked up.
    init(_ section: ConfigMap, defaultEndpoint: HostPort, context: ComponentContext) {
        self.init(endpoint: defaultEndpoint)
        if let text = section.string("endpoint") {
            if let endpoint = HostPort(text) { self.endpoint = endpoint } else { section.report("endpoint", "expected host:port, like \(defaultEndpoint)") }
        }
        if let size = section.int("max_request_body_size", min: 1) { maxRequestBodySize = size }
        if let cors = section.map("cors") { self.cors = CORSSettings(cors) }
        if let timeout = section.duration("read_timeout"), timeout > .zero { readTimeout = TimeAmount(timeout) }
        if let timeout = section.duration("idle_timeout"), timeout > .zero { idleTimeout = TimeAmount(timeout) }
        if let timeout = section.duration("read_header_timeout"), timeout > .zero { headerTimeout = TimeAmount(timeout) }
        if let depth = section.int("max_nesting_depth", min: 8, max: OTLPDecodeLimits.nestingCeiling) { maxNestingDepth = depth }
        if let limit = section.int("max_connections", min: 1, max: 1 << 20) { maxConnections = limit }
        section.keysWithoutEffect([
            ("include_metadata", "client metadata is not passed on to processors"),
            ("write_timeout", "answers are small and written at once; read_header_timeout, read_timeout and idle_timeout bound a connection"),
            ("response_headers", "answers carry only the headers the protocol defines"),
            ("compression_algorithms", "every request may use gzip, deflate, zstd or none; other encodings are answered 415"),
        ])
        // Both HTTP versions: h2 preferred by ALPN, HTTP/1.1 for the rest.
        tls = ReceiverTLS(section, alpn: ["h2", "http/1.1"], transport: "http", context: context)
        auth = ReceiverAuth(section, extensions: context.extensions)
    }

    /// What the server enforces before a request reaches the responder.
    var serverLimits: HTTPServerLimits {
        HTTPServerLimits(maxBodyBytes: maxRequestBodySize, headerTimeout: headerTimeout, readTimeout: readTimeout,
                         idleTimeout: idleTimeout, maxConnections: maxConnections)
    }

    /// What decoding a body enforces.
    var decodeLimits: OTLPDecodeLimits {
        OTLPDecodeLimits(maxBodyBytes: maxRequestBodySize, maxNestingDepth: maxNestingDepth)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
