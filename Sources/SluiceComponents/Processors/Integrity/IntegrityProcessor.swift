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
        let directory = config.string("storage_directory") ?? context.dataDirectory + "/integrity"
        if !chain, config.has("storage_directory") { config.warn("storage_directory", "has no effect without chain: true") }
        config.finish()
        guard config.diagnostics.all.count == before else { return nil }
        let host = ProcessInfo.processInfo.hostName
        let streamName = stream ?? "\(host)/\(id)"
        return IntegrityProcessor(id: id, chain: chain, key: key.map { Array($0.utf8) }, stream: streamName,
                                  storageDirectory: chain ? directory : nil, logger: context.logger, metrics: context.metrics)
    }
}

final class IntegrityProcessor: AppendOrderedProcessor {
    let id: ComponentID
    let chain: Bool
    let key: [UInt8]?
    /// `<stream>`, then `/<pipeline>` and `#<start time in ns>` per chain: each
    /// start of the process begins a new chain, so a restart is not mistaken for
    /// removed records.
    let stream: String
    let startNanos: UInt64
    let logger: Logger
    private let sealed: Counter

    /// One chain per pipeline the processor is listed in.
    struct ChainState {
        var seq: Int64 = 0
        var previous: String = IntegrityProcessor.genesis
        /// Where the head is kept between runs (nil: no continuity, said at start).
        var store: IntegrityChainStore?
        /// The last run's head, linked from this run's first record.
        var link: IntegrityChainStore.Head?
    }
    struct State {
        var chains: [String: ChainState] = [:]
        var encoder = IntegrityCanonicalForm()
        var warnedSignal = false
    }
    private let state = Mutex(State())

    /// What the first record of a chain links to.
    static let genesis = "sha256:" + String(repeating: "0", count: 64)

    let storageDirectory: String?

    init(id: ComponentID, chain: Bool, key: [UInt8]?, stream: String, storageDirectory: String? = nil, logger: Logger, metrics: MetricsRegistry) {
        self.storageDirectory = storageDirectory
        self.id = id
        self.chain = chain
        self.key = key
        startNanos = UInt64(max(0, Date().timeIntervalSince1970 * 1_000_000_000))
        self.stream = stream
        self.logger = logger
        sealed = metrics.counter("sluice_processor_integrity_sealed_log_records_total", "Log records given an integrity hash.",
                                 labels: [("processor", id.description)])
    }

    func streamID(pipeline: String) -> String { "\(stream)/\(pipeline)#\(startNanos)" }

    /// The work happens in `seal`, after every other processor of the pipeline.
    func process(_ batch: OTLPBatch) -> ProcessOutcome { .pass(dropped: 0) }

    func seal(_ batch: OTLPBatch, pipeline: String, append: () -> Bool) -> Bool? {
        state.withLock { state -> Bool? in
            guard batch.signal == .logs else {
                if !state.warnedSignal {
                    state.warnedSignal = true
                    logger.warning("integrity seals log records only; \(batch.signal) pass unsealed", metadata: ["processor": "\(id)"])
                }
                return append()
            }
            let isNew = state.chains[pipeline] == nil
            var chainState = state.chains[pipeline] ?? (chain ? openChain(pipeline) : ChainState())
            let initial = chainState
            let link = chainState.seq == 0 ? chainState.link : nil
            let streamID = chain ? streamID(pipeline: pipeline) : ""
            let streamValue = OTLPValue.string(Array(streamID.utf8))
            var previous = Array(chainState.previous.utf8)
            // Reused record after record: the seal attributes of one record.
            var added: [(key: StaticString, value: OTLPValue)] = []
            added.reserveCapacity(6)
            var count = 0
            do {
                try batch.edit { editor in
                    try editor.forEachLogRecord { record in
                        let attributes = record.attributes
                        // A record sealed before (it passed another Sluice) is sealed anew.
                        if attributes.view.contains(where: { Self.isSealAttribute($0.key.utf8) }) {
                            attributes.removeAll { Self.isSealAttribute($0.key.utf8) }
                        }
                        // Every seal attribute in one growth of the list; the hash's
                        // value is filled in once the others are there (the canonical
                        // form leaves integrity_hash out).
                        added.removeAll(keepingCapacity: true)
                        if chain {
                            chainState.seq += 1
                            added.append(("integrity_stream", streamValue))
                            added.append(("integrity_seq", .int(chainState.seq)))
                            added.append(("integrity_prev", .string(previous)))
                            if let link, chainState.seq == 1 {
                                added.append(("integrity_prev_stream", .text(link.stream)))
                                added.append(("integrity_prev_seq", .int(link.seq)))
                            }
                        }
                        added.append(("integrity_hash", .empty))
                        try attributes.append(added)
                        // Let go of `previous` before the hash overwrites it (no copy).
                        added.removeAll(keepingCapacity: true)
                        state.encoder.encodeInPlace(record.view, resource: record.resource)
                        IntegrityCanonicalForm.hash(state.encoder.output.bytes, key: key, into: &previous)
                        try previous.withUnsafeBufferPointer { hash throws(OTLPEditError) in
                            try attributes.value(at: attributes.count - 1).setString(hash)
                        }
                        count += 1
                    }
                }
                chainState.previous = String(decoding: previous, as: UTF8.self)
            } catch {
                return nil
            }
            // Only an appended batch moves the chain on: a refused one's numbers go
            // to the retry.
            guard append() else {
                // Keep the opened store (and the link) for the retry.
                if isNew { state.chains[pipeline] = initial }
                return false
            }
            if chain, let store = chainState.store {
                do {
                    try store.write(IntegrityChainStore.Head(stream: streamID, seq: chainState.seq, hash: chainState.previous))
                } catch {
                    logger.warning("cannot save the integrity chain's head; after a restart the chain will not link to this run",
                                   metadata: ["processor": "\(id)", "error": "\(error)"])
                    chainState.store = nil
                }
            }
            state.chains[pipeline] = chainState
            if chain, isNew {
                var metadata: Logger.Metadata = ["processor": "\(id)", "pipeline": "\(pipeline)", "stream": "\(streamID)"]
                if let link { metadata["continues"] = "\(link.stream) seq \(link.seq)" }
                logger.info("integrity chain started", metadata: metadata)
            }
            sealed.add(count)
            return true
        }
    }

    /// A new chain for `pipeline`, continuing the last run's when its head was kept.
    private func openChain(_ pipeline: String) -> ChainState {
        guard let storageDirectory else { return ChainState() }
        switch IntegrityChainStore.open(directory: storageDirectory, processor: id, pipeline: pipeline) {
        case .success(let store):
            let head = store.read()
            return ChainState(previous: head?.hash ?? Self.genesis, store: store, link: head)
        case .failure(let error):
            logger.warning("cannot keep the integrity chain's head between runs; a restart will begin an unlinked chain",
                           metadata: ["processor": "\(id)", "error": "\(error)"])
            return ChainState()
        }
    }

    func shutdown() async {
        state.withLock { state in
            for chain in state.chains.values { chain.store?.close() }
            state.chains.removeAll()
        }
    }

    /// `integrity_*` attributes a record carries from an earlier seal.
    static func isSealAttribute(_ key: UnsafeBufferPointer<UInt8>) -> Bool {
        let prefix: StaticString = "integrity_"
        return key.count > prefix.utf8CodeUnitCount && memcmp(key.baseAddress!, prefix.utf8Start, prefix.utf8CodeUnitCount) == 0
    }
}
