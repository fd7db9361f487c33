import SluiceCore

/// `batch`: in Sluice its settings shape exporter payloads as they are read from
/// the pipeline log; the processor itself passes batches through untouched, so
/// acknowledged data is never held in a batcher's memory only (docs/architecture.md).
public struct BatchProcessorFactory: ProcessorFactory {
    public let type = "batch"
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Processor)? {
        let before = config.diagnostics.all.count
        var shape = BatchShape()
        if let size = config.int("send_batch_size", min: 0) { shape.sendBatchSize = max(1, size) }
        if let timeout = config.duration("timeout") { shape.timeout = timeout }
        if let max = config.int("send_batch_max_size", min: 0) { shape.sendBatchMaxSize = max }
        if shape.sendBatchMaxSize > 0, shape.sendBatchMaxSize < shape.sendBatchSize {
            config.report("send_batch_max_size", "must be at least send_batch_size (\(shape.sendBatchSize)), or 0 for no limit")
        }
        if let keys = config.stringList("metadata_keys"), !keys.isEmpty {
            config.warn("metadata_keys", "has no effect in Sluice: batches are not split by client metadata (\(keys.joined(separator: ", "))); every client's records share the pipeline's batches")
        }
        config.keysWithoutEffect([("metadata_cardinality_limit", "batches are not split by client metadata")])
        config.finish()
        guard config.diagnostics.all.count == before else { return nil }
        return BatchProcessor(id: id, shape: shape)
    }
}

struct BatchProcessor: Processor {
    let id: ComponentID
    let shape: BatchShape
    var batchShape: BatchShape? { shape }
    func process(_ batch: OTLPBatch) -> ProcessOutcome { .pass(dropped: 0) }
}
