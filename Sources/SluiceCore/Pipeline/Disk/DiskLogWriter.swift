import Foundation
import Logging

/// What writes a disk log: the active segment (through a `SegmentAppender`, with
/// direct I/O), queued entries (many per system call), fsyncs per policy, new
/// segments, saved cursors and deleted segments.
///
/// It lives in `DiskPipelineLog.writer`, a lock whose holder runs it. A thread of its
/// own (`runThread`) runs rounds when signalled or when an fsync or a save of
/// positions is due. With fsync `interval` or `never`, an appending event loop that
/// finds the lock free writes what is queued itself (`writeQueued`): its request is
/// answered without two thread hand-offs, which on a virtual machine cost about as
/// much as the write. Where the segment submits its writes (`SegmentAppender`), a
/// loop only submits, and does so whenever no write is in flight; it also hands a
/// completed write's entries to readers. The writer thread submits what queued while
/// a write was in flight (after its completion), and hands a write to readers when
/// no later one did within 2 ms. Where writes wait for the device, a loop writes only when requests come
/// one at a time (see `DiskPipelineLog.writesInline`). One that finds the lock held
/// only queues and signals; it never waits. When writes keep taking longer than a
/// local disk's (a network volume), the event loops leave writing to the thread for
/// a while.
/// Everything shared with readers goes through `DiskPipelineLog.state`.
final class DiskLogWriter {
    struct Active: Sendable {
        var fd: Int32
        var path: String
        var first: UInt64
        var bytes: Int
        /// Opened with `O_DIRECT`.
        var direct: Bool
    }

    /// The segment being written.
    private struct Segment {
        let first: UInt64
        let appender: SegmentAppender
        /// Bytes of whole entries written.
        var bytes: Int { appender.committed }
        var path: String { appender.path }
        var fd: Int32 { appender.fd }
    }

    private let log: DiskPipelineLog
    private var active: Segment?
    /// Entries written to the active segment and not yet handed to readers.
    private var written: [(pending: DiskPipelineLog.Pending, offset: Int)] = []
    /// Entries in the active segment's submitted write: answered, and handed to
    /// readers once it completes (see `SegmentAppender`).
    private var submitted: [(pending: DiskPipelineLog.Pending, offset: Int)] = []
    /// Entries staged in the active segment's appender for the next write, and their bytes.
    private var buffered: [(pending: DiskPipelineLog.Pending, offset: Int)] = []
    private var bufferedBytes = 0
    /// Bytes of entries taken from the queue and not yet published or failed.
    private var inFlight = 0
    /// Written since the last fsync, and since when.
    private var dirtySince: ContinuousClock.Instant?
    private var savedCursors: [ComponentID: UInt64] = [:]
    /// Every reader's committed position, not yet saved, and when positions were last
    /// saved: with `fsync: interval` they go to disk at most once an interval (each
    /// save is a write, an fsync and a directory fsync; a crash in between only
    /// repeats deliveries, as the interval already allows for entries).
    private var unsavedCursors: [(ComponentID, UInt64)]?
    private var cursorsSavedAt: ContinuousClock.Instant?
    /// The last write failed (a full disk): the next round first gives the active
    /// segment's space back if every reader is past it.
    private var lastWriteFailed = false

    private var settings: DiskLogSettings { log.settings }
    private var logger: Logger { log.logger }
    /// Staged bytes that are written (and, unless every write waits for an fsync,
    /// answered) before the next entry is staged. A direct write waits for the
    /// device, so an entry that waits for a whole round of others is answered late;
    /// with a few hundred KiB per write the first clients hear back after one
    /// request's write, not after everyone's. With `fsync: always` the round stays
    /// one write and one fsync.
    private var maxBuffer: Int { settings.fsync == .always ? 8 << 20 : 512 << 10 }

    /// Where new segments submit their writes (fsync `interval` or `never`).
    private lazy var aio = AIOContext()

    /// Whether new segments are opened for direct I/O: `direct_io`, until the file
    /// system refuses it once.
    private lazy var directIO = settings.directIO

    /// Says once that the file system refuses direct I/O, and stops asking for it.
    private func noteBufferedWrites(_ appender: SegmentAppender) {
        guard directIO, !appender.direct else { return }
        directIO = false
        logger.info("pipeline log: the file system refuses direct I/O; segments are written through the page cache",
                    metadata: ["pipeline": "\(log.name)", "directory": "\(log.directory)"])
    }

    /// Goes on writing `active` (the last segment found at open), or starts a new
    /// segment with the first append when there is none or it cannot be continued.
    init(log: DiskPipelineLog, active: Active?) {
        self.log = log
        if let active {
            do {
                let appender = try SegmentAppender(fd: active.fd, path: active.path, direct: active.direct, size: active.bytes)
                self.active = Segment(first: active.first, appender: appender)
                noteBufferedWrites(appender)
            } catch {
                log.logger.warning("pipeline log: cannot continue the last segment; the next entry starts a new one",
                                   metadata: ["pipeline": "\(log.name)", "error": "\(error)"])
                close(active.fd)
            }
        }
    }

    /// What a round of writing has to tell other threads. The thread that holds the
    /// writer delivers it after letting go, so that a client's answer (which may read
    /// and append the client's next request on the same thread) never runs inside it.
    struct Answers: Sendable {
        var durable: [(callback: @Sendable (Bool) -> Void, stored: Bool)] = []
        var readers: [CheckedContinuation<Void, Never>] = []
        var flushes: [DispatchSemaphore] = []
        /// An inline write left the segment dirty: the writer thread must wake to
        /// schedule its fsync.
        var wakeWriter = false

        func deliver() {
            for reader in readers { reader.resume() }
            for waiter in durable { waiter.callback(waiter.stored) }
            for flush in flushes { flush.signal() }
        }
    }

    private var answers = Answers()

    private struct Round {
        var pending: [DiskPipelineLog.Pending]
        var deletions: [DiskPipelineLog.SegmentInfo]
        var cursors: [(ComponentID, UInt64)]?
        var closing: Bool
        var flushes: [DispatchSemaphore]
    }

    /// The writer thread: sleeps until signalled or until an fsync or a save of
    /// positions is due, then runs a round. Returns when the log is closed.
    static func runThread(_ log: DiskPipelineLog) {
        while true {
            let timeout = log.writer.withLock { writer in writer?.nextWake() ?? .distantFuture }
            let timedOut = log.wake.wait(timeout: timeout) == .timedOut
            let (answers, closing) = log.writer.withLock { writer -> (Answers, Bool) in
                // Taken while holding the writer: a loop writing inline in between
                // would otherwise write newer entries before these.
                let round = log.state.withLock { s -> Round in
                    s.writerSignaled = false
                    let round = Round(pending: s.pending, deletions: s.toDelete,
                                      cursors: s.cursorsDirty ? s.readers.map { ($0.key, $0.value.committed) } : nil,
                                      closing: s.closed, flushes: s.flushRequests)
                    s.pending.removeAll(keepingCapacity: true)
                    s.toDelete.removeAll()
                    s.cursorsDirty = false
                    s.flushRequests.removeAll()
                    return round
                }
                return (writer?.run(round) ?? Answers(flushes: round.flushes), round.closing)
            }
            answers.deliver()
            // Clients first, then readers: a submitted write no later one completed.
            if timedOut { log.writer.withLock { writer -> Answers? in writer?.completeSubmitted() }?.deliver() }
            if closing {
                // Flushes asked for while the last round ran see `writerFinished` or are here.
                let late = log.state.withLock { s -> [DispatchSemaphore] in
                    defer { s.flushRequests.removeAll() }
                    return s.flushRequests
                }
                for flush in late { flush.signal() }
                // The writer refers to the log: let it go.
                log.writer.withLock { $0 = nil }
                log.writerDone.signal()
                return
            }
        }
    }

    /// Writes what is queued on the calling thread: an appender that found the writer
    /// free (fsync `interval` or `never`). Its request is answered without two
    /// thread hand-offs; the writer thread still fsyncs, saves positions and deletes
    /// segments. Returns nil, writing nothing, while inline writes are suspended.
    func writeQueued() -> Answers? {
        let now = ContinuousClock.now
        if let until = inlineSuspendedUntil, now < until { return nil }
        // A write in flight: the next must wait for it, and an event loop does not
        // wait for the device. The writer thread, which waits for it, writes next.
        // One that completed is handed to readers here (the writer thread wakes for
        // it only when no write follows soon; see `nextWake`).
        let chained = !submitted.isEmpty
        if chained {
            guard active?.appender.pollSubmitted() ?? true else { return nil }
            collectSubmitted()
        }
        let pending = log.state.withLock { s -> [DiskPipelineLog.Pending] in
            // Once closing, the writer thread's last round takes what is left.
            guard !s.closed else { return [] }
            defer { s.pending.removeAll(keepingCapacity: true) }
            return s.pending
        }
        let wasClean = dirtySince == nil
        writeTime = .zero
        writtenBytes = 0
        write(pending)
        if writtenBytes > 0 { judgeInlineWrite(took: writeTime, bytes: writtenBytes, now: now) }
        var result = takeAnswers()
        if case .interval = settings.fsync, wasClean, dirtySince != nil { result.wakeWriter = true }
        // The first write in flight: the writer thread sets its timer for it.
        if !chained, !submitted.isEmpty { result.wakeWriter = true }
        return result
    }

    /// Until when appenders do not write inline (the disk was slow).
    private var inlineSuspendedUntil: ContinuousClock.Instant?
    /// Time spent in segment writes, and their bytes, since `writeQueued` began
    /// (not starting segments, whose fsyncs are not the device's pace).
    private var writeTime: Duration = .zero
    private var writtenBytes = 0
    /// A moving average of inline writes' time over a local disk's (1: as slow as
    /// `slowInlineWrite` plus 1 ms per 400 KB).
    private var inlineSlowness = 0.0

    /// An event loop must not wait for a slow volume (a network disk). One slow write
    /// is a hiccup; when they keep coming, the writer thread writes alone for 10 s.
    private func judgeInlineWrite(took: Duration, bytes: Int, now: ContinuousClock.Instant) {
        let allowance = settings.slowInlineWrite + .microseconds(bytes / 400)
        let ratio = allowance > .zero ? took / allowance : .infinity
        inlineSlowness = 0.8 * inlineSlowness + 0.2 * min(ratio, 100)
        guard inlineSlowness > 1 else { return }
        inlineSlowness = 0
        // Said once; a disk that stays slow is not news every 10 s.
        let level: Logger.Level = inlineSuspendedUntil == nil ? .info : .debug
        inlineSuspendedUntil = now + .seconds(10)
        logger.log(level: level, "pipeline log: the disk is slower than a local one; event loops leave writing to the writer thread",
                   metadata: ["pipeline": "\(log.name)", "write": "\(took)", "bytes": "\(bytes)"])
    }

    private func takeAnswers() -> Answers {
        defer { answers = Answers() }
        return answers
    }

    /// When the writer thread must wake by itself: a submitted write to hand to
    /// readers, the next fsync of the active segment, or the next save of positions.
    private func nextWake() -> DispatchTime {
        // A submitted write that no later one completed: readers wait for it.
        if !submitted.isEmpty { return .now() + .milliseconds(2) }
        guard case .interval(let interval) = settings.fsync else { return .distantFuture }
        guard let due = [dirtySince, unsavedCursors == nil ? nil : cursorsSavedAt].compactMap({ $0 }).min() else { return .distantFuture }
        let remaining = due + interval - ContinuousClock.now
        let nanos = max(0, remaining.components.seconds * 1_000_000_000 + remaining.components.attoseconds / 1_000_000_000)
        return .now() + .nanoseconds(Int(min(nanos, Int64(Int32.max))))
    }

    private func run(_ round: Round) -> Answers {
        write(round.pending)
        if case .interval(let interval) = settings.fsync, let since = dirtySince, ContinuousClock.now - since >= interval {
            syncActive()
        }
        if round.closing || !round.flushes.isEmpty { syncActive() }
        if let cursors = round.cursors { unsavedCursors = cursors }
        if let cursors = unsavedCursors, cursorSaveDue(urgent: round.closing || !round.flushes.isEmpty) {
            unsavedCursors = nil
            cursorsSavedAt = ContinuousClock.now
            save(cursors)
        }
        delete(round.deletions)
        if round.closing {
            // The padding cut is made durable too.
            retireActive(sync: true)
            let waiters = log.state.withLock { s -> [@Sendable (Bool) -> Void] in
                s.writerFinished = true
                let waiters = s.durableWaiters.map(\.callback)
                s.durableWaiters.removeAll()
                return waiters
            }
            answers.durable += waiters.map { ($0, false) }
        }
        answers.flushes += round.flushes
        return takeAnswers()
    }

    // MARK: Writing

    private func write(_ pending: [DiskPipelineLog.Pending]) {
        guard let first = pending.first else { return }
        if lastWriteFailed { releaseActiveIfRead(next: first.sequence) }
        let segmentLimit = settings.effectiveSegmentBytes
        for entry in pending {
            inFlight += entry.size
            if settings.whenFull == .dropOldest { makeRoom(for: entry) }
            let used = (active?.bytes ?? 0) + bufferedBytes
            if active == nil || (used > 0 && used + entry.size > segmentLimit) {
                writeBuffer()
                publishWritten()
                guard startSegment(first: entry.sequence) else {
                    fail([entry], reason: "cannot start a new segment")
                    continue
                }
            }
            let appender = active!.appender
            let offset = appender.end
            entry.withPayload { payload in
                appender.append(SegmentFormat.header(payloadLength: entry.payloadLength, sequence: entry.sequence, items: entry.items,
                                                     signal: entry.signal, appendedAtMillis: entry.appendedAtMillis,
                                                     payloadCRC: SegmentFormat.entryChecksum(payload)))
                appender.append(payload)
            }
            bufferedBytes += entry.size
            buffered.append((entry, offset))
            if bufferedBytes >= maxBuffer {
                writeBuffer()
                if settings.fsync != .always { publishWritten() }
            }
        }
        writeBuffer()
        publishWritten()
    }

    /// Writes the staged entries at the end of the active segment, or submits them
    /// (and answers their clients). On failure the file is cut back to where they
    /// started, and they fail.
    private func writeBuffer() {
        guard !buffered.isEmpty, let current = active else { return }
        bufferedBytes = 0
        do {
            let started = ContinuousClock.now
            // The write before is complete first, and its entries handed on in order.
            collectSubmitted()
            let bytes = current.appender.end - current.appender.committed
            try current.appender.flush()
            writeTime += ContinuousClock.now - started
            writtenBytes += bytes
            noteBufferedWrites(current.appender)
            lastWriteFailed = false
            if current.appender.writing {
                submitted = buffered
                acknowledge(through: buffered.last!.pending.sequence)
            } else {
                written.append(contentsOf: buffered)
            }
            if dirtySince == nil { dirtySince = ContinuousClock.now }
            buffered.removeAll(keepingCapacity: true)
        } catch {
            let failed = buffered.map(\.pending)
            buffered.removeAll(keepingCapacity: true)
            // Earlier entries are answered first: sequences are answered in order.
            publishWritten()
            fail(failed, reason: "\(error)")
        }
    }

    /// Answers `whenDurable` through `sequence`: its entries were submitted.
    private func acknowledge(through sequence: UInt64) {
        let durable = log.state.withLock { s -> [(callback: @Sendable (Bool) -> Void, stored: Bool)] in
            s.resolvedThrough = max(s.resolvedThrough, sequence)
            return takeDurableWaiters(&s)
        }
        answers.durable += durable
    }

    /// The writer thread, after answering a round's clients: waits for the submitted
    /// write and hands its entries to readers.
    func completeSubmitted() -> Answers {
        collectSubmitted()
        return takeAnswers()
    }

    /// Waits for the active segment's submitted write, if any, and hands its entries
    /// to readers.
    private func collectSubmitted() {
        if !submitted.isEmpty, let current = active {
            current.appender.completeSubmitted()
            if let lost = current.appender.takeLostWrite() {
                // The device failed the write twice after its clients were answered.
                // Readers still get entries whose batches are in memory; the rest read
                // back damaged and are counted as such.
                log.counters.writeErrors.increment()
                logger.error("pipeline log: a submitted write failed after its entries were acknowledged; they are not on disk",
                             metadata: ["pipeline": "\(log.name)", "error": "\(lost)", "entries": "\(submitted.count)"])
            }
            written.append(contentsOf: submitted)
            submitted.removeAll(keepingCapacity: true)
            publishWritten()
        }
    }

    /// Hands written entries to readers and answers `whenDurable`; with
    /// `fsync: always`, after one fsync for all of them.
    private func publishWritten() {
        guard !written.isEmpty, let current = active else { return }
        if settings.fsync == .always {
            do {
                try POSIXFile.syncData(current.fd, path: current.path)
                dirtySince = nil
            } catch {
                // What reached the disk is unknown: cut these entries off and leave
                // the segment; the next entry starts a new one.
                _ = ftruncate(current.fd, off_t(written[0].offset))
                close(current.fd)
                active = nil
                dirtySince = nil
                let failed = written.map(\.pending)
                written.removeAll(keepingCapacity: true)
                fail(failed, reason: "\(error)")
                return
            }
        }
        let entries = written
        written.removeAll(keepingCapacity: true)
        let bytes = entries.reduce(0) { $0 + $1.pending.size }
        inFlight -= bytes
        let (durable, readers, recovered) = log.state.withLock { s -> ([(callback: @Sendable (Bool) -> Void, stored: Bool)], [CheckedContinuation<Void, Never>], Bool) in
            let segmentIndex = s.segments.count - 1
            for (entry, offset) in entries {
                s.totalItems += entry.items
                s.totalBytes += entry.size
                s.entries.append(DiskPipelineLog.IndexEntry(
                    sequence: entry.sequence, segment: current.first, offset: offset, size: entry.size, items: entry.items,
                    appendedAtMillis: entry.appendedAtMillis, cumulativeItems: s.totalItems, cumulativeBytes: s.totalBytes,
                    batch: entry.batch, cachedBytes: entry.cachedBytes))
                s.segments[segmentIndex].lastSequence = entry.sequence
            }
            s.segments[segmentIndex].bytes += bytes
            s.diskBytes += bytes
            s.pendingBytes -= bytes
            s.resolvedThrough = max(s.resolvedThrough, entries.last!.pending.sequence)
            let recovered = s.failure != nil
            s.failure = nil
            return (takeDurableWaiters(&s), takeReaderWaiters(&s), recovered)
        }
        if recovered {
            logger.info("pipeline log: writing works again; receivers take data again", metadata: ["pipeline": "\(log.name)"])
        }
        answers.readers += readers
        answers.durable += durable
    }

    /// Entries that could not be stored: gone from the log, their clients told to retry.
    private func fail(_ entries: [DiskPipelineLog.Pending], reason: String) {
        guard !entries.isEmpty else { return }
        lastWriteFailed = true
        let bytes = entries.reduce(0) { $0 + $1.size }
        inFlight -= bytes
        log.counters.writeErrors.increment()
        let retryAt = ContinuousClock.now + settings.writeRetryDelay
        let (durable, firstFailure) = log.state.withLock { s -> ([(callback: @Sendable (Bool) -> Void, stored: Bool)], Bool) in
            s.pendingBytes -= bytes
            for entry in entries {
                s.cachedBytes -= entry.cachedBytes
                s.failed.insert(entry.sequence)
            }
            s.resolvedThrough = max(s.resolvedThrough, entries.last!.sequence)
            if s.failed.count > 4096 {
                let keepFrom = s.resolvedThrough > 4096 ? s.resolvedThrough - 4096 : 0
                s.failed = s.failed.filter { $0 > keepFrom }
            }
            let firstFailure = s.failure == nil
            s.failure = DiskPipelineLog.WriteFailure(retryAt: retryAt, probing: false)
            return (takeDurableWaiters(&s), firstFailure)
        }
        let level: Logger.Level = firstFailure ? .error : .debug
        logger.log(level: level, "pipeline log: cannot write to disk; receivers answer 503 and clients retry until it can",
                   metadata: ["pipeline": "\(log.name)", "error": "\(reason)", "entries": "\(entries.count)",
                              "retry_in": "\(settings.writeRetryDelay)"])
        answers.durable += durable
    }

    private func takeDurableWaiters(_ s: inout DiskPipelineLog.State) -> [(callback: @Sendable (Bool) -> Void, stored: Bool)] {
        guard !s.durableWaiters.isEmpty else { return [] }
        var ready: [(callback: @Sendable (Bool) -> Void, stored: Bool)] = []
        let through = s.resolvedThrough, failed = s.failed
        s.durableWaiters.removeAll { waiter in
            guard waiter.sequence <= through else { return false }
            ready.append((waiter.callback, !failed.contains(waiter.sequence)))
            return true
        }
        return ready
    }

    private func takeReaderWaiters(_ s: inout DiskPipelineLog.State) -> [CheckedContinuation<Void, Never>] {
        var waiters: [CheckedContinuation<Void, Never>] = []
        for key in s.readers.keys {
            if let waiter = s.readers[key]!.waiter {
                waiters.append(waiter)
                s.readers[key]!.waiter = nil
            }
        }
        return waiters
    }

    // MARK: Segments

    private func startSegment(first: UInt64) -> Bool {
        retireActive(sync: dirtySince != nil)
        let path = log.directory + "/" + SegmentFormat.segmentName(first: first)
        let (fd, direct) = SegmentAppender.open(path, flags: O_CREAT | O_TRUNC, direct: directIO)
        guard fd >= 0 else {
            logger.debug("pipeline log: cannot create a segment", metadata: ["path": "\(path)", "error": "\(String(cString: strerror(errno)))"])
            return false
        }
        let appender: SegmentAppender
        // With `always` a client waits for the fsync anyway, which waits for the write.
        do {
            appender = try SegmentAppender(fd: fd, path: path, direct: direct, size: 0,
                                           aio: settings.fsync != .always ? aio : nil, reserve: settings.effectiveSegmentBytes)
        } catch {
            close(fd)
            return false
        }
        if settings.fsync != .never { try? POSIXFile.syncDirectory(log.directory) }
        active = Segment(first: first, appender: appender)
        noteBufferedWrites(appender)
        let submits = appender.submits
        log.state.withLock { s in
            s.segments.append(DiskPipelineLog.SegmentInfo(first: first, path: path, bytes: 0, lastSequence: 0, quarantined: false))
            s.submitsWrites = submits
        }
        return true
    }

    /// Closes the active segment for good: cuts its direct-I/O padding and, when
    /// `sync` (and the policy fsyncs at all), makes what it holds durable.
    private func retireActive(sync: Bool) {
        collectSubmitted()
        guard let old = active else { return }
        old.appender.finish()
        if settings.fsync != .never, sync {
            do { try POSIXFile.syncData(old.fd, path: old.path) } catch {
                logger.error("pipeline log: fsync of a finished segment failed", metadata: ["pipeline": "\(log.name)", "error": "\(error)"])
            }
        }
        dirtySince = nil
        close(old.fd)
        active = nil
        log.state.withLock { $0.submitsWrites = false }
    }

    /// After a failed write: when every reader has committed the whole active
    /// segment, starts the next one so the old one can be deleted. Segments go only
    /// once they are not the one being written, so without this a segment that
    /// filled the file system alone (one larger than the free space) would keep its
    /// space forever and the log would refuse data for good.
    private func releaseActiveIfRead(next: UInt64) {
        guard let current = active, current.bytes > 0 else { return }
        let released = log.state.withLock { s -> Bool in
            guard let last = s.segments.last, last.first == current.first, last.lastSequence > 0,
                  let floor = s.floor, floor >= last.lastSequence else { return false }
            return true
        }
        guard released, startSegment(first: next) else { return }
        delete(log.state.withLock { $0.removeReleasedSegments() })
    }

    private func syncActive() {
        collectSubmitted()
        guard let current = active, dirtySince != nil else { return }
        do { try POSIXFile.syncData(current.fd, path: current.path) } catch {
            logger.error("pipeline log: fsync failed", metadata: ["pipeline": "\(log.name)", "error": "\(error)"])
        }
        dirtySince = nil
    }

    /// `when_full: drop_oldest`: deletes the oldest segments, read or not, until the
    /// entry fits; if only the active segment is left, starts a new one first so the
    /// old one can go too.
    private func makeRoom(for entry: DiskPipelineLog.Pending) {
        let limit = settings.maxSizeBytes
        while true {
            // inFlight holds this entry and every taken one not yet counted in diskBytes.
            let over = log.state.withLock { $0.diskBytes } + inFlight > limit
            guard over else { return }
            if log.state.withLock({ $0.segments.count }) <= 1 {
                guard let current = active, current.bytes + bufferedBytes > 0 else { return }
                writeBuffer()
                publishWritten()
                guard startSegment(first: entry.sequence) else { return }
            }
            guard dropOldestSegment() else { return }
        }
    }

    private func dropOldestSegment() -> Bool {
        let dropped = log.state.withLock { s -> (segment: DiskPipelineLog.SegmentInfo, entries: Int, items: Int, moved: Int)? in
            guard s.segments.count > 1 else { return nil }
            let segment = s.segments.removeFirst()
            s.diskBytes -= segment.bytes
            var entries = 0, items = 0
            while s.head < s.entries.count, s.entries[s.head].sequence <= segment.lastSequence {
                if !s.entries[s.head].corrupt {
                    entries += 1
                    items += s.entries[s.head].items
                }
                s.cachedBytes -= s.entries[s.head].cachedBytes
                s.entries[s.head].batch = nil
                s.head += 1
            }
            var moved = 0
            for key in s.readers.keys where s.readers[key]!.committed < segment.lastSequence {
                s.readers[key]!.committed = segment.lastSequence
                s.readers[key]!.readPosition = max(s.readers[key]!.readPosition, segment.lastSequence)
                moved += 1
            }
            if moved > 0 { s.cursorsDirty = true }
            return (segment, entries, items, moved)
        }
        guard let dropped else { return false }
        remove(dropped.segment)
        if dropped.items > 0 || dropped.entries > 0 {
            log.counters.dropped.add(dropped.items)
            logger.warning("pipeline log full: dropped the oldest segment before every exporter had it (when_full: drop_oldest)",
                           metadata: ["pipeline": "\(log.name)", "segment": "\(dropped.segment.path)", "entries": "\(dropped.entries)",
                                      "items": "\(dropped.items)", "limit_bytes": "\(settings.maxSizeBytes)"])
        }
        return true
    }

    private func delete(_ segments: [DiskPipelineLog.SegmentInfo]) {
        for segment in segments { remove(segment) }
    }

    /// Deletes a released segment, or leaves a quarantined one as `.corrupt` for inspection.
    private func remove(_ segment: DiskPipelineLog.SegmentInfo) {
        if segment.quarantined {
            if !segment.path.hasSuffix(".corrupt") { rename(segment.path, segment.path + ".corrupt") }
        } else {
            unlink(segment.path)
        }
    }

    // MARK: Cursors

    private func cursorSaveDue(urgent: Bool) -> Bool {
        guard case .interval(let interval) = settings.fsync, !urgent, let last = cursorsSavedAt else { return true }
        return ContinuousClock.now - last >= interval
    }

    private func save(_ cursors: [(ComponentID, UInt64)]) {
        var failed = false
        for (reader, committed) in cursors where savedCursors[reader] != committed {
            do {
                try log.cursorStore.save(reader, committed: committed)
                savedCursors[reader] = committed
            } catch {
                failed = true
                logger.warning("pipeline log: cannot save a reader's position; it will be retried (a restart now would repeat some deliveries)",
                               metadata: ["pipeline": "\(log.name)", "reader": "\(reader)", "error": "\(error)"])
            }
        }
        if failed { log.state.withLock { $0.cursorsDirty = true } }
    }
}
