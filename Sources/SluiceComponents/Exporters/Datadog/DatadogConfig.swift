import SluiceCore
import SluiceNet

/// `exporters.datadog`, with the OpenTelemetry Collector's option names
/// (exporter/datadogexporter) so a Collector section works unchanged for logs:
/// `api.key`, `api.site`, `logs.endpoint`, `logs.use_compression`,
/// `logs.compression_level`, `hostname`, and the kit's shared keys.
///
/// Sluice sends logs only: the sections for metrics, traces and host metadata are
/// warned about by name, never silently taken.
struct DatadogConfig: Sendable {
    /// The logs intake's base URL; requests go to `<endpoint>/api/v2/logs`.
    var endpoint: HTTPEndpoint
    var apiKey: String
    var site = "datadoghq.com"
    /// `hostname`: the host for records whose resource has no `host.name`.
    var hostname: String?
    /// `logs.max_age` (Sluice): entries older than this go to the dead-letter file
    /// instead of Datadog, which takes logs up to 18 hours old; nil sends them all.
    var maxAge: Duration? = .seconds(18 * 3600)
    var http: HTTPExporterSettings
    var secrets: [String] = []

    /// Datadog's limits per request (https://docs.datadoghq.com/api/latest/logs/#send-logs):
    /// 5 MB of content before compression, 1,000 entries, 1 MB per entry (larger
    /// entries would be truncated by Datadog: Sluice sends them to the dead-letter
    /// file instead, whole).
    static let maxPayloadBytes = 5_000_000
    static let maxEntries = 1000
    static let maxEntryBytes = 1_000_000

    /// `nil` when the section had errors; they are in `config.diagnostics`.
    init?(_ config: ConfigMap) {
        let before = config.diagnostics.all.count
        var http = HTTPExporterSettings(config, auth: .refused(instead: "set api.key, Datadog's own credential"))
        var key = ""
        if let api = config.map("api") {
            key = api.string("key") ?? ""
            if let v = api.string("site"), !v.isEmpty { site = v }
            api.keysWithoutEffect([("fail_on_invalid_key", "the first delivery checks the key, and a refused key makes the exporter failed in /status")])
            api.finish()
        }
        if key.isEmpty {
            config.report("api", "api.key is missing: set it to a Datadog API key (Organization Settings → API Keys), like key: ${env:DD_API_KEY}")
        }
        apiKey = key
        var endpointText = "https://http-intake.logs.\(site)"
        if let logs = config.map("logs") {
            if let v = logs.string("endpoint"), !v.isEmpty { endpointText = v }
            if let v = logs.bool("use_compression"), !v { http.shared.compression = "none" }
            if let v = logs.int("compression_level", min: 1, max: 9) { http.gzipLevel = Int32(v) }
            if let v = logs.duration("max_age") { maxAge = v == .zero ? nil : v }
            logs.keysWithoutEffect([("batch_wait", "payloads are shaped by the pipeline's batch processor"),
                                    ("dump_payloads", "payloads are never logged (they hold the events)")])
            logs.finish()
        }
        if let v = config.string("hostname"), !v.isEmpty { hostname = v }
        config.keysWithoutEffect([("metrics", "Sluice's datadog exporter sends logs"), ("traces", "Sluice's datadog exporter sends logs"),
                                  ("host_metadata", "Sluice sends no host metadata"), ("only_metadata", "Sluice sends no host metadata"),
                                  ("hostname_detection_timeout", "the hostname is the record's host.name, hostname, or this host's name")])
        if let parsed = HTTPEndpoint(endpointText) {
            endpoint = parsed
        } else {
            config.report(config.has("logs") ? "logs" : "api", "logs.endpoint '\(endpointText)' is not an http:// or https:// URL, like https://http-intake.logs.datadoghq.eu")
            endpoint = HTTPEndpoint("https://http-intake.logs.datadoghq.com")!
        }
        secrets = [apiKey] + http.secrets
        self.http = http
        config.finish()
        if config.diagnostics.all.count > before { return nil }
    }

    /// Where logs are posted.
    var logsPath: String {
        endpoint.path.hasSuffix("/api/v2/logs") ? endpoint.path : endpoint.path + "/api/v2/logs"
    }
}
