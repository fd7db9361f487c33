import SluiceCore
import Synchronization

/// One pipeline as a receiver sees it: its processors, its log, and the
/// connectors it feeds with the pipelines behind them.
struct PipelineRoute: Sendable {
    let name: String
    let processors: [any Processor]
    /// `nil` for a pipeline without exporters of its own: it only feeds connectors.
    let log: (any PipelineLog)?
    let connectors: [ConnectorRoute]
    /// The processors that seal batches as they enter the log (`integrity`).
    let sealers: [any AppendOrderedProcessor]

    init(name: String, processors: [any Processor], log: (any PipelineLog)?, connectors: [ConnectorRoute] = []) {
        self.name = name
        self.processors = processors
        self.log = log
        self.connectors = connectors
        sealers = processors.compactMap { $0 as? any AppendOrderedProcessor }
        reachableLogs = (log.map { [$0] } ?? []) + connectors.flatMap { $0.targets.values.flatMap(\.reachableLogs) }
    }

    /// Every log a batch entering this pipeline may reach (checked for room on every
    /// request, so gathered once).
    let reachableLogs: [any PipelineLog]

    /// Appends `batch` to the log through the sealers (each holding its order while
    /// the ones after it and the append run); nil when a sealer ran out of memory.
    func append(_ batch: OTLPBatch, sealers: ArraySlice<any AppendOrderedProcessor>) -> AppendResult? {
        guard let log else { return .full }
        guard let sealer = sealers.first else { return log.append(batch, items: batch.itemCount, bytes: batch.memoryBytes) }
        var result: AppendResult? = .full
        let sealed = sealer.seal(batch, pipeline: name) {
            result = append(batch, sealers: sealers.dropFirst())
            if case .appended = result { return true }
            return false
        }
        return sealed == nil ? nil : result
    }
}

/// A connector a pipeline exports to, with the pipelines it may send to.
struct ConnectorRoute: Sendable {
    let connector: any Connector
    let targets: [ComponentID: PipelineRoute]
}

/// The `ReceiverSink` of one receiver: every pipeline that takes a signal from it.
///
/// A request goes to all of them or to none: room is checked in every log it may
/// reach and every processor and connector runs before anything is appended, so a
/// client told to retry has not left a copy in some pipelines already. Each
/// pipeline after the first gets its own copy of the batch, because processors
/// edit batches in place; a connector's pieces go through their pipelines'
/// processors into their logs the same way, and the client is answered once every
/// log that took a piece has it.
struct PipelineFanout: ReceiverSink {
    let routes: [OTLPSignal: [PipelineRoute]]
    let refusedFull: Counter
    /// A receiver started by a reload that has not committed yet: it says it takes
    /// every signal and answers 503 with a short Retry-After until its pipelines are
    /// wired (a 404 would tell a client to give up).
    var wiring = false

    func takes(_ signal: OTLPSignal) -> Bool { wiring || !(routes[signal]?.isEmpty ?? true) }

    func refusalBeforeDecoding(_ signal: OTLPSignal, bodyBytes: Int) -> AcceptResult? {
        // Both logs keep requests as protobuf (the memory log holds decoded batches
        // only within a budget it sheds first), so the body is what a log must find
        // room for.
        for pipeline in routes[signal] ?? [] {
            for log in pipeline.reachableLogs where !log.hasRoom(for: bodyBytes) { return refusal(log) }
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
    private func refusal(_ log: any PipelineLog) -> AcceptResult {
        if log.isClosed { return .refused(.shuttingDown, retryAfter: .seconds(1)) }
        refusedFull.increment()
        return .refused(.logFull(pipeline: log.name), retryAfter: .seconds(1))
    }

    /// Runs the processors and connectors and appends; returns what to answer and
    /// where it went.
    private func append(_ batch: OTLPBatch) -> (AcceptResult, [(any PipelineLog, UInt64)]) {
        guard let pipelines = routes[batch.signal], !pipelines.isEmpty else {
            return (.refused(.noPipeline(batch.signal), retryAfter: .seconds(wiring ? 1 : 5)), [])
        }
        // What the logs will keep: the request's protobuf (its size read, not kept;
        // an edited batch's packed size is about an eighth of its decoded size).
        let bytes = batch.protobufSource?.count ?? batch.memoryBytes / 8
        for pipeline in pipelines {
            for log in pipeline.reachableLogs where !log.hasRoom(for: bytes) { return (refusal(log), []) }
        }
        var copies: [OTLPBatch] = [batch]
        for _ in pipelines.dropFirst() {
            guard let copy = try? batch.copy() else { return (.refused(.memoryLimit, retryAfter: .seconds(1)), []) }
            copies.append(copy)
        }
        var staged: [(PipelineRoute, OTLPBatch)] = []
        var dropped = 0
        for (pipeline, copy) in zip(pipelines, copies) {
            switch run(pipeline, copy, into: &staged) {
            case .passed(let lost): dropped = max(dropped, lost)
            case .refused(let refusal): return (refusal, [])
            }
        }
        var appended: [(any PipelineLog, UInt64)] = []
        for (route, piece) in staged {
            // Staged only when the route has a log.
            guard let log = route.log else { continue }
            switch route.append(piece, sealers: route.sealers[...]) {
            case nil:
                return (.refused(.memoryLimit, retryAfter: .seconds(1)), [])
            case .appended(let sequence):
                appended.append((log, sequence))
            case .full:
                // Only reachable when another receiver filled the log between the
                // check and here (or shutdown closed it); earlier logs keep their
                // copy (at-least-once).
                return (refusal(log), [])
            }
        }
        return (.accepted(rejected: dropped, message: dropped > 0 ? "\(dropped) \(batch.signal.itemName) dropped on purpose by the pipeline (filtered, or matching no route)" : nil), appended)
    }

    private enum Passage {
        /// Through, with this many items stored nowhere (dropped on purpose).
        case passed(lost: Int)
        case refused(AcceptResult)
    }

    /// One pipeline: its processors on `batch`, the batch staged for its log, and
    /// each connector's pieces through the pipelines they go to.
    private func run(_ pipeline: PipelineRoute, _ batch: OTLPBatch, into staged: inout [(PipelineRoute, OTLPBatch)]) -> Passage {
        var dropped = 0
        for processor in pipeline.processors {
            switch processor.process(batch) {
            case .pass(let n): dropped += n
            case .refuse(let reason, let after): return .refused(.refused(reason, retryAfter: after))
            }
        }
        if pipeline.log != nil { staged.append((pipeline, batch)) }
        guard !pipeline.connectors.isEmpty else { return .passed(lost: dropped) }
        var lostDownstream = Int.max
        for (i, connection) in pipeline.connectors.enumerated() {
            // Connectors split their input in place: each gets its own copy, except
            // the last when the pipeline keeps none for its log.
            guard let input = i == pipeline.connectors.count - 1 && pipeline.log == nil ? batch : try? batch.copy() else {
                return .refused(.refused(.memoryLimit, retryAfter: .seconds(1)))
            }
            switch connection.connector.route(input) {
            case .refuse(let reason, let after):
                return .refused(.refused(reason, retryAfter: after))
            case .routed(let pieces, let unrouted):
                var lost = unrouted
                for piece in pieces {
                    // A piece sent to several pipelines counts what the one that
                    // dropped most dropped, as the receiver's pipelines do above.
                    var pieceLost = 0
                    for (j, target) in piece.pipelines.enumerated() {
                        guard let route = connection.targets[target] else {
                            // The configuration check makes every target a pipeline
                            // that receives from this connector; if not, say the
                            // piece was not stored rather than lose it silently.
                            pieceLost = max(pieceLost, piece.batch.itemCount)
                            continue
                        }
                        guard let copy = j == piece.pipelines.count - 1 ? piece.batch : try? piece.batch.copy() else {
                            return .refused(.refused(.memoryLimit, retryAfter: .seconds(1)))
                        }
                        switch run(route, copy, into: &staged) {
                        case .passed(let n): pieceLost = max(pieceLost, n)
                        case .refused(let refusal): return .refused(refusal)
                        }
                    }
                    lost += pieceLost
                }
                lostDownstream = min(lostDownstream, lost)
            }
        }
        // What the pipeline's own log stores is not lost, whatever its connectors do.
        return .passed(lost: dropped + (pipeline.log == nil ? lostDownstream : 0))
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
