import SluiceCore
import SluiceNet

/// `receivers.events`: the shared HTTP settings (endpoint, limits, deadlines, TLS,
/// auth, CORS) and the events' own.
struct EventsReceiverConfig: Sendable {
    /// localhost:4320: next to OTLP's 4317/4318 and free of the ports Sluice and
    /// the Collector use (8888 metrics, 13133 health_check, 55679 zpages).
    static let defaultEndpoint = HostPort(host: "localhost", port: 4320)

    var server = HTTPReceiverSettings(endpoint: defaultEndpoint)
    var path = "/v1/events"
    /// Events in one request; more → 413 (memory per request stays bounded
    /// however small the events are).
    var maxEventsPerRequest = 10_000
    /// JSON values (every object, array, string, number, literal) in one request.
    /// A decoded value costs about 190 bytes of batch memory (as an attribute and
    /// again in the map body; sluice-bench: 4.6 KB for a 13-value event), so the
    /// default bounds one request near 50 MB: 10,000 events of 25 values.
    var maxValuesPerRequest = 250_000
    var mapping = EventLogMapping()

    init() {}

    init?(_ config: ConfigMap, context: ComponentContext) {
        let before = config.diagnostics.all.count
        server = HTTPReceiverSettings(config, defaultEndpoint: Self.defaultEndpoint, context: context)
        if let path = config.string("path") { self.path = path.hasPrefix("/") ? path : "/" + path }
        if let events = config.int("max_events_per_request", min: 1, max: 1_000_000) { maxEventsPerRequest = events }
        if let values = config.int("max_values_per_request", min: 16, max: 100_000_000) { maxValuesPerRequest = values }
        if let body = config.enumeration("body", EventLogMapping.Body.allCases.map(\.rawValue)) { mapping.body = EventLogMapping.Body(rawValue: body)! }
        config.finish()
        if config.diagnostics.all.count > before { return nil }
    }
}
