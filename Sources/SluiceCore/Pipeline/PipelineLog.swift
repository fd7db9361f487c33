/// One appended request in a pipeline log.
public struct LogEntry: Sendable {
    /// Position in the log, increasing from 1.
    public let sequence: UInt64
    public let batch: OTLPBatch
    public let items: Int
    public let bytes: Int
}

public enum AppendResult: Sendable, Equatable {
    case appended(sequence: UInt64)
    /// Over the byte limit: the receiver refuses (429/503) and nothing is lost.
    case full
}

/// How far one exporter is behind.
public struct CursorLag: Sendable, Equatable {
    public var entries: Int
    public var items: Int
    public var bytes: Int
    /// Age of the oldest undelivered entry, in seconds (0 when none).
    public var oldestAgeSeconds: Double

    public init(entries: Int, items: Int, bytes: Int, oldestAgeSeconds: Double) {
        self.entries = entries
        self.items = items
        self.bytes = bytes
        self.oldestAgeSeconds = oldestAgeSeconds
    }
}

/// The append-only log between a pipeline's processors and its exporters
/// (docs/architecture.md). The receiver answers the client after `append`; each exporter reads
/// at its own cursor; an entry goes when every cursor has committed past it.
///
/// `MemoryPipelineLog` keeps the batches themselves; the disk log writes each
/// batch's protobuf once and is the same interface.
public protocol PipelineLog: AnyObject, Sendable {
    var name: String { get }
    /// Appends, or refuses when the byte limit would be passed.
    func append(_ batch: OTLPBatch, items: Int, bytes: Int) -> AppendResult
    /// Calls back once everything up to `sequence` is as durable as the log promises
    /// (true), or could not be stored (false: the entry is gone from the log, and
    /// the client must be told to retry). The memory log calls back at once.
    func whenDurable(_ sequence: UInt64, _ callback: @escaping @Sendable (Bool) -> Void)
    /// Whether `bytes` more would fit now (to check every pipeline before appending
    /// to any).
    func hasRoom(for bytes: Int) -> Bool
    /// Closed for appends (the service is shutting down): receivers say so (503,
    /// UNAVAILABLE) rather than that the log is full.
    var isClosed: Bool { get }
    /// Registers a reader. Every reader sees every entry appended after the log
    /// was created (or, on disk, everything not yet committed by that reader).
    func cursor(_ reader: ComponentID) -> any LogCursor
    func lag(_ reader: ComponentID) -> CursorLag
    /// Unregisters a reader (an exporter a reload took off the pipeline): it holds
    /// no entry back any more, and a read it is waiting in returns empty. On disk its
    /// saved cursor file stays, so the exporter resumes there if it comes back.
    func detach(_ reader: ComponentID)
    /// The newest entry's sequence (0 before the first): how far a reader leaving the
    /// pipeline on a reload still has to deliver.
    var lastSequence: UInt64 { get }
    var usedBytes: Int { get }
    var limitBytes: Int { get }
    /// Wakes readers so they can finish; no more appends are accepted.
    func close()
}

public protocol LogCursor: Sendable {
    /// Waits until at least one entry is past the read position (or the log is
    /// closed, the reader detached, or the task cancelled), then waits up to `shape.timeout` for `shape.sendBatchSize` items, and
    /// returns the entries, at most `shape.sendBatchMaxSize` items when that is set
    /// (always at least one entry). Empty when the log is closed and drained.
    func read(_ shape: BatchShape) async -> [LogEntry]
    /// Everything up to and including `sequence` is delivered (or dead-lettered).
    func commit(through sequence: UInt64)
    /// Puts the read position back to the last commit (after an abandoned attempt).
    func rewind()
}

/// What a reader could take from a log right now.
enum LogAvailability { case entries(items: Int), closedAndDrained, nothing }

/// The read both logs share: wait until something is past the reader's position,
/// give the batch `shape.timeout` to reach `shape.sendBatchSize` (the data is already
/// safe in the log while it waits), then take it.
func readShaped(
    _ shape: BatchShape,
    available: () -> LogAvailability,
    waitForAppend: () async -> Void,
    take: () -> [LogEntry]
) async -> [LogEntry] {
    while true {
        switch available() {
        case .closedAndDrained:
            return []
        case .nothing:
            // A cancelled reader (a reload stopping an idle delivery, the shutdown
            // deadline) gets nothing rather than waiting for the next append.
            if Task.isCancelled { return [] }
            await waitForAppend()
        case .entries(let items):
            if shape.timeout > .zero, items < shape.sendBatchSize {
                // Let the batch fill, checking about when it should be full at the
                // rate items arrive (1–20 ms apart). A fixed long pause lets a busy
                // log run full (429s from a memory log, reads back from disk for a
                // disk log) while the reader sleeps; a fixed short one costs wakeups
                // when traffic is light.
                let start = ContinuousClock.now
                let deadline = start + shape.timeout
                var pause = Duration.milliseconds(5)
                while ContinuousClock.now < deadline {
                    try? await Task.sleep(for: min(pause, deadline - ContinuousClock.now))
                    if Task.isCancelled { break }
                    switch available() {
                    case .closedAndDrained: break
                    case .nothing: continue
                    case .entries(let now):
                        if now >= shape.sendBatchSize { break }
                        let elapsed = ContinuousClock.now - start
                        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                        let perSecond = Double(now - items) / max(1e-6, seconds)
                        let needed = perSecond > 0 ? Double(shape.sendBatchSize - now) / perSecond : 0.02
                        pause = .microseconds(Int64(min(0.02, max(0.001, needed)) * 1e6))
                        continue
                    }
                    break  // full, or closed and drained
                }
            }
            let taken = take()
            if !taken.isEmpty { return taken }
        }
    }
}
