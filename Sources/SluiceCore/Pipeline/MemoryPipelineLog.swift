import Foundation
import Synchronization

/// The pipeline log in memory: the decoded batches themselves, no copies. A 2xx from
/// a receiver means the data is queued here; it survives anything but the process
/// ending (the disk log is for that).
public final class MemoryPipelineLog: PipelineLog {
    public let name: String
    public let limitBytes: Int
    /// `sending_queue` with `sizer: requests` or `items`: a bound on entries or
    /// items held, on top of the byte limit (which always applies).
    public let limitEntries: Int?
    public let limitItems: Int?

    private struct Reader {
        var committed: UInt64 = 0      // last delivered sequence
        var readPosition: UInt64 = 0   // last handed-out sequence
        var waiter: CheckedContinuation<Void, Never>?
    }

    private struct State {
        var entries: [LogEntry] = []
        var head = 0                    // index of the first live entry in `entries`
        var nextSequence: UInt64 = 1
        var usedBytes = 0
        var usedItems = 0
        var readers: [ComponentID: Reader] = [:]
        var closed = false
        var appendedAt: [UInt64: Double] = [:]

        /// Drops entries every reader has committed. At once: each holds its batch's
        /// arena, and the memory must go back when the data is delivered, not later.
        mutating func release(through floor: UInt64) {
            while head < entries.count, entries[head].sequence <= floor {
                usedBytes -= entries[head].bytes
                usedItems -= entries[head].items
                appendedAt[entries[head].sequence] = nil
                head += 1
            }
            if head > 0 {
                entries.removeFirst(head)
                head = 0
            }
        }
    }

    private let state = Mutex(State())

    public init(name: String, limitBytes: Int, limitEntries: Int? = nil, limitItems: Int? = nil) {
        self.name = name
        self.limitBytes = limitBytes
        self.limitEntries = limitEntries
        self.limitItems = limitItems
    }

    /// Whether an entry of this size fits. One request larger than the whole log is
    /// still taken when the log is empty: refusing it forever would make the client
    /// retry forever.
    private func fits(bytes: Int, items: Int, _ s: State) -> Bool {
        let held = s.entries.count - s.head
        guard held > 0 else { return true }
        if let limitEntries, held >= limitEntries { return false }
        if let limitItems, s.usedItems + items > limitItems { return false }
        return s.usedBytes + bytes <= limitBytes
    }

    public var usedBytes: Int { state.withLock { $0.usedBytes } }

    public var isClosed: Bool { state.withLock { $0.closed } }

    public func hasRoom(for bytes: Int) -> Bool {
        state.withLock { !$0.closed && fits(bytes: bytes, items: 0, $0) }
    }

    public func append(_ batch: OTLPBatch, items: Int, bytes: Int) -> AppendResult {
        let (result, waiters) = state.withLock { s -> (AppendResult, [CheckedContinuation<Void, Never>]) in
            guard !s.closed, fits(bytes: bytes, items: items, s) else { return (.full, []) }
            let sequence = s.nextSequence
            s.nextSequence += 1
            s.entries.append(LogEntry(sequence: sequence, batch: batch, items: items, bytes: bytes))
            s.usedBytes += bytes
            s.usedItems += items
            s.appendedAt[sequence] = Date().timeIntervalSince1970
            var waiters: [CheckedContinuation<Void, Never>] = []
            for key in s.readers.keys {
                if let waiter = s.readers[key]!.waiter {
                    waiters.append(waiter)
                    s.readers[key]!.waiter = nil
                }
            }
            return (.appended(sequence: sequence), waiters)
        }
        for waiter in waiters { waiter.resume() }
        return result
    }

    public func whenDurable(_ sequence: UInt64, _ callback: @escaping @Sendable (Bool) -> Void) { callback(true) }

    public func cursor(_ reader: ComponentID) -> any LogCursor {
        state.withLock { s in
            if s.readers[reader] == nil {
                let start = s.nextSequence - 1
                s.readers[reader] = Reader(committed: start, readPosition: start)
            }
        }
        return MemoryLogCursor(log: self, reader: reader)
    }

    public func lag(_ reader: ComponentID) -> CursorLag {
        state.withLock { s in
            guard let r = s.readers[reader] else { return CursorLag(entries: 0, items: 0, bytes: 0, oldestAgeSeconds: 0) }
            var lag = CursorLag(entries: 0, items: 0, bytes: 0, oldestAgeSeconds: 0)
            for entry in s.entries[s.head...] where entry.sequence > r.committed {
                if lag.entries == 0, let at = s.appendedAt[entry.sequence] {
                    lag.oldestAgeSeconds = max(0, Date().timeIntervalSince1970 - at)
                }
                lag.entries += 1
                lag.items += entry.items
                lag.bytes += entry.bytes
            }
            return lag
        }
    }

    public var lastSequence: UInt64 { state.withLock { $0.nextSequence - 1 } }

    public func detach(_ reader: ComponentID) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard let removed = s.readers.removeValue(forKey: reader) else { return nil }
            s.release(through: s.readers.values.map(\.committed).min() ?? s.nextSequence - 1)
            return removed.waiter
        }
        waiter?.resume()
    }

    public func close() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.closed = true
            var waiters: [CheckedContinuation<Void, Never>] = []
            for key in s.readers.keys {
                if let waiter = s.readers[key]!.waiter { waiters.append(waiter) }
                s.readers[key]!.waiter = nil
            }
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Cursor operations

    fileprivate func available(_ reader: ComponentID) -> LogAvailability {
        state.withLock { s in
            guard let position = s.readers[reader]?.readPosition else { return .closedAndDrained }
            var items = 0
            var any = false
            for entry in s.entries[s.head...] where entry.sequence > position {
                items += entry.items
                any = true
            }
            if any { return .entries(items: items) }
            return s.closed ? .closedAndDrained : .nothing
        }
    }

    fileprivate func waitForAppend(_ reader: ComponentID) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    // Checked under the lock: a cancel that came before the waiter was
                    // stored finds nothing to resume, so it must be seen here.
                    guard !Task.isCancelled, !s.closed, let position = s.readers[reader]?.readPosition else { return true }
                    if s.entries[s.head...].contains(where: { $0.sequence > position }) { return true }
                    s.readers[reader]?.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { s in
                defer { s.readers[reader]?.waiter = nil }
                return s.readers[reader]?.waiter
            }?.resume()
        }
    }

    fileprivate func take(_ reader: ComponentID, maxItems: Int) -> [LogEntry] {
        state.withLock { s in
            guard let position = s.readers[reader]?.readPosition else { return [] }
            var taken: [LogEntry] = []
            var items = 0
            for entry in s.entries[s.head...] where entry.sequence > position {
                if !taken.isEmpty, maxItems > 0, items + entry.items > maxItems { break }
                taken.append(entry)
                items += entry.items
            }
            if let last = taken.last { s.readers[reader]?.readPosition = last.sequence }
            return taken
        }
    }

    fileprivate func commit(_ reader: ComponentID, through sequence: UInt64) {
        state.withLock { s in
            guard var r = s.readers[reader] else { return }
            r.committed = max(r.committed, sequence)
            r.readPosition = max(r.readPosition, r.committed)
            s.readers[reader] = r
            s.release(through: s.readers.values.map(\.committed).min() ?? sequence)
        }
    }

    fileprivate func rewind(_ reader: ComponentID) {
        state.withLock { s in
            if let committed = s.readers[reader]?.committed { s.readers[reader]?.readPosition = committed }
        }
    }
}

struct MemoryLogCursor: LogCursor {
    let log: MemoryPipelineLog
    let reader: ComponentID

    func read(_ shape: BatchShape) async -> [LogEntry] {
        await readShaped(shape, available: { log.available(reader) }, waitForAppend: { await log.waitForAppend(reader) },
                         take: { log.take(reader, maxItems: shape.sendBatchMaxSize) })
    }

    func commit(through sequence: UInt64) { log.commit(reader, through: sequence) }
    func rewind() { log.rewind(reader) }
}
