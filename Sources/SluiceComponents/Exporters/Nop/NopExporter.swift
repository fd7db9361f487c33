import SluiceCore

/// `nop`: accepts everything and sends nowhere. For benchmarks and for pipelines
/// that only exist to test receivers.
public struct NopExporterFactory: ExporterFactory {
    public let type = "nop"
    public let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Exporter)? {
        config.finish()
        return NopExporter(id: id)
    }
}

final class NopExporter: Exporter {
    let id: ComponentID
    let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    let retry = RetrySettings()
    let queue = QueueSettings()
    init(id: ComponentID) { self.id = id }
    func start() async throws {}
    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome { .delivered }
    func shutdown() async {}
}
