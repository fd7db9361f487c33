import Foundation
import Logging
import SluiceCore
import SluiceNet
import Synchronization

/// `integrity` (Sluice's own; the Collector has no such processor): seals each log
/// record with `integrity_hash`, a SHA-256 (or, with `key`, HMAC-SHA-256) over the
/// record's canonical form (IntegrityCanonicalForm.swift), and with `chain: true`
/// links the records of a stream into a hash chain (`integrity_stream`,
/// `integrity_seq`, `integrity_prev`), so `sluice verify` can prove that nothing
/// was removed or altered between Sluice and the SIEM. docs/processors.md has the
/// details.
public struct IntegrityProcessorFactory: ProcessorFactory {
    public let type = "integrity"
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Processor)? {
        let before = config.diagnostics.all.count
        let chain = config.bool("chain") ?? false
        let key = config.string("key")
        if let key, key.isEmpty { config.report("key", "is empty: set a secret (e.g. ${env:SLUICE_INTEGRITY_KEY}) or remove the key for plain SHA-256") }
        let stream = config.string("stream")
        if !chain, stream != nil { config.warn("stream", "has no effect without chain: true") }
        config.finish()
        guard config.diagnostics.all.count == before else { return nil }
        let host = ProcessInfo.processInfo.hostName
        let streamName = stream ?? "\(host)/\(id)"
        return IntegrityProcessor(id: id, chain: chain, key: key.map { Array($0.utf8) }, stream: streamName,
                                  logger: context.logger, metrics: context.metrics)
    }
}

final class IntegrityProcessor: AppendOrderedProcessor {
    let id: ComponentID
    let chain: Bool
    let key: [UInt8]?
    /// `<stream>#<start time in ns>`: each start of the process begins a new chain,
    /// so a restart is not mistaken for removed records.
    let streamID: String
    let logger: Logger
    private let sealed: Counter

    struct ChainState {
        var seq: Int64 = 0
        var previous: String = IntegrityProcessor.genesis
        var encoder = IntegrityCanonicalForm()
        var warnedSignal = false
    }
    private let state = Mutex(ChainState())

    /// What the first record of a chain links to.
    static let genesis = "sha256:" + String(repeating: "0", count: 64)

    init(id: ComponentID, chain: Bool, key: [UInt8]?, stream: String, logger: Logger, metrics: MetricsRegistry) {
        self.id = id
        self.chain = chain
        self.key = key
        let start = UInt64(max(0, Date().timeIntervalSince1970 * 1_000_000_000))
        streamID = "\(stream)#\(start)"
        self.logger = logger
        sealed = metrics.counter("sluice_processor_integrity_sealed_log_records_total", "Log records given an integrity hash.",
                                 labels: [("processor", id.description)])
        if chain { logger.info("integrity chain started", metadata: ["processor": "\(id)", "stream": "\(streamID)"]) }
    }

    /// The work happens in `seal`, after every other processor of the pipeline.
    func process(_ batch: OTLPBatch) -> ProcessOutcome { .pass(dropped: 0) }

    func seal(_ batch: OTLPBatch, append: () -> Bool) -> Bool? {
        state.withLock { state -> Bool? in
            guard batch.signal == .logs else {
                if !state.warnedSignal {
                    state.warnedSignal = true
                    logger.warning("integrity seals log records only; \(batch.signal) pass unsealed", metadata: ["processor": "\(id)"])
                }
                return append()
            }
            let saved = (state.seq, state.previous)
            var count = 0
            do {
                try batch.edit { editor in
                    try editor.forEachLogRecord { record in
                        let attributes = record.attributes
                        if chain {
                            state.seq += 1
                            try attributes.upsert("integrity_stream", .text(streamID))
                            try attributes.upsert("integrity_seq", .int(state.seq))
                            try attributes.upsert("integrity_prev", .text(state.previous))
                        }
                        let canonical = state.encoder.encode(record.view, resource: record.resource)
                        let hash = Self.hash(canonical, key: key)
                        try attributes.upsert(IntegrityCanonicalForm.hashKey, .text(hash))
                        state.previous = hash
                        count += 1
                    }
                }
            } catch {
                (state.seq, state.previous) = saved
                return nil
            }
            guard append() else {
                (state.seq, state.previous) = saved
                return false
            }
            sealed.add(count)
            return true
        }
    }

    /// `sha256:<hex>`, or `hmac-sha256:<hex>` under `key`.
    static func hash(_ canonical: [UInt8], key: [UInt8]?) -> String {
        if let key { return "hmac-sha256:" + Digest.hex(Digest.hmacSHA256(key: key, canonical)) }
        return "sha256:" + Digest.hex(Digest.sha256(canonical))
    }
}
