import SluiceCore
import Synchronization

/// One pipeline as a receiver sees it: its processors and its log.
struct PipelineRoute: Sendable {
    let name: String
    let processors: [any Processor]
    let log: any PipelineLog
    /// The processors that seal batches as they enter the log (`integrity`).
    let sealers: [any AppendOrderedProcessor]

    init(name: String, processors: [any Processor], log: any PipelineLog) {
        self.name = name
        self.processors = processors
        self.log = log
        sealers = processors.compactMap { $0 as? any AppendOrderedProcessor }
    }

    /// Appends `batch` through the sealers (each holding its order while the ones
    /// after it and the append run); nil when a sealer ran out of memory.
    func append(_ batch: OTLPBatch, sealers: ArraySlice<any AppendOrderedProcessor>) -> AppendResult? {
        guard let sealer = sealers.first else { return log.append(batch, items: batch.itemCount, bytes: batch.memoryBytes) }
        var result: AppendResult? = .full
        let sealed = sealer.seal(batch) {
            result = append(batch, sealers: sealers.dropFirst())
            if case .appended = result { return true }
            return false
        }
        return sealed == nil ? nil : result
    }
}

/// The `ReceiverSink` of one receiver: every pipeline that takes a signal from it.
///
/// A request goes to all of them or to none: room is checked in every log and
/// every processor runs before anything is appended, so a client told to retry has
/// not left a copy in some pipelines already. Each pipeline after the first gets
/// its own copy of the batch, because processors edit batches in place.
struct PipelineFanout: ReceiverSink {
    let routes: [OTLPSignal: [PipelineRoute]]
    let refusedFull: Counter
    /// A receiver started by a reload that has not committed yet: it says it takes
    /// every signal and answers 503 with a short Retry-After until its pipelines are
    /// wired (a 404 would tell a client to give up).
    var wiring = false

    func takes(_ signal: OTLPSignal) -> Bool { wiring || !(routes[signal]?.isEmpty ?? true) }

    func refusalBeforeDecoding(_ signal: OTLPSignal, bodyBytes: Int) -> AcceptResult? {
        // A decoded batch takes about eight times its wire size (OTLPBatch's arena).
        for pipeline in routes[signal] ?? [] where !pipeline.log.hasRoom(for: bodyBytes * 8) {
            return refusal(pipeline)
        }
        return nil
    }

    func accept(_ batch: OTLPBatch, completion: @escaping @Sendable (AcceptResult) -> Void) {
        let (result, appended) = append(batch)
        guard case .accepted = result, !appended.isEmpty else { return completion(result) }
        // Answer when every log has made its copy durable; if any could not, the
        // client retries (the logs that did keep theirs: at-least-once).
        let waiting = AtomicCountdown(appended.count)
        for (log, sequence) in appended {
            log.whenDurable(sequence) { stored in
                if !stored { waiting.fail() }
                if waiting.arrive() {
                    completion(waiting.failed ? .refused(.storageUnavailable(pipeline: log.name), retryAfter: .seconds(5)) : result)
                }
            }
        }
    }

    /// Why a log without room refuses: it is full (429, RESOURCE_EXHAUSTED), or
    /// closed because the service is stopping (503, UNAVAILABLE).
    private func refusal(_ pipeline: PipelineRoute) -> AcceptResult {
        if pipeline.log.isClosed { return .refused(.shuttingDown, retryAfter: .seconds(1)) }
        refusedFull.increment()
        return .refused(.logFull(pipeline: pipeline.name), retryAfter: .seconds(1))
    }

    /// Runs the processors and appends; returns what to answer and where it went.
    private func append(_ batch: OTLPBatch) -> (AcceptResult, [(any PipelineLog, UInt64)]) {
        guard let pipelines = routes[batch.signal], !pipelines.isEmpty else {
            return (.refused(.noPipeline(batch.signal), retryAfter: .seconds(wiring ? 1 : 5)), [])
        }
        let bytes = batch.memoryBytes
        for pipeline in pipelines where !pipeline.log.hasRoom(for: bytes) {
            return (refusal(pipeline), [])
        }
        var copies: [OTLPBatch] = [batch]
        for _ in pipelines.dropFirst() {
            guard let copy = try? batch.copy() else { return (.refused(.memoryLimit, retryAfter: .seconds(1)), []) }
            copies.append(copy)
        }
        var dropped = 0
        for (pipeline, copy) in zip(pipelines, copies) {
            var droppedHere = 0
            for processor in pipeline.processors {
                switch processor.process(copy) {
                case .pass(let n): droppedHere += n
                case .refuse(let reason, let after): return (.refused(reason, retryAfter: after), [])
                }
            }
            dropped = max(dropped, droppedHere)
        }
        var appended: [(any PipelineLog, UInt64)] = []
        for (pipeline, copy) in zip(pipelines, copies) {
            switch pipeline.append(copy, sealers: pipeline.sealers[...]) {
            case nil:
                return (.refused(.memoryLimit, retryAfter: .seconds(1)), [])
            case .appended(let sequence):
                appended.append((pipeline.log, sequence))
            case .full:
                // Only reachable when another receiver filled the log between the
                // check and here (or shutdown closed it); earlier pipelines keep
                // their copy (at-least-once).
                return (refusal(pipeline), [])
            }
        }
        return (.accepted(rejected: dropped, message: dropped > 0 ? "\(dropped) \(batch.signal.itemName) dropped by processors" : nil), appended)
    }
}

/// The sink a receiver is started with. A reload swaps the fanout behind it, so a
/// receiver whose configuration did not change keeps its port and its connections
/// and delivers into the new pipelines from the next request on. A request already
/// inside `accept` finishes against the fanout (and logs) it started with.
final class ReceiverSinkSlot: ReceiverSink {
    private let current: Mutex<PipelineFanout>

    init(_ fanout: PipelineFanout) { current = Mutex(fanout) }

    var fanout: PipelineFanout { current.withLock { $0 } }
    func swap(_ fanout: PipelineFanout) { current.withLock { $0 = fanout } }

    func takes(_ signal: OTLPSignal) -> Bool { fanout.takes(signal) }
    func refusalBeforeDecoding(_ signal: OTLPSignal, bodyBytes: Int) -> AcceptResult? { fanout.refusalBeforeDecoding(signal, bodyBytes: bodyBytes) }
    func accept(_ batch: OTLPBatch, completion: @escaping @Sendable (AcceptResult) -> Void) { fanout.accept(batch, completion: completion) }
}

/// Counts the logs still to confirm a request; the last one to arrive answers.
final class AtomicCountdown: Sendable {
    private let remaining: Atomic<Int>
    private let anyFailed = Atomic<Bool>(false)

    init(_ count: Int) { remaining = Atomic(count) }

    func fail() { anyFailed.store(true, ordering: .sequentiallyConsistent) }
    var failed: Bool { anyFailed.load(ordering: .sequentiallyConsistent) }

    /// True for the last arrival.
    func arrive() -> Bool { remaining.subtract(1, ordering: .sequentiallyConsistent).newValue == 0 }
}
