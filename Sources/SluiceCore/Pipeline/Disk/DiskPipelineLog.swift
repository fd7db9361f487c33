import Foundation
import Logging
import Synchronization

/// The pipeline log on disk: a 2xx from a receiver means the data is in a segment
/// file, written past the page cache to the device (and, with `fsync: always`,
/// flushed from the device's cache too), so it survives `kill -9` and, with fsync,
/// a power cut.
///
/// How it works (the byte layout is in `SegmentFormat`):
/// - `append` takes the batch's protobuf (the request's own bytes, which decoders
///   keep once a disk log is open, or a fresh packing when the batch has none),
///   gives the entry a sequence and queues it for the writer (`DiskLogWriter`),
///   which owns the segment files and checksums the entry as it copies it. With
///   fsync `interval` or `never` the appending thread writes it itself when the
///   writer is free; it never waits for a busy one. `whenDurable` says when the entry
///   is written (fsync `interval`/`never`) or written and fsynced (`always`; every
///   entry written since the last fsync shares the next one).
/// - Readers see an entry once it is written (for `always`, once it is fsynced).
///   The decoded batch appended in this process is kept in memory while the kept
///   batches stay under a budget (a quarter of `max_size`, at most 128 MiB); other
///   entries, and everything found at startup, are read back from the segment and
///   decoded when a cursor reads them.
/// - Each reader's committed position is a file in `cursors/`. A segment is deleted
///   when every reader has committed past its last entry.
/// - A write that fails (ENOSPC, EIO) is cut off the file again and never becomes
///   visible; `whenDurable` answers false, and `hasRoom`/`append` refuse for about
///   a second, after which the next append probes the disk again. Receivers answer
///   503 meanwhile; nothing acknowledged is lost and nothing crashes.
/// - A reader registered with no saved cursor starts at the oldest entry still on
///   disk, so that data survives restarts (and a newly added exporter gets what the
///   log still holds).
///
/// `LogEntry.bytes` and `lag(_:).bytes` are sizes on disk (header and protobuf).
public final class DiskPipelineLog: PipelineLog {
    public let name: String
    public let limitBytes: Int
    /// This pipeline's directory.
    public let directory: String
    let signal: OTLPSignal
    let settings: DiskLogSettings
    let logger: Logger
    let cursorStore: CursorStore
    let counters: Counters
    let state: Mutex<State>
    /// Wakes the writer thread; `State.writerSignaled` keeps it to one signal per round.
    let wake = DispatchSemaphore(value: 0)
    let writerDone = DispatchSemaphore(value: 0)
    /// The writer: the active segment and what is being written. Held by the writer
    /// thread for its rounds, or, with fsync `interval` or `never`, by an appending
    /// thread that finds it free and writes its own entry (`DiskLogWriter.writeQueued`).
    /// Nil once the log is closed.
    let writer = Mutex<DiskLogWriter?>(nil)
    private let lockFD: Int32

    /// The most disk bytes one `read` returns (always at least one entry), so a reader
    /// catching up after a restart does not decode the whole log into memory at once.
    static let maxReadBytes = 8 << 20

    struct Counters {
        let dropped: Counter
        let quarantined: Counter
        let corruptEntries: Counter
        let writeErrors: Counter
        /// Entries a reader had to read back and decode from disk: it was further
        /// behind than the memory budget (or the process restarted).
        let readBack: Counter
    }

    struct IndexEntry {
        let sequence: UInt64
        /// The segment's first sequence (its name).
        let segment: UInt64
        let offset: Int
        /// Header and payload.
        let size: Int
        let items: Int
        let appendedAtMillis: UInt64
        /// Items and bytes of every entry up to and including this one, since open:
        /// lag and availability are differences of these.
        let cumulativeItems: Int
        let cumulativeBytes: Int
        var batch: OTLPBatch?
        var cachedBytes: Int
        var corrupt = false
    }

    struct SegmentInfo {
        let first: UInt64
        var path: String
        var bytes: Int
        var lastSequence: UInt64
        var quarantined: Bool
    }

    struct Pending {
        let sequence: UInt64
        let items: Int
        let signal: OTLPSignal
        let appendedAtMillis: UInt64
        /// The batch's protobuf, packed at append; empty when `source` has it.
        let packed: [UInt8]
        /// The batch whose kept protobuf (`OTLPBatch.protobufSource`) is the payload,
        /// held until it is written.
        let source: OTLPBatch?
        let payloadLength: Int
        /// The batch readers get from memory (nil: over the budget, read back from disk).
        let batch: OTLPBatch?
        let cachedBytes: Int
        var size: Int { SegmentFormat.headerSize + payloadLength }

        func withPayload<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
            if let kept = source?.protobufSource { return body(kept) }
            return packed.withUnsafeBytes(body)
        }
    }

    struct Reader {
        var committed: UInt64
        var readPosition: UInt64
        var waiter: CheckedContinuation<Void, Never>?
    }

    /// Ends the wait after a failed write now (tests: the disk has space again).
    func retryWritesNow() {
        state.withLock { s in s.failure?.retryAt = ContinuousClock.now }
    }

    struct WriteFailure {
        var retryAt: ContinuousClock.Instant
        /// An append has been let through to test the disk and has not been answered.
        var probing: Bool
    }

    struct State {
        var segments: [SegmentInfo] = []
        var entries: [IndexEntry] = []
        var head = 0
        var totalItems = 0
        var totalBytes = 0
        var nextSequence: UInt64 = 1
        var diskBytes = 0
        /// Appended entries not yet written (or refused by the disk).
        var pendingBytes = 0
        var pending: [Pending] = []
        var writerSignaled = false
        var readers: [ComponentID: Reader] = [:]
        var closed = false
        var writerFinished = false
        /// Every sequence up to here has been written (and fsynced, per policy) or failed.
        var resolvedThrough: UInt64 = 0
        var failed: Set<UInt64> = []
        var durableWaiters: [(sequence: UInt64, callback: @Sendable (Bool) -> Void)] = []
        var cachedBytes = 0
        var failure: WriteFailure?
        var cursorsDirty = false
        var toDelete: [SegmentInfo] = []
        var flushRequests: [DispatchSemaphore] = []
        var lastAppend: ContinuousClock.Instant?
        /// The active segment's writes are submitted, not waited for (see
        /// `SegmentAppender`): a loop that writes inline blocks only for the submission.
        var submitsWrites = false

        var live: ArraySlice<IndexEntry> { entries[head...] }

        /// Index of the first live entry after `sequence` (`entries.count` if none).
        func firstIndex(after sequence: UInt64) -> Int {
            var low = head, high = entries.count
            while low < high {
                let mid = (low + high) / 2
                if entries[mid].sequence <= sequence { low = mid + 1 } else { high = mid }
            }
            return low
        }

        /// Items in live entries after `sequence`.
        func items(after sequence: UInt64) -> Int {
            let index = firstIndex(after: sequence)
            guard index < entries.count else { return 0 }
            return entries[entries.count - 1].cumulativeItems - (entries[index].cumulativeItems - entries[index].items)
        }

        /// Where a reader without a saved cursor starts: before the oldest entry still held.
        var oldestStart: UInt64 {
            head < entries.count ? entries[head].sequence - 1 : resolvedThrough
        }

        mutating func releaseHead(through floor: UInt64) {
            while head < entries.count, entries[head].sequence <= floor {
                cachedBytes -= entries[head].cachedBytes
                entries[head].batch = nil
                head += 1
            }
            // Compact now and then so the array does not grow without end.
            if head > 1024, head * 2 > entries.count {
                entries.removeFirst(head)
                head = 0
            }
        }

        var floor: UInt64? { readers.values.map(\.committed).min() }

        /// Takes off the list the segments every reader has committed past, for the
        /// writer to delete. Never the last one: the writer is appending to it.
        mutating func removeReleasedSegments() -> [SegmentInfo] {
            guard let floor else { return [] }
            var released: [SegmentInfo] = []
            while segments.count > 1, segments[0].lastSequence <= floor {
                let segment = segments.removeFirst()
                diskBytes -= segment.bytes
                released.append(segment)
            }
            return released
        }
    }

    // MARK: Opening

    /// Opens (creating if needed) the log of pipeline `name` in `<directory>/<name, file-safe>`,
    /// recovers what a crash left, and registers `readers`. A reader with a saved
    /// cursor resumes after it; one without starts at the oldest entry on disk.
    ///
    /// Throws `DiskLogError` when the directory cannot be created or written (the
    /// message names the path, the system's reason and what to do), when another
    /// process has it open, or when reading it fails.
    public static func open(
        directory: String, name: String, signal: OTLPSignal, readers: [ComponentID], settings: DiskLogSettings,
        logger: Logger, metrics: MetricsRegistry
    ) throws -> DiskPipelineLog {
        let path = (directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory) + "/" + SegmentFormat.fileSafe(name)
        let cursorsPath = path + "/cursors"
        do {
            try POSIXFile.makeDirectories(cursorsPath, mode: settings.directoryMode)
        } catch {
            throw DiskLogError.notWritable(error.path, pipeline: name, operation: "mkdir", errno: error.code)
        }
        try checkWritable(path, pipeline: name)
        let lockFD = try lock(path, pipeline: name)
        do {
            let labels = [("pipeline", name)]
            let counters = Counters(
                dropped: metrics.counter("sluice_pipeline_log_dropped_items_total", "Items deleted from a full disk log (when_full: drop_oldest) before every exporter had them.", labels: labels),
                quarantined: metrics.counter("sluice_pipeline_log_quarantined_segments_total", "Damaged disk log segments set aside as *.corrupt.", labels: labels),
                corruptEntries: metrics.counter("sluice_pipeline_log_corrupt_entries_total", "Disk log entries that failed their checksum or decode when read, and were skipped.", labels: labels),
                writeErrors: metrics.counter("sluice_pipeline_log_write_errors_total", "Failed writes to the disk log (ENOSPC, EIO); the clients were told to retry.", labels: labels),
                readBack: metrics.counter("sluice_pipeline_log_read_back_entries_total", "Entries read back and decoded from disk because a reader was further behind than the memory budget, or after a restart.", labels: labels))
            let cursorStore = CursorStore(directory: cursorsPath, syncWrites: settings.fsync != .never)
            let saved = cursorStore.loadAll()
            let floor = readers.isEmpty ? 0 : readers.map { saved[$0.fileSafe] ?? 0 }.min() ?? 0
            let recovered: RecoveredLog
            do {
                recovered = try SegmentRecovery(directory: path, signal: signal, pipeline: name, floor: floor, logger: logger,
                                                quarantined: counters.quarantined).run()
            } catch {
                throw DiskLogError(path: path, message: "pipeline \(name): cannot recover the disk log in \(path): \(error). Check the volume, or move the directory aside to start empty.")
            }
            let log = DiskPipelineLog(name: name, directory: path, signal: signal, settings: settings, logger: logger,
                                      cursorStore: cursorStore, counters: counters, lockFD: lockFD)
            let active = try log.restore(recovered, saved: saved, readers: readers)
            // From now on decoders keep each request's protobuf, which `append` writes
            // as is instead of packing the decoded batch again.
            OTLPBatch.keepsProtobufSource = true
            log.writer.withLock { $0 = DiskLogWriter(log: log, active: active) }
            let thread = Thread { [log] in DiskLogWriter.runThread(log) }
            thread.name = "sluice-log-\(name)"
            thread.start()
            logger.info("pipeline log opened on disk", metadata: [
                "pipeline": "\(name)", "directory": "\(path)", "segments": "\(recovered.segments.count)",
                "entries": "\(log.state.withLock { $0.entries.count })", "next_sequence": "\(log.state.withLock { $0.nextSequence })"])
            return log
        } catch {
            Foundation.close(lockFD)
            throw error
        }
    }

    private init(name: String, directory: String, signal: OTLPSignal, settings: DiskLogSettings, logger: Logger,
                 cursorStore: CursorStore, counters: Counters, lockFD: Int32) {
        self.name = name
        self.limitBytes = settings.maxSizeBytes
        self.directory = directory
        self.signal = signal
        self.settings = settings
        self.logger = logger
        self.cursorStore = cursorStore
        self.counters = counters
        self.state = Mutex(State())
        self.lockFD = lockFD
    }

    private static func checkWritable(_ path: String, pipeline: String) throws {
        let probe = path + "/.write-test"
        let fd = POSIXFile.openPrivate(probe, flags: O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC)
        guard fd >= 0 else { throw DiskLogError.notWritable(path, pipeline: pipeline, operation: "creating a file", errno: errno) }
        defer { Foundation.close(fd); unlink(probe) }
        do throws(POSIXFile.Failure) {
            try POSIXFile.writeAll(fd, [0], at: 0, path: probe)
            try POSIXFile.sync(fd, path: probe)
        } catch {
            throw DiskLogError.notWritable(path, pipeline: pipeline, operation: error.operation, errno: error.code)
        }
    }

    /// One process per directory: a second one would interleave writes.
    private static func lock(_ path: String, pipeline: String) throws -> Int32 {
        let lockPath = path + "/lock"
        let fd = POSIXFile.openPrivate(lockPath, flags: O_RDWR | O_CREAT | O_CLOEXEC)
        guard fd >= 0 else { throw DiskLogError.notWritable(path, pipeline: pipeline, operation: "creating \(lockPath)", errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            Foundation.close(fd)
            throw DiskLogError(path: path, message: "pipeline \(pipeline): the log directory \(path) is in use by another Sluice process (flock: \(String(cString: strerror(code)))). Give each Sluice its own storage directory.")
        }
        return fd
    }

    /// Fills the state from what recovery found; returns the segment to go on writing.
    private func restore(_ recovered: RecoveredLog, saved: [String: UInt64], readers: [ComponentID]) throws -> DiskLogWriter.Active? {
        try state.withLock { s in
            for segment in recovered.segments {
                s.segments.append(SegmentInfo(first: segment.first, path: segment.path, bytes: segment.bytes,
                                              lastSequence: segment.lastSequence, quarantined: segment.quarantined))
                s.diskBytes += segment.bytes
                for entry in segment.entries {
                    let size = SegmentFormat.headerSize + entry.payloadLength
                    s.totalItems += entry.items
                    s.totalBytes += size
                    s.entries.append(IndexEntry(sequence: entry.sequence, segment: segment.first, offset: entry.offset, size: size,
                                                items: entry.items, appendedAtMillis: entry.appendedAtMillis,
                                                cumulativeItems: s.totalItems, cumulativeBytes: s.totalBytes, batch: nil, cachedBytes: 0))
                }
            }
            let highest = max(recovered.highestSequence, saved.values.max() ?? 0)
            s.nextSequence = highest + 1
            s.resolvedThrough = highest
            for reader in readers where s.readers[reader] == nil {
                let start = saved[reader.fileSafe] ?? s.oldestStart
                s.readers[reader] = Reader(committed: start, readPosition: start)
            }
            if let floor = s.floor { s.releaseHead(through: floor) }
            guard let last = s.segments.last, !last.quarantined else { return nil }
            let (fd, direct) = SegmentAppender.open(last.path, flags: 0, direct: settings.directIO)
            guard fd >= 0 else {
                throw DiskLogError(path: last.path, message: "pipeline \(name): cannot open \(last.path) for writing: \(String(cString: strerror(errno))). Check the volume's permissions.")
            }
            return DiskLogWriter.Active(fd: fd, path: last.path, first: last.first, bytes: last.bytes, direct: direct)
        }
    }

    // MARK: PipelineLog

    public var usedBytes: Int { state.withLock { $0.diskBytes + $0.pendingBytes } }

    public func hasRoom(for bytes: Int) -> Bool {
        let now = ContinuousClock.now
        return state.withLock { s in
            if s.closed { return false }
            if let failure = s.failure, failure.probing || now < failure.retryAt { return false }
            return fits(bytes, s)
        }
    }

    private func fits(_ bytes: Int, _ s: State) -> Bool {
        if settings.whenFull == .dropOldest { return true }
        let used = s.diskBytes + s.pendingBytes
        // One request larger than the whole log is still taken when nothing is
        // waiting: refusing it forever would make the client retry forever.
        return used + bytes <= limitBytes || used == 0 || (s.pending.isEmpty && s.head == s.entries.count)
    }

    public func append(_ batch: OTLPBatch, items: Int, bytes: Int) -> AppendResult {
        // The request's own protobuf when the decoder kept it (no processor changed
        // the batch); packing the decoded message again is the one costly step here.
        let kept = batch.protobufSource
        let packed = kept == nil ? batch.encodeProtobuf() : []
        let payloadLength = kept?.count ?? packed.count
        let size = SegmentFormat.headerSize + payloadLength
        let memory = batch.memoryBytes
        let millis = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
        let now = ContinuousClock.now
        let budget = settings.memoryBudgetBytes
        let (result, signalWriter, inline) = state.withLock { s -> (AppendResult, Bool, Bool) in
            guard !s.closed, fits(size, s) else { return (.full, false, false) }
            if var failure = s.failure {
                guard !failure.probing, now >= failure.retryAt else { return (.full, false, false) }
                failure.probing = true
                s.failure = failure
            }
            let sequence = s.nextSequence
            // No other request waits for the disk, and none came in the last
            // millisecond: a loop that blocks on this write keeps nobody waiting
            // (see `writesInline`).
            let quiet = s.submitsWrites || sequence - 1 == s.resolvedThrough && s.lastAppend.map { now - $0 > .milliseconds(1) } ?? true
            s.lastAppend = now
            s.nextSequence += 1
            let keep = s.cachedBytes + memory <= budget
            if keep { s.cachedBytes += memory }
            s.pending.append(Pending(sequence: sequence, items: items, signal: batch.signal, appendedAtMillis: millis, packed: packed,
                                     source: kept == nil ? nil : batch, payloadLength: payloadLength,
                                     batch: keep ? batch : nil, cachedBytes: keep ? memory : 0))
            s.pendingBytes += size
            if writesInline, quiet { return (.appended(sequence: sequence), false, true) }
            let signal = !s.writerSignaled
            s.writerSignaled = true
            return (.appended(sequence: sequence), signal, false)
        }
        if signalWriter { wake.signal() }
        if inline { writeOrSignal() }
        return result
    }

    /// With fsync `interval` or `never`, an appender writes its entry itself when the
    /// writer is free, no other request waits for the disk and none came in the last
    /// millisecond: a client sending one request at a time is answered without two
    /// thread hand-offs. When requests come faster, event loops go on decoding while
    /// the writer thread writes; a direct write would block a loop until the device
    /// answers, and the requests behind it with it. (`make bench`, six paired
    /// rounds: writing inline did 78 % of the memory log's records/s with one client
    /// against 75 % handed off; with four clients 74 % against 79 %.) A segment whose
    /// writes are submitted (`State.submitsWrites`) blocks a loop only for the
    /// submission, so loops write whenever the writer is free. With `always` the
    /// writer thread gathers entries for one fsync.
    private var writesInline: Bool { settings.fsync != .always }

    /// Writes what is queued on this thread if the writer is free; otherwise its
    /// holder or the writer thread will.
    private func writeOrSignal() {
        let answers = writer.withLockIfAvailable { writer -> DiskLogWriter.Answers? in writer?.writeQueued() }
        guard let answers = answers ?? nil else {
            // Whoever holds the writer may have looked at the queue already: the
            // writer thread picks this entry up.
            signalWriter()
            return
        }
        answers.deliver()
        if answers.wakeWriter { signalWriter() }
    }

    private func signalWriter() {
        let signal = state.withLock { s -> Bool in
            defer { s.writerSignaled = true }
            return !s.writerSignaled
        }
        if signal { wake.signal() }
    }

    public func whenDurable(_ sequence: UInt64, _ callback: @escaping @Sendable (Bool) -> Void) {
        let outcome = state.withLock { s -> Bool? in
            if sequence <= s.resolvedThrough { return !s.failed.contains(sequence) }
            if s.writerFinished { return false }
            s.durableWaiters.append((sequence, callback))
            return nil
        }
        if let outcome { callback(outcome) }
    }

    public func cursor(_ reader: ComponentID) -> any LogCursor {
        let saved = cursorStore.load(path: cursorStore.path(reader))
        state.withLock { s in
            if s.readers[reader] == nil {
                let start = saved ?? s.oldestStart
                s.readers[reader] = Reader(committed: start, readPosition: start)
            }
        }
        return DiskLogCursor(log: self, reader: reader)
    }

    public func lag(_ reader: ComponentID) -> CursorLag {
        let nowMillis = Date().timeIntervalSince1970 * 1000
        return state.withLock { s in
            guard let r = s.readers[reader] else { return CursorLag(entries: 0, items: 0, bytes: 0, oldestAgeSeconds: 0) }
            let index = s.firstIndex(after: r.committed)
            guard index < s.entries.count else { return CursorLag(entries: 0, items: 0, bytes: 0, oldestAgeSeconds: 0) }
            let first = s.entries[index], last = s.entries[s.entries.count - 1]
            return CursorLag(entries: s.entries.count - index,
                             items: last.cumulativeItems - (first.cumulativeItems - first.items),
                             bytes: last.cumulativeBytes - (first.cumulativeBytes - first.size),
                             oldestAgeSeconds: max(0, (nowMillis - Double(first.appendedAtMillis)) / 1000))
        }
    }

    /// Stops taking appends, writes and fsyncs what is queued, saves the cursors, and
    /// wakes readers (who get what is left, then nothing). Blocks until the writer has
    /// finished; safe to call more than once.
    public func close() {
        let first = state.withLock { s -> Bool in
            defer { s.closed = true }
            return !s.closed
        }
        wake.signal()
        writerDone.wait()
        writerDone.signal()
        guard first else { return }
        Foundation.close(lockFD)
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            var waiters: [CheckedContinuation<Void, Never>] = []
            for key in s.readers.keys {
                if let waiter = s.readers[key]!.waiter { waiters.append(waiter) }
                s.readers[key]!.waiter = nil
            }
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Blocks until everything appended so far is written and fsynced, cursors are
    /// saved and released segments deleted. For tests and shutdown.
    func flush() {
        let done = DispatchSemaphore(value: 0)
        let running = state.withLock { s -> Bool in
            if s.writerFinished { return false }
            s.flushRequests.append(done)
            s.writerSignaled = true
            return true
        }
        guard running else { return }
        wake.signal()
        done.wait()
    }

    // MARK: Cursor operations

    func available(_ reader: ComponentID) -> LogAvailability {
        state.withLock { s in
            let position = s.readers[reader]?.readPosition ?? 0
            if s.firstIndex(after: position) < s.entries.count { return .entries(items: s.items(after: position)) }
            return s.closed && s.writerFinished ? .closedAndDrained : .nothing
        }
    }

    func waitForAppend(_ reader: ComponentID) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
                let position = s.readers[reader]?.readPosition ?? 0
                if (s.closed && s.writerFinished) || s.firstIndex(after: position) < s.entries.count { return true }
                s.readers[reader]?.waiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Moves the read position past up to `maxItems` items (and `maxReadBytes`) and
    /// says where each entry is; corrupt entries are stepped over.
    func take(_ reader: ComponentID, maxItems: Int) -> [(entry: IndexEntry, path: String?)] {
        state.withLock { s in
            guard let position = s.readers[reader]?.readPosition else { return [] }
            var taken: [(IndexEntry, String?)] = []
            var items = 0
            var bytes = 0
            var last = position
            var index = s.firstIndex(after: position)
            while index < s.entries.count {
                let entry = s.entries[index]
                index += 1
                if entry.corrupt {
                    last = entry.sequence
                    continue
                }
                if !taken.isEmpty, maxItems > 0, items + entry.items > maxItems { break }
                if !taken.isEmpty, bytes + entry.size > Self.maxReadBytes { break }
                let path = entry.batch == nil ? s.segments.first(where: { $0.first == entry.segment })?.path : nil
                taken.append((entry, path))
                items += entry.items
                bytes += entry.size
                last = entry.sequence
            }
            s.readers[reader]?.readPosition = last
            return taken
        }
    }

    func commit(_ reader: ComponentID, through sequence: UInt64) {
        let signalWriter = state.withLock { s -> Bool in
            guard var r = s.readers[reader] else { return false }
            guard sequence > r.committed else { return false }
            r.committed = sequence
            r.readPosition = max(r.readPosition, r.committed)
            s.readers[reader] = r
            s.cursorsDirty = true
            if let floor = s.floor {
                s.releaseHead(through: floor)
                s.toDelete += s.removeReleasedSegments()
            }
            let signal = !s.writerSignaled
            s.writerSignaled = true
            return signal
        }
        if signalWriter { wake.signal() }
    }

    func rewind(_ reader: ComponentID) {
        state.withLock { s in
            if let committed = s.readers[reader]?.committed { s.readers[reader]?.readPosition = committed }
        }
    }

    /// Turns taken entries into batches, reading from disk what is not in memory.
    func materialize(_ taken: [(entry: IndexEntry, path: String?)]) -> [LogEntry] {
        var result: [LogEntry] = []
        result.reserveCapacity(taken.count)
        var file: (path: String, fd: Int32)?
        defer { if let file { Foundation.close(file.fd) } }
        var buffer: [UInt8] = []
        for (entry, path) in taken {
            if let batch = entry.batch {
                result.append(LogEntry(sequence: entry.sequence, batch: batch, items: entry.items, bytes: entry.size))
                continue
            }
            guard let path else { continue } // its segment was dropped (when_full: drop_oldest)
            if file?.path != path {
                if let file { Foundation.close(file.fd) }
                file = nil
                let fd = Foundation.open(path, O_RDONLY | O_CLOEXEC)
                if fd < 0 {
                    let code = errno
                    if code != ENOENT { markCorrupt(entry, path: path, reason: "cannot open the segment: \(String(cString: strerror(code)))") }
                    continue
                }
                file = (path, fd)
            }
            switch readEntry(entry, fd: file!.fd, path: path, buffer: &buffer) {
            case .success(let batch):
                counters.readBack.increment()
                result.append(LogEntry(sequence: entry.sequence, batch: batch, items: entry.items, bytes: entry.size))
            case .failure(let reason):
                markCorrupt(entry, path: path, reason: reason.reason)
            }
        }
        return result
    }

    struct ReadFailure: Error { let reason: String }

    private func readEntry(_ entry: IndexEntry, fd: Int32, path: String, buffer: inout [UInt8]) -> Result<OTLPBatch, ReadFailure> {
        if buffer.count < entry.size { buffer = [UInt8](repeating: 0, count: entry.size) }
        let signal = self.signal
        return buffer.withUnsafeMutableBytes { raw -> Result<OTLPBatch, ReadFailure> in
            let region = UnsafeMutableRawBufferPointer(rebasing: raw[0..<entry.size])
            let count: Int
            do { count = try POSIXFile.read(fd, into: region, at: entry.offset, path: path) } catch { return .failure(ReadFailure(reason: "\(error)")) }
            guard count == entry.size else { return .failure(ReadFailure(reason: "the segment ends inside the entry")) }
            let bytes = UnsafeRawBufferPointer(region)
            let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[0..<SegmentFormat.headerSize])
            let payload = UnsafeRawBufferPointer(rebasing: bytes[SegmentFormat.headerSize...])
            guard let header = SegmentFormat.parseHeader(headerBytes), header.sequence == entry.sequence,
                  header.payloadLength == payload.count else { return .failure(ReadFailure(reason: "the entry header does not match the index")) }
            guard SegmentFormat.verify(header: headerBytes, payload: payload, expected: header.crc) else {
                return .failure(ReadFailure(reason: "checksum mismatch"))
            }
            do {
                return .success(try OTLPBatch.decode(protobuf: payload, signal: signal, limits: OTLPDecodeLimits(maxBodyBytes: .max, maxNestingDepth: OTLPDecodeLimits.nestingCeiling)))
            } catch {
                return .failure(ReadFailure(reason: "cannot decode: \(error)"))
            }
        }
    }

    /// An entry that was good when written reads back damaged: skip it for every
    /// reader, count it, and keep its segment as `.corrupt` when it is released.
    private func markCorrupt(_ entry: IndexEntry, path: String, reason: String) {
        let (first, quarantinedNow) = state.withLock { s -> (Bool, Bool) in
            let index = s.firstIndex(after: entry.sequence - 1)
            guard index < s.entries.count, s.entries[index].sequence == entry.sequence, !s.entries[index].corrupt else { return (false, false) }
            s.entries[index].corrupt = true
            var quarantinedNow = false
            if let i = s.segments.firstIndex(where: { $0.first == entry.segment }), !s.segments[i].quarantined {
                s.segments[i].quarantined = true
                quarantinedNow = true
            }
            return (true, quarantinedNow)
        }
        guard first else { return }
        counters.corruptEntries.increment()
        if quarantinedNow { counters.quarantined.increment() }
        logger.error("pipeline log: an entry is damaged on disk and is skipped; its segment is kept as .corrupt when released",
                     metadata: ["pipeline": "\(name)", "segment": "\(path)", "sequence": "\(entry.sequence)", "offset": "\(entry.offset)",
                                "items_lost": "\(entry.items)", "reason": "\(reason)"])
    }
}

struct DiskLogCursor: LogCursor {
    let log: DiskPipelineLog
    let reader: ComponentID

    func read(_ shape: BatchShape) async -> [LogEntry] {
        await readShaped(shape, available: { log.available(reader) }, waitForAppend: { await log.waitForAppend(reader) },
                         take: { log.materialize(log.take(reader, maxItems: shape.sendBatchMaxSize)) })
    }

    func commit(through sequence: UInt64) { log.commit(reader, through: sequence) }
    func rewind() { log.rewind(reader) }
}
