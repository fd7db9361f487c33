import Foundation
import SluiceCore
import SluiceNet

/// `exporters.splunk_hec`, with the OpenTelemetry Collector's names and defaults
/// (exporter/splunkhecexporter: config.go, factory.go) so a Collector section works
/// unchanged, plus Sluice's `indexer_ack` and `fields_mode`.
///
/// Where Sluice differs from the Collector, on purpose:
/// - `splunk_app_name` defaults to "Sluice" (the Collector sends "OpenTelemetry
///   Collector Contrib"): Splunk uses it to count traffic per sending application.
/// - Severity goes to the fields `severity_text` / `severity_number` (the Collector:
///   `otel.log.severity.text` / `otel.log.severity.number`); `otel_to_hec_fields`
///   sets either name.
/// - `health_check_enabled` logs what the health endpoint says and starts anyway
///   (the Collector refuses to start): the data waits in the pipeline log either way.
/// - `timeout` keeps Sluice's 30s (the Collector: 10s): a request that times out is
///   sent again, and a duplicate in Splunk is worse than a slow answer.
struct SplunkHECConfig: Sendable {
    /// Where indexed attributes go (docs/splunk-hec.md).
    enum FieldsMode: String, Sendable, CaseIterable {
        /// HEC `fields`: indexed fields, flat strings.
        case indexed
        /// A JSON `event` object {"message": body, …attributes} for search-time
        /// (or `_json` indexed) extraction.
        case event
        /// Both: the attributes in `_raw` and as indexed fields.
        case both
    }

    /// Which attributes carry HEC metadata (`otel_attrs_to_hec_metadata`).
    struct MetadataAttributes: Sendable, Equatable {
        var source = "com.splunk.source"
        var sourcetype = "com.splunk.sourcetype"
        var index = "com.splunk.index"
        var host = "host.name"
    }

    struct IndexerAck: Sendable, Equatable {
        var enabled = false
        /// Acknowledgements still false after this long: the payload is sent again.
        var timeout: Duration = .seconds(60)
        /// The longest wait between two polls (the first poll comes sooner; see HECIndexerAck).
        var pollInterval: Duration = .seconds(1)
    }

    struct Heartbeat: Sendable, Equatable {
        /// Zero: no heartbeat.
        var interval: Duration = .zero
        var startup = false
    }

    /// The HEC token. Its description is redacted so that no interpolation into a log
    /// line or an error can show it.
    struct Token: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
        let value: String
        var description: String { SecretMask.placeholder }
        var debugDescription: String { SecretMask.placeholder }
    }

    static let defaultContentLength = 2 << 20
    static let defaultMaxEventSize = 5 << 20
    /// The Collector's upper bound for every size setting (800 MiB).
    static let maxSizeSetting = 800 << 20

    var endpoint: HTTPEndpoint
    /// The HEC root: `/services/collector` (or the endpoint's own path).
    var basePath: String
    var eventPath: String
    /// `export_raw`: log records go to the raw endpoint as their bodies, one per line.
    var exportRaw = false
    /// Where raw lines go: the endpoint itself when it names `/raw`, else `<root>/raw`.
    var rawPath: String
    var ackPath: String
    var healthPath: String
    var token: Token
    var source = ""
    var sourcetype = ""
    var index = ""
    var maxContentLengthLogs = defaultContentLength
    var maxContentLengthTraces = defaultContentLength
    var maxEventSize = defaultMaxEventSize
    var compress = true
    /// `compression_params.level`. zlib level 1 by default: on gateway events it
    /// compresses 15:1 at 1.2 µs per event, level 6 (the Collector's) 30:1 at 2.8 µs
    /// (zlib on 20,000 of them, docs/splunk-hec.md). A sidecar pays the CPU in every
    /// pod; raise it when bytes to Splunk cost more than CPU.
    var gzipLevel: Int32 = 1
    var appName = "Sluice"
    var appVersion = SluiceVersion.current
    var metadataAttributes = MetadataAttributes()
    var severityTextField = "severity_text"
    var severityNumberField = "severity_number"
    var fieldsMode: FieldsMode = .indexed
    var logDataEnabled = true
    var healthCheckEnabled = false
    var heartbeat = Heartbeat()
    var indexerAck = IndexerAck()
    var timeout: Duration = .seconds(30)
    var headers: [String: String] = [:]
    /// The HTTP client's settings (TLS, proxy, connections), read by the exporter kit.
    var client = HTTPClient.Settings()
    /// To log at start: TLS verification off, Collector keys without effect here.
    var warnings: [String] = []
    var retry = RetrySettings()
    var queue = QueueSettings()

    /// For tests: an http endpoint with every default.
    init(endpoint: HTTPEndpoint, token: String) {
        self.endpoint = endpoint
        self.token = Token(value: token)
        (basePath, eventPath) = Self.paths(endpoint.path)
        rawPath = Self.rawPath(endpoint.path, base: basePath)
        ackPath = basePath + "/ack"
        healthPath = basePath + "/health"
    }

    /// `nil` when the section had errors; they are in `config.diagnostics`.
    init?(_ config: ConfigMap) {
        let before = config.diagnostics.all.count
        var endpoint = HTTPEndpoint("http://localhost:8088")!
        if let text = config.string("endpoint") {
            if let parsed = HTTPEndpoint(text) {
                endpoint = parsed
                if parsed.path.hasSuffix("/raw") {
                    config.report("endpoint", "Sluice sends to the HEC event endpoint, not /raw; use https://<host>:8088/services/collector")
                }
            } else {
                config.report("endpoint", "expected an http:// or https:// URL, like https://splunk:8088/services/collector")
            }
        } else {
            config.report("endpoint", "missing: set endpoint to the HEC URL, like https://splunk:8088/services/collector")
        }
        let token = config.string("token") ?? ""
        if token.isEmpty {
            config.report("token", "missing: set token to the HEC token (from a secret: token: ${env:SPLUNK_HEC_TOKEN})")
        } else if token.contains(where: { $0.isNewline || $0 == "\0" }) {
            // Never echo the value: it is a credential.
            config.report("token", "the token contains a line break; check how the secret is mounted")
        }
        self.init(endpoint: endpoint, token: token)

        if let v = config.string("source") { source = v }
        if let v = config.string("sourcetype") { sourcetype = v }
        if let v = config.string("index") { index = v }
        if let v = Self.size(config, "max_content_length_logs", minimum: 1024) { maxContentLengthLogs = v }
        if let v = Self.size(config, "max_content_length_traces", minimum: 1024) { maxContentLengthTraces = v }
        if let v = Self.size(config, "max_event_size", minimum: 64) { maxEventSize = v }
        // The section's shared HTTP keys, read by the exporter kit like every HTTP
        // exporter's; `compression` is overridden by the Collector's
        // disable_compression (both are read).
        let http = HTTPExporterSettings(config, auth: .refused(instead: "the exporter authenticates with token"))
        timeout = http.shared.timeout
        headers = http.shared.headers
        compress = http.gzip
        gzipLevel = http.gzipLevel
        client = http.client
        warnings = http.warnings
        retry = http.retry
        queue = http.queue
        if let v = config.bool("disable_compression") { compress = !v }
        if let v = config.string("splunk_app_name") { appName = v }
        if let v = config.string("splunk_app_version") { appVersion = v }
        if let v = config.bool("log_data_enabled") { logDataEnabled = v }
        // The Collector's older name for the same mapping; the newer one wins.
        if let map = config.map("hec_metadata_to_otel_attrs") { metadataAttributes = Self.metadataAttributes(map, metadataAttributes) }
        if let map = config.map("otel_attrs_to_hec_metadata") { metadataAttributes = Self.metadataAttributes(map, metadataAttributes) }
        if let map = config.map("otel_to_hec_fields") {
            if let v = map.string("severity_text"), !v.isEmpty { severityTextField = v }
            if let v = map.string("severity_number"), !v.isEmpty { severityNumberField = v }
            map.finish()
        }
        if let v = config.enumeration("fields_mode", FieldsMode.allCases.map(\.rawValue)) { fieldsMode = FieldsMode(rawValue: v)! }
        if let v = config.bool("health_check_enabled") { healthCheckEnabled = v }
        if let v = config.string("health_path") {
            if v.hasPrefix("/") { healthPath = v } else { config.report("health_path", "expected a path starting with /, like /services/collector/health") }
        }
        if let map = config.map("heartbeat") {
            if let v = map.duration("interval") {
                if v < .zero { map.report("interval", "must not be negative") } else { heartbeat.interval = v }
            }
            if let v = map.bool("startup") { heartbeat.startup = v }
            map.finish()
        }
        if let map = config.map("indexer_ack") {
            if let v = map.bool("enabled") { indexerAck.enabled = v }
            if let v = map.duration("timeout") {
                if v <= .zero { map.report("timeout", "must be positive, like 60s") } else { indexerAck.timeout = v }
            }
            if let v = map.duration("poll_interval") {
                if v <= .zero { map.report("poll_interval", "must be positive, like 1s") } else { indexerAck.pollInterval = v }
            }
            map.finish()
        }
        if let raw = config.bool("export_raw") { exportRaw = raw }
        if config.bool("use_multi_metric_format") == true {
            config.report("use_multi_metric_format", "Sluice's splunk_hec exporter sends logs and traces, not metrics; remove it")
        }
        // Read so Collector configurations stay valid, and named as changing nothing
        // here: metrics and profiles are not sent, batching is the pipeline's.
        config.keysWithoutEffect([("max_content_length_metrics", "Sluice's splunk_hec sends logs and traces, not metrics"),
                           ("profiling_data_enabled", "profiles are not sent"),
                           ("max_connections", "connections are bounded by max_conns_per_host"),
                           ("telemetry", "the exporter's metrics are always on /metrics"),
                           ("batcher", "payloads are shaped by the pipeline's batch processor")])
        config.finish()
        if config.diagnostics.all.count > before { return nil }
    }

    func maxContentLength(_ signal: OTLPSignal) -> Int {
        signal == .traces ? maxContentLengthTraces : maxContentLengthLogs
    }

    /// The HEC root and the event path for an endpoint's path: no path gets
    /// `/services/collector`; a path ending in `/event` is the event endpoint
    /// itself; any other path is the root (a proxy's prefix, or
    /// `/services/collector`) and events go to `<root>/event`.
    static func paths(_ path: String) -> (base: String, event: String) {
        if path.isEmpty { return ("/services/collector", "/services/collector/event") }
        if path.hasSuffix("/event") { return (String(path.dropLast("/event".count)), path) }
        if path.hasSuffix("/raw") { let base = String(path.dropLast("/raw".count)); return (base, base + "/event") }
        return (path, path + "/event")
    }

    /// The raw endpoint: the endpoint's own path when it ends in `/raw` (as the
    /// Collector's configs name it), else `<root>/raw`.
    static func rawPath(_ path: String, base: String) -> String { path.hasSuffix("/raw") ? path : base + "/raw" }

    private static func size(_ config: ConfigMap, _ key: String, minimum: Int) -> Int? {
        guard let value = config.int(key, min: 0, max: maxSizeSetting) else { return nil }
        // The Collector reads 0 as "the default".
        if value == 0 { return nil }
        if value < minimum {
            config.report(key, "\(value) bytes is too small; at least \(minimum)")
            return nil
        }
        return value
    }

    private static func metadataAttributes(_ map: ConfigMap, _ current: MetadataAttributes) -> MetadataAttributes {
        var names = current
        if let v = map.string("source"), !v.isEmpty { names.source = v }
        if let v = map.string("sourcetype"), !v.isEmpty { names.sourcetype = v }
        if let v = map.string("index"), !v.isEmpty { names.index = v }
        if let v = map.string("host"), !v.isEmpty { names.host = v }
        map.finish()
        return names
    }
}
