import Foundation
import Synchronization

/// The pipeline log in memory. A 2xx from a receiver means the data is queued here;
/// it survives anything but the process ending (the disk log is for that).
///
/// Each entry holds the request as protobuf (`OTLPBatch.withProtobuf`: the bytes the
/// client sent while no processor changed them, else the edited records packed),
/// the size a backlog really takes, and the newest entries keep their decoded batch
/// too, within `decodedBudgetBytes` and what the protobuf leaves of `limitBytes`: a
/// reader that keeps up gets the batches the receiver decoded, and one that falls
/// behind decodes the oldest again. A decoded
/// batch takes about eight times its protobuf, so holding only those made the
/// default 64 MiB log full at about 25,000 records (issue 20); as protobuf it holds
/// about 170,000 of the benchmark's records.
///
/// `limitBytes` (`sending_queue.queue_size` with the bytes sizer) bounds what is
/// held: every entry's protobuf plus the decoded batches kept. Only the protobuf
/// can make the log full; decoded batches are let go, oldest first, to stay under
/// it.
public final class MemoryPipelineLog: PipelineLog {
    public let name: String
    public let limitBytes: Int
    /// How much of `limitBytes` decoded batches may take (all of it by default: they
    /// are let go first as protobuf fills the log). A reader that waits for its
    /// batch to fill (the `batch` processor: 8,192 records, about 27 MB decoded of
    /// the benchmark's events) must find it still decoded, or it decodes it again:
    /// with a quarter of 64 MiB, `make bench`'s nop case decoded every request twice.
    public let decodedBudgetBytes: Int
    /// `sending_queue` with `sizer: requests` or `items`: a bound on entries or
    /// items held, on top of the byte limit (which always applies).
    public let limitEntries: Int?
    public let limitItems: Int?

    private struct Reader {
        var committed: UInt64 = 0      // last delivered sequence
        var readPosition: UInt64 = 0   // last handed-out sequence
        var waiter: CheckedContinuation<Void, Never>?
    }

    private struct Entry {
        let sequence: UInt64
        let signal: OTLPSignal
        /// The request's protobuf.
        let protobuf: [UInt8]
        /// The decoded batch, while it is among the newest within the budget.
        var batch: OTLPBatch?
        let decodedBytes: Int
        let items: Int
        let appendedAt: Double
    }

    private struct State {
        var entries: [Entry] = []
        var head = 0                    // index of the first live entry in `entries`
        /// Entries from here on hold their decoded batch; the ones before it do not.
        var decodedFrom = 0
        var nextSequence: UInt64 = 1
        var protobufBytes = 0
        var decodedBytes = 0
        var usedItems = 0
        var readers: [ComponentID: Reader] = [:]
        var closed = false

        var usedBytes: Int { protobufBytes + decodedBytes }

        /// Drops entries every reader has committed. At once: the memory must go back
        /// when the data is delivered, not later.
        mutating func release(through floor: UInt64) {
            while head < entries.count, entries[head].sequence <= floor {
                protobufBytes -= entries[head].protobuf.count
                if entries[head].batch != nil { decodedBytes -= entries[head].decodedBytes }
                usedItems -= entries[head].items
                head += 1
            }
            if head > 0 {
                entries.removeFirst(head)
                decodedFrom = max(0, decodedFrom - head)
                head = 0
            }
        }

        /// Lets decoded batches go, oldest first, until they fit their budget and
        /// everything held fits the limit.
        mutating func shedDecoded(budget: Int, limit: Int) {
            decodedFrom = max(decodedFrom, head)
            while decodedFrom < entries.count, decodedBytes > budget || protobufBytes + decodedBytes > limit {
                if entries[decodedFrom].batch != nil {
                    decodedBytes -= entries[decodedFrom].decodedBytes
                    entries[decodedFrom].batch = nil
                }
                decodedFrom += 1
            }
        }
    }

    private let state = Mutex(State())

    public init(name: String, limitBytes: Int, limitEntries: Int? = nil, limitItems: Int? = nil, decodedBudgetBytes: Int? = nil) {
        self.name = name
        self.limitBytes = limitBytes
        self.limitEntries = limitEntries
        self.limitItems = limitItems
        self.decodedBudgetBytes = decodedBudgetBytes ?? limitBytes
        // The log keeps each request's protobuf: decoding copies it into the batch's
        // arena (a memcpy) so that `withProtobuf` need not pack the message again.
        OTLPBatch.keepsProtobufSource = true
    }

    /// Whether an entry of this size fits. One request larger than the whole log is
    /// still taken when the log is empty: refusing it forever would make the client
    /// retry forever.
    private func fits(bytes: Int, items: Int, _ s: State) -> Bool {
        let held = s.entries.count - s.head
        guard held > 0 else { return true }
        if let limitEntries, held >= limitEntries { return false }
        if let limitItems, s.usedItems + items > limitItems { return false }
        return s.protobufBytes + bytes <= limitBytes
    }

    /// Protobuf and decoded batches held.
    public var usedBytes: Int { state.withLock { $0.usedBytes } }

    /// Decoded batches held (within `decodedBudgetBytes`).
    public var decodedBytes: Int { state.withLock { $0.decodedBytes } }

    public var isClosed: Bool { state.withLock { $0.closed } }

    /// `bytes`: the request's protobuf size (what an entry holds for sure).
    public func hasRoom(for bytes: Int) -> Bool {
        state.withLock { !$0.closed && fits(bytes: bytes, items: 0, $0) }
    }

    /// `bytes` is not used: the log counts the protobuf it keeps and the decoded batch.
    public func append(_ batch: OTLPBatch, items: Int, bytes: Int) -> AppendResult {
        let protobuf = batch.withProtobuf { Array($0.bindMemory(to: UInt8.self)) }
        let decoded = batch.memoryBytes
        let now = Date().timeIntervalSince1970
        let (result, waiters) = state.withLock { s -> (AppendResult, [CheckedContinuation<Void, Never>]) in
            guard !s.closed, fits(bytes: protobuf.count, items: items, s) else { return (.full, []) }
            let sequence = s.nextSequence
            s.nextSequence += 1
            s.entries.append(Entry(sequence: sequence, signal: batch.signal, protobuf: protobuf, batch: batch, decodedBytes: decoded,
                                   items: items, appendedAt: now))
            s.protobufBytes += protobuf.count
            s.decodedBytes += decoded
            s.usedItems += items
            s.shedDecoded(budget: decodedBudgetBytes, limit: limitBytes)
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
                if lag.entries == 0 { lag.oldestAgeSeconds = max(0, Date().timeIntervalSince1970 - entry.appendedAt) }
                lag.entries += 1
                lag.items += entry.items
                lag.bytes += entry.protobuf.count + (entry.batch == nil ? 0 : entry.decodedBytes)
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

    /// The next entries for `reader`, their batches decoded again where the log let
    /// them go (outside the lock: decoding takes a millisecond per thousand records).
    /// `retry` when a decode failed (the arena could not get memory): the read
    /// position goes back to before that entry, and what came before it is returned.
    fileprivate func take(_ reader: ComponentID, maxItems: Int) -> (entries: [LogEntry], retry: Bool) {
        let taken = state.withLock { s -> [(sequence: UInt64, signal: OTLPSignal, protobuf: [UInt8], batch: OTLPBatch?, items: Int, bytes: Int)] in
            guard let position = s.readers[reader]?.readPosition else { return [] }
            var taken: [(sequence: UInt64, signal: OTLPSignal, protobuf: [UInt8], batch: OTLPBatch?, items: Int, bytes: Int)] = []
            var items = 0
            var decoded = 0
            for entry in s.entries[s.head...] where entry.sequence > position {
                if !taken.isEmpty, maxItems > 0, items + entry.items > maxItems { break }
                // Decoded, what one read hands out stays within the log's limit, as
                // when the log held decoded batches only: a reader far behind would
                // otherwise decode the whole backlog at once (eight times its size).
                if !taken.isEmpty, decoded + entry.decodedBytes > limitBytes { break }
                taken.append((entry.sequence, entry.signal, entry.protobuf, entry.batch, entry.items, entry.protobuf.count))
                items += entry.items
                decoded += entry.decodedBytes
            }
            if let last = taken.last { s.readers[reader]?.readPosition = last.sequence }
            return taken
        }
        var entries: [LogEntry] = []
        entries.reserveCapacity(taken.count)
        for piece in taken {
            if let batch = piece.batch ?? (try? OTLPBatch.decode(protobuf: piece.protobuf, signal: piece.signal,
                                                                  limits: OTLPDecodeLimits(maxBodyBytes: .max, maxNestingDepth: OTLPDecodeLimits.nestingCeiling))) {
                entries.append(LogEntry(sequence: piece.sequence, batch: batch, items: piece.items, bytes: piece.bytes))
                continue
            }
            let before = piece.sequence - 1
            state.withLock { s in
                if let position = s.readers[reader]?.readPosition, position > before { s.readers[reader]?.readPosition = before }
            }
            return (entries, true)
        }
        return (entries, false)
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
        while true {
            var retry = false
            let entries = await readShaped(shape, available: { log.available(reader) }, waitForAppend: { await log.waitForAppend(reader) },
                                           take: {
                                               let taken = log.take(reader, maxItems: shape.sendBatchMaxSize)
                                               retry = taken.retry
                                               return taken.entries
                                           })
            // Empty means closed and drained to the delivery loop, so a batch that
            // could not be decoded (no memory) is tried again after a pause instead.
            guard entries.isEmpty, retry, !Task.isCancelled else { return entries }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    func commit(through sequence: UInt64) { log.commit(reader, through: sequence) }
    func rewind() { log.rewind(reader) }
}
