import SluiceCore
import SluiceNet

/// `exporters.webhook`: events as JSON POSTs to a URL, signed as Standard Webhooks
/// (docs/webhooks.md). The Collector has no such exporter; the keys follow its
/// HTTP exporters' (`endpoint`, `headers`, `timeout`, `tls`, `retry_on_failure`, …)
/// plus `mode`, `secret`, `event_types`, `max_batch_size`, `max_payload_bytes`.
struct WebhookConfig: Sendable {
    enum Mode: String, Sendable, CaseIterable {
        /// A JSON array of events per request.
        case batch
        /// One event (a JSON object) per request.
        case single
    }

    var endpoint: HTTPEndpoint
    var mode = Mode.batch
    var signature: WebhookSignature?
    var eventTypes = EventTypeFilter([])
    /// Events in one batch request.
    var maxBatchSize = 100
    /// A request body's size (before compression); one larger event is sent alone.
    var maxPayloadBytes = 1 << 20
    var http: HTTPExporterSettings
    var secrets: [String] = []

    init?(_ config: ConfigMap, extensions: [ComponentID: any Extension]) {
        let before = config.diagnostics.all.count
        // Receivers are web applications: most do not take gzip bodies.
        let http = HTTPExporterSettings(config, defaultCompression: "none", auth: .extensions(extensions))
        let url = config.string("endpoint") ?? ""
        if url.isEmpty { config.report("endpoint", "missing: set it to the receiver's URL, like https://hooks.example.com/sluice") }
        endpoint = HTTPEndpoint(url) ?? HTTPEndpoint("http://invalid")!
        if !url.isEmpty, HTTPEndpoint(url) == nil {
            config.report("endpoint", "'\(url)' is not an http:// or https:// URL, like https://hooks.example.com/sluice")
        }
        if let v = config.enumeration("mode", Mode.allCases.map(\.rawValue)) { mode = Mode(rawValue: v)! }
        if let secret = config.string("secret") {
            do {
                signature = try WebhookSignature(secret: secret)
                secrets.append(secret)
                secrets.append(String(secret.dropFirst(secret.hasPrefix("whsec_") ? 6 : 0)))
            } catch {
                config.report("secret", "the secret \(error.description)")
            }
        }
        if let list = config.stringList("event_types") {
            for pattern in list where pattern.isEmpty { config.report("event_types", "an empty pattern matches nothing; remove it, or use * for every type") }
            eventTypes = EventTypeFilter(list.filter { !$0.isEmpty })
        }
        if let v = config.int("max_batch_size", min: 1, max: 10_000) { maxBatchSize = v }
        if let v = config.byteSize("max_payload_bytes") {
            if v < 1024 { config.report("max_payload_bytes", "\(v) bytes is too small for one event; use at least 1KiB") } else { maxPayloadBytes = v }
        }
        // The signature headers are the exporter's: a configured one would replace them.
        for name in http.shared.headers.keys where ["webhook-id", "webhook-timestamp", "webhook-signature"].contains(name.lowercased()) {
            config.report("headers", "\(name) is set by the exporter on every request (Standard Webhooks); remove it from headers")
        }
        secrets += http.secrets
        if signature == nil, !config.has("secret") {
            config.warn("secret", "missing: webhooks are sent unsigned, and the receiver cannot tell them from forgeries; set secret: whsec_… (echo whsec_$(openssl rand -base64 32))")
        }
        self.http = http
        config.finish()
        if config.diagnostics.all.count > before { return nil }
    }
}
