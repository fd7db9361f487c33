import SluiceCore

/// `nop`: accepts everything and sends nowhere. For benchmarks and for pipelines
/// that only exist to test receivers.
public struct NopExporterFactory: ExporterFactory {
    public let type = "nop"
    public let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Exporter)? {
        // A queue can be given, so a benchmark can put nop's pipeline on the disk log.
        let queue = QueueSettings(config.map("sending_queue"))
        config.finish()
        return NopExporter(id: id, queue: queue)
    }
}

final class NopExporter: Exporter {
    let id: ComponentID
    let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    let retry = RetrySettings()
    let queue: QueueSettings
    init(id: ComponentID, queue: QueueSettings) {
        self.id = id
        self.queue = queue
    }
    func start() async throws {}
    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome { .delivered }
    func shutdown() async {}
}
