import Foundation
import SluiceCore
import SluiceNet

/// `exporters.elasticsearch`, with the OpenTelemetry Collector's option names
/// (exporter/elasticsearchexporter) so a Collector section works unchanged.
///
/// Where Sluice differs, on purpose:
/// - Documents are written with `create` and a deterministic `_id` (the record's
///   `elasticsearch.document_id` or `event_id` attribute, else a hash of the
///   document): a retry never indexes twice, and a 409 counts as delivered.
/// - `retry` keeps the Collector's meaning for documents (`retry_on_status`), and
///   its intervals feed the exporter's retry schedule; retries go on until
///   `retry_on_failure.max_elapsed_time` (24 h), then the documents are dead-lettered
///   rather than dropped after `max_retries`.
/// - Index names may carry the record's date: `siem-events-%{+yyyy.MM.dd}`.
struct ElasticsearchConfig: Sendable {
    enum MappingMode: String, Sendable, CaseIterable {
        /// The Collector's original layout: `Body`, `Attributes.*`, `Resource.*`.
        case none
        /// Elastic Common Schema: `message`, `log.level`, `service.name`, attributes at the top.
        case ecs
        /// The OpenTelemetry-native layout: `body.text`, `attributes`, `resource.attributes`.
        case otel
        /// Like `none`, with record attributes at the top of the document.
        case raw
        /// A map body is the document.
        case bodymap
    }

    /// `logstash_format`: the index gets `<separator><date>` appended.
    struct LogstashFormat: Sendable, Equatable {
        var enabled = false
        var prefixSeparator = "-"
        var dateFormat = "%Y.%m.%d"
    }

    var endpoints: [HTTPEndpoint] = []
    var logsIndex = "logs-generic-default"
    var tracesIndex = "traces-generic-default"
    var logsDynamicIndex = false
    var tracesDynamicIndex = false
    var dynamicID = false
    var logstash = LogstashFormat()
    var mode: MappingMode = .otel
    var pipeline: String?
    /// A bulk request's size before compression (`flush.bytes`; the Collector's 5 MB).
    var flushBytes = 5_000_000
    /// Document statuses retried alone (`retry.retry_on_status`).
    var retryOnStatus: Set<Int> = [429, 500, 502, 503, 504]
    /// How long a node that could not be reached is skipped.
    var nodeQuarantine: Duration = .seconds(30)
    var http: HTTPExporterSettings
    /// `user`/`password` or `api_key`: the Authorization header, never logged.
    var authorization: String?
    var secrets: [String] = []

    /// `nil` when the section had errors; they are in `config.diagnostics`.
    init?(_ config: ConfigMap, extensions: [ComponentID: any Extension], environment: [String: String] = ProcessInfo.processInfo.environment) {
        let before = config.diagnostics.all.count
        var http = HTTPExporterSettings(config, auth: .extensions(extensions))
        // The Collector's ES exporter defaults to 90s: bulk requests can take long.
        if !config.has("timeout") { http.shared.timeout = .seconds(90); http.client.requestTimeout = .seconds(90) }
        self.http = http
        var urls: [(String, String)] = []
        if let text = config.string("endpoint") { urls.append(("endpoint", text)) }
        if let list = config.stringList("endpoints") {
            if config.has("endpoint") { config.report("endpoints", "set either endpoint or endpoints, not both") }
            urls += list.map { ("endpoints", $0) }
        }
        if config.has("cloudid") {
            config.accept("cloudid")
            config.report("cloudid", "Elastic Cloud IDs are not supported by Sluice; set endpoint to the deployment's Elasticsearch URL (https://<deployment>.es.<region>.<provider>.elastic-cloud.com:443)")
        }
        if urls.isEmpty, let variable = environment["ELASTICSEARCH_URL"], !variable.isEmpty {
            urls = variable.split(separator: ",").map { ("endpoint", String($0).trimmingCharacters(in: .whitespaces)) }
        }
        for (key, url) in urls {
            guard let endpoint = HTTPEndpoint(url) else {
                config.report(key, "'\(URLCredentials.redacted(url))' is not an http:// or https:// URL, like https://elasticsearch:9200")
                continue
            }
            endpoints.append(endpoint)
        }
        if urls.isEmpty, !config.has("cloudid") {
            config.report("endpoint", "missing: set endpoint (or endpoints) to Elasticsearch's URL, like https://elasticsearch:9200")
        }
        if let v = config.string("logs_index") { logsIndex = v }
        if let v = config.string("traces_index") { tracesIndex = v }
        if let v = config.string("index") {
            // The Collector's deprecated name for logs_index.
            if !config.has("logs_index") { logsIndex = v }
        }
        for (key, index) in [("logs_index", logsIndex), ("traces_index", tracesIndex)] {
            if let problem = IndexName.problem(index) { config.report(key, problem) }
        }
        logsDynamicIndex = Self.enabled(config, "logs_dynamic_index")
        tracesDynamicIndex = Self.enabled(config, "traces_dynamic_index")
        dynamicID = Self.enabled(config, "logs_dynamic_id")
        if let map = config.map("logstash_format") {
            if let v = map.bool("enabled") { logstash.enabled = v }
            if let v = map.string("prefix_separator") { logstash.prefixSeparator = v }
            if let v = map.string("date_format") { logstash.dateFormat = v }
            map.finish()
        }
        if let map = config.map("mapping") {
            if let v = map.enumeration("mode", MappingMode.allCases.map(\.rawValue)) { mode = MappingMode(rawValue: v)! }
            map.keysWithoutEffect([("dedot", "the Collector deprecated it"), ("dedup", "the Collector deprecated it")])
            if let modes = map.stringList("allowed_modes") {
                for text in modes where MappingMode(rawValue: text) == nil {
                    map.report("allowed_modes", "'\(text)' is not a mapping mode; use \(MappingMode.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                if !modes.contains(mode.rawValue) { map.report("allowed_modes", "does not allow mapping.mode \(mode.rawValue)") }
            }
            map.finish()
        }
        if let v = config.string("pipeline"), !v.isEmpty { pipeline = v }
        if let map = config.map("flush") {
            if let v = map.int("bytes", min: 1024, max: 100 << 20) { flushBytes = v }
            if map.has("interval") {
                _ = map.duration("interval")
                map.warn("interval", "has no effect in Sluice (bulk requests are sent as the pipeline's batch processor shapes them: timeout, send_batch_size); remove it to silence this warning")
            }
            map.finish()
        }
        if let map = config.map("retry") {
            if let v = map.bool("enabled") { http.retry.enabled = v }
            if let v = map.duration("initial_interval") { http.retry.initialInterval = v }
            if let v = map.duration("max_interval") { http.retry.maxInterval = v }
            for key in ["max_retries", "max_requests"] where map.has(key) {
                _ = map.int(key, min: 0)
                map.warn(key, "has no effect in Sluice (documents are retried until retry_on_failure.max_elapsed_time, then written to the dead-letter file, never dropped); remove it to silence this warning")
            }
            if let list = map.stringList("retry_on_status") {
                var statuses: Set<Int> = []
                for text in list {
                    if let code = Int(text), (400...599).contains(code) { statuses.insert(code) } else {
                        map.report("retry_on_status", "'\(text)' is not an HTTP error status (400 to 599)")
                    }
                }
                retryOnStatus = statuses
            }
            map.finish()
        }
        let user = config.string("user") ?? ""
        let password = config.string("password") ?? ""
        let apiKey = config.string("api_key") ?? ""
        if !apiKey.isEmpty {
            // Elasticsearch's API key header: `ApiKey <base64 of id:key>`, the encoded
            // form Kibana shows.
            authorization = "ApiKey \(apiKey)"
            secrets.append(apiKey)
            if !user.isEmpty { config.report("api_key", "set either api_key or user/password, not both") }
        } else if !user.isEmpty {
            authorization = "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
            secrets += [password, String(authorization!.dropFirst("Basic ".count))]
        } else if !password.isEmpty {
            config.report("user", "missing: password is set without user")
        }
        if authorization != nil, http.authenticator != nil {
            config.report("auth", "set either auth.authenticator or user/password/api_key, not both")
        }
        secrets += http.secrets + endpoints.flatMap { $0.credentials?.secretValues ?? [] }
        config.keysWithoutEffect([("num_workers", "one bulk request is in flight per pipeline, in log order"),
                           ("discover", "nodes are the configured endpoints; sniffing is not done"),
                           ("include_source_on_error", "a refused document's source is in the dead-letter file"),
                           ("log_request_body", "request bodies are never logged (they hold the events)"),
                           ("log_response_body", "refusals are logged with their reason"),
                           ("metrics_index", "Sluice's elasticsearch exporter sends logs and traces"),
                           ("metrics_dynamic_index", "Sluice's elasticsearch exporter sends logs and traces"),
                           ("telemetry", "the exporter's metrics are always on /metrics"),
                           ("batcher", "bulk requests are shaped by the pipeline's batch processor")])
        self.http = http
        config.finish()
        if config.diagnostics.all.count > before { return nil }
    }

    private static func enabled(_ config: ConfigMap, _ key: String) -> Bool {
        guard let map = config.map(key) else { return false }
        defer { map.finish() }
        return map.bool("enabled") ?? false
    }
}
