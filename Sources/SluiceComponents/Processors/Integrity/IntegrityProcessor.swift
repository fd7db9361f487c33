import Foundation
import Logging
import NIOConcurrencyHelpers
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
        var previous: [UInt8] = Array(IntegrityProcessor.genesis.utf8)
        /// Where the head is kept between runs (nil: no continuity, said at start).
        var store: IntegrityChainStore?
        /// The last run's head, linked from this run's first record.
        var link: IntegrityChainStore.Head?
    }
    struct State {
        var chains: [String: ChainState] = [:]
        var warnedSignal = false
    }
    /// Held from a request's first link to its append, so the log holds the chain
    /// in order. A sleeping lock: the append packs the request, which takes long
    /// enough that a spinning waiter (the kernel's priority-inheritance mutex behind
    /// `Mutex`) would burn the other core for nothing.
    private let state = NIOLockedValueBox(State())

    /// Working memory of one request's sealing (one per request being sealed at
    /// the same time), kept for reuse. A class, so that the record loops' closures
    /// reach its buffers without copying them record after record. Unchecked: the
    /// encoder's pointers into a batch live only within one `encodeInPlace`, and a
    /// scratch is in the pool or with one request, never both.
    final class Scratch: @unchecked Sendable {
        var encoder = IntegrityCanonicalForm()
        /// With `chain`: each record's content digest, 32 bytes after 32 bytes.
        var contents: [UInt8] = []
        var hash: [UInt8] = []
        var linkForm = JSONOutput()
        let hasher = SHA256Hasher()
    }
    private let scratchPool = Mutex<[Scratch]>([])

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
        guard batch.signal == .logs else {
            let warn = state.withLockedValue { state in
                defer { state.warnedSignal = true }
                return !state.warnedSignal
            }
            if warn { logger.warning("integrity seals log records only; \(batch.signal) pass unsealed", metadata: ["processor": "\(id)"]) }
            return append()
        }
        let scratch = scratchPool.withLock { $0.popLast() } ?? Scratch()
        defer {
            scratch.contents.removeAll(keepingCapacity: true)
            scratchPool.withLock { $0.append(scratch) }
        }
        // First, request by request at the same time: each record's canonical form
        // and its hash; with `chain`, the seal attributes as placeholders for the link.
        var count = 0
        let streamID = streamID(pipeline: pipeline)
        // The chain's seal attributes, last in each record; the link fills in all but the stream.
        let placeholders: [(key: StaticString, value: OTLPValue)] = chain
            ? [("integrity_stream", .text(streamID)), ("integrity_seq", .int(0)), ("integrity_prev", .empty), ("integrity_hash", .empty)]
            : [("integrity_hash", .empty)]
        do {
            try batch.edit { editor in
                try editor.forEachLogRecord { record in
                    let attributes = record.attributes
                    // A record sealed before (it passed another Sluice) is sealed anew.
                    if attributes.view.contains(where: { Self.isSealAttribute($0.key.utf8) }) {
                        attributes.removeAll { Self.isSealAttribute($0.key.utf8) }
                    }
                    scratch.encoder.encodeInPlace(record.view, resource: record.resource)
                    if chain {
                        let at = scratch.contents.count
                        scratch.contents.append(contentsOf: Self.zeroDigest)
                        scratch.contents.withUnsafeMutableBufferPointer {
                            scratch.hasher.digest(scratch.encoder.canonicalBytes, into: $0.baseAddress! + at)
                        }
                        try attributes.append(placeholders)
                    } else {
                        IntegrityCanonicalForm.hash(scratch.encoder.canonicalBytes, key: key, using: scratch.hasher, into: &scratch.hash)
                        try attributes.append(placeholders)
                        try scratch.hash.withUnsafeBufferPointer { hash throws(OTLPEditError) in
                            try attributes.value(at: attributes.count - 1).setString(hash)
                        }
                    }
                    count += 1
                }
            }
        } catch {
            return nil
        }
        guard chain else {
            guard append() else { return false }
            sealed.add(count)
            return true
        }
        // Then in order: each record's link to the one before it, and the append.
        return state.withLockedValue { state -> Bool? in
            let isNew = state.chains[pipeline] == nil
            var chainState = state.chains[pipeline] ?? openChain(pipeline)
            let initial = chainState
            var link = IntegrityCanonicalForm.ChainLink(stream: Array(streamID.utf8), seq: chainState.seq, prev: [])
            swap(&link.prev, &chainState.previous)
            var index = 0
            do {
                try batch.edit { editor in
                    try editor.forEachLogRecord { record in
                        let attributes = record.attributes
                        link.seq += 1
                        let last = attributes.count - 1
                        // The placeholders' order: `placeholders`.
                        try attributes.value(at: last - 2).setInt(link.seq)
                        try link.prev.withUnsafeBufferPointer { prev throws(OTLPEditError) in
                            try attributes.value(at: last - 1).setString(prev)
                        }
                        if link.seq == 1, let head = chainState.link {
                            link.previousRun = (Array(head.stream.utf8), head.seq)
                            try attributes.append([("integrity_prev_stream", .text(head.stream)), ("integrity_prev_seq", .int(head.seq))])
                        } else {
                            link.previousRun = nil
                        }
                        scratch.contents.withUnsafeBufferPointer { contents in
                            IntegrityCanonicalForm.writeLink(content: UnsafeBufferPointer(rebasing: contents[index * 32..<(index + 1) * 32]), link,
                                                             into: &scratch.linkForm)
                        }
                        // `link.prev` becomes this record's hash (in place: no copy).
                        scratch.linkForm.bytes.withUnsafeBytes { IntegrityCanonicalForm.hash($0, key: key, using: scratch.hasher, into: &link.prev) }
                        try link.prev.withUnsafeBufferPointer { hash throws(OTLPEditError) in
                            try attributes.value(at: last).setString(hash)
                        }
                        index += 1
                    }
                }
            } catch {
                if isNew { state.chains[pipeline] = initial }
                return nil
            }
            chainState.seq = link.seq
            chainState.previous = link.prev
            // Only an appended batch moves the chain on: a refused one's numbers go
            // to the retry.
            guard append() else {
                // Keep the opened store (and the link) for the retry.
                if isNew { state.chains[pipeline] = initial }
                return false
            }
            if let store = chainState.store {
                do {
                    try store.write(IntegrityChainStore.Head(stream: streamID, seq: chainState.seq, hash: String(decoding: chainState.previous, as: UTF8.self)))
                } catch {
                    logger.warning("cannot save the integrity chain's head; after a restart the chain will not link to this run",
                                   metadata: ["processor": "\(id)", "error": "\(error)"])
                    chainState.store = nil
                }
            }
            state.chains[pipeline] = chainState
            if isNew {
                var metadata: Logger.Metadata = ["processor": "\(id)", "pipeline": "\(pipeline)", "stream": "\(streamID)"]
                if let head = initial.link { metadata["continues"] = "\(head.stream) seq \(head.seq)" }
                logger.info("integrity chain started", metadata: metadata)
            }
            sealed.add(count)
            return true
        }
    }

    private static let zeroDigest = [UInt8](repeating: 0, count: 32)

    /// A new chain for `pipeline`, continuing the last run's when its head was kept.
    private func openChain(_ pipeline: String) -> ChainState {
        guard let storageDirectory else { return ChainState() }
        switch IntegrityChainStore.open(directory: storageDirectory, processor: id, pipeline: pipeline) {
        case .success(let store):
            let head = store.read()
            return ChainState(previous: Array((head?.hash ?? Self.genesis).utf8), store: store, link: head)
        case .failure(let error):
            logger.warning("cannot keep the integrity chain's head between runs; a restart will begin an unlinked chain",
                           metadata: ["processor": "\(id)", "error": "\(error)"])
            return ChainState()
        }
    }

    func shutdown() async {
        state.withLockedValue { state in
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
