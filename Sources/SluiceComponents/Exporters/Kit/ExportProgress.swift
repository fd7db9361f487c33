import Synchronization
import SluiceCore

/// What one export call has done with its records, kept when the call ends in
/// `.retryable` so the retry (the same batches again) sends only the rest: nothing
/// delivered is sent twice, nothing refused is tried again.
struct ExportProgress: Sendable {
    /// Held weakly: once the batches are gone from the pipeline log, this is stale.
    private struct WeakBatch: @unchecked Sendable {
        // @unchecked: a weak reference to an immutable, Sendable batch.
        weak var batch: OTLPBatch?
    }

    private var batches: [WeakBatch]
    private(set) var delivered: [Bool]
    /// Refused records and why.
    private(set) var refused: [Int: String] = [:]

    init(_ batches: [OTLPBatch], records: Int) {
        self.batches = batches.map { WeakBatch(batch: $0) }
        delivered = Array(repeating: false, count: records)
    }

    func matches(_ other: [OTLPBatch], records: Int) -> Bool {
        delivered.count == records && batches.count == other.count && zip(batches, other).allSatisfy { $0.batch === $1 }
    }

    var isStale: Bool { batches.contains { $0.batch == nil } }
    /// Whether anything was done that a retry must not redo.
    var hasWork: Bool { !refused.isEmpty || delivered.contains(true) }

    func isOpen(_ record: Int) -> Bool { !delivered[record] && refused[record] == nil }
    /// The records neither delivered nor refused, in order.
    var open: [Int] { (0..<delivered.count).filter { isOpen($0) } }

    mutating func deliver(_ records: [Int]) { for record in records { delivered[record] = true } }

    mutating func refuse(_ record: Int, _ reason: String) {
        if refused[record] == nil, !delivered[record] { refused[record] = reason }
    }
}

/// The progress of calls that ended in a retry, until the retry comes: pipelines
/// retry one group at a time, so a handful covers every pipeline of an exporter.
final class ProgressMemory: Sendable {
    private let kept = Mutex<[ExportProgress]>([])

    init() {}

    /// The progress of an earlier attempt at these very batches, or a fresh one.
    func take(_ batches: [OTLPBatch], records: Int) -> ExportProgress {
        kept.withLock { list in
            list.removeAll { $0.isStale }
            if let i = list.firstIndex(where: { $0.matches(batches, records: records) }) { return list.remove(at: i) }
            return ExportProgress(batches, records: records)
        }
    }

    func keep(_ progress: ExportProgress) {
        guard progress.hasWork else { return }
        kept.withLock { list in
            list.append(progress)
            if list.count > 16 { list.removeFirst(list.count - 16) }
        }
    }
}
