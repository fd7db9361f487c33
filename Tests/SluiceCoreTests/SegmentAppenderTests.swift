import CSluiceShims
import Foundation
import Logging
import Testing
@testable import SluiceCore

/// The direct-I/O appender: what reaches the file, its padding, reopening in the
/// middle of a block, failures, and recovery of a padded segment.
@Suite struct SegmentAppenderTests {

    /// Bytes that differ at every offset, so a misplaced block shows.
    static func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &* 7 &+ ($0 >> 8)) }
    }

    static func contents(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    static func make(_ path: String, direct: Bool = true, create: Bool = true) throws -> SegmentAppender {
        let (fd, isDirect) = SegmentAppender.open(path, flags: create ? O_CREAT | O_TRUNC : 0, direct: direct)
        #expect(fd >= 0)
        let size = try POSIXFile.size(fd, path: path)
        return try SegmentAppender(fd: fd, path: path, direct: isDirect, size: size)
    }

    /// Appends entries of sizes around block and staging boundaries (one larger than
    /// the staging buffer), flushing after every second one; returns what was appended.
    static func appendAroundBoundaries(_ appender: SegmentAppender, afterFlush: () -> Void = {}) throws -> [UInt8] {
        var expected: [UInt8] = []
        for (index, size) in [36, 1, 4095, 4096, 4097, 10_000, SegmentAppender.stagingCapacity + 12_345, 7, 300_000].enumerated() {
            let bytes = pattern(size, seed: UInt8(index))
            appender.append(bytes)
            expected += bytes
            if index % 2 == 1 {
                try appender.flush()
                #expect(appender.committed == expected.count)
                afterFlush()
            }
        }
        return expected
    }

    @Test(arguments: [true, false])
    func appendedBytesReachTheFileInOrder(direct: Bool) throws {
        let path = DiskPipelineLogTests.temporaryDirectory() + "/segment.log"
        let appender = try Self.make(path, direct: direct)
        defer { close(appender.fd) }
        if direct {
            // ext4, xfs and recent tmpfs take O_DIRECT; the flag is really on the descriptor.
            #expect(appender.direct == (fcntl(appender.fd, F_GETFL) & sluice_o_direct() != 0))
        }
        let expected = try Self.appendAroundBoundaries(appender)
        try appender.flush()
        #expect(appender.committed == expected.count)
        let padded = try Self.contents(path)
        if appender.direct {
            // The file ends on a block boundary, zeros after the entries.
            #expect(padded.count % SegmentAppender.blockSize == 0)
            #expect(padded.count - expected.count < SegmentAppender.blockSize)
            #expect(padded[expected.count...].allSatisfy { $0 == 0 })
        }
        #expect(Array(padded.prefix(expected.count)) == expected)
        appender.finish()
        #expect(try Self.contents(path) == expected)
    }

    @Test func submittedWritesReachTheFileInOrderAndTheReservationIsCut() throws {
        let path = DiskPipelineLogTests.temporaryDirectory() + "/segment.log"
        let (fd, direct) = SegmentAppender.open(path, flags: O_CREAT | O_TRUNC, direct: true)
        #expect(fd >= 0)
        defer { close(fd) }
        let reserve = 16 << 20
        let aio: AIOContext = try #require(AIOContext())
        let appender = try SegmentAppender(fd: fd, path: path, direct: direct, size: 0, aio: aio, reserve: reserve)
        let submits = direct && sluice_is_tmpfs(fd) == 0
        #expect(appender.submits == submits)
        if submits {
            // The whole segment is reserved, so no write extends the file.
            #expect(try POSIXFile.size(fd, path: path) == reserve)
        }
        // Entries staged while a write is in flight.
        let expected = try Self.appendAroundBoundaries(appender) { if submits { #expect(appender.writing) } }
        try appender.flush()
        appender.completeSubmitted()
        #expect(!appender.writing)
        #expect(appender.takeLostWrite() == nil)
        #expect(Array(try Self.contents(path).prefix(expected.count)) == expected)
        appender.finish()
        #expect(try Self.contents(path) == expected)
    }

    @Test func reopenedInTheMiddleOfABlockKeepsWhatWasThere() throws {
        let path = DiskPipelineLogTests.temporaryDirectory() + "/segment.log"
        let first = Self.pattern(5_000, seed: 1)
        do {
            let appender = try Self.make(path)
            appender.append(first)
            try appender.flush()
            appender.finish()
            close(appender.fd)
        }
        let appender = try Self.make(path, create: false)
        defer { close(appender.fd) }
        #expect(appender.committed == first.count)
        let second = Self.pattern(3_000, seed: 2)
        appender.append(second)
        try appender.flush()
        appender.finish()
        #expect(try Self.contents(path) == first + second)
    }

    @Test func aFailedWriteLeavesTheCommittedBytesAndTheNextWriteWorks() throws {
        guard let mountPoint = try DiskPipelineLogTests.mountSmallFileSystem() else { return }
        defer { _ = DiskPipelineLogTests.shell(["umount", "-l", mountPoint]) }
        let path = mountPoint + "/segment.log"
        let appender = try Self.make(path)
        defer { close(appender.fd) }
        let kept = Self.pattern(10_000, seed: 3)
        appender.append(kept)
        try appender.flush()
        // More than the 256 KiB file system holds.
        appender.append(Self.pattern(SegmentAppender.stagingCapacity + 100, seed: 4))
        #expect(throws: POSIXFile.Failure.self) { try appender.flush() }
        #expect(appender.committed == kept.count)
        #expect(appender.end == kept.count)
        // The space is there again for what fits; the entry after the failure
        // follows the kept bytes directly.
        let next = Self.pattern(20_000, seed: 5)
        appender.append(next)
        try appender.flush()
        appender.finish()
        #expect(try Self.contents(path) == kept + next)
    }

    @Test func recoveryTakesAZeroTailForPaddingInEverySegment() async throws {
        let base = DiskPipelineLogTests.temporaryDirectory()
        let (directory, files) = try await DiskPipelineLogTests.writeClosedLog(base, count: 20)
        #expect(files.count >= 2)
        // What a crash before a segment's padding was cut leaves: zeros short of a
        // block after the last entry, in an older segment and in the last one.
        for name in [files[0], files[files.count - 1]] {
            let handle = try #require(FileHandle(forUpdatingAtPath: directory + "/" + name))
            try handle.seekToEnd()
            try handle.write(contentsOf: [UInt8](repeating: 0, count: 1_000))
            try handle.close()
        }
        let metrics = MetricsRegistry()
        let log = try DiskPipelineLogTests.open(base, metrics: metrics)
        defer { log.close() }
        #expect(DiskPipelineLogTests.segments(log, suffix: ".corrupt").isEmpty)
        #expect(!metrics.exposition().contains(#"sluice_pipeline_log_quarantined_segments_total{pipeline="logs/audit"} 1"#))
        let cursor = log.cursor(DiskPipelineLogTests.reader)
        let entries = await DiskPipelineLogTests.readAvailable(log, DiskPipelineLogTests.reader, cursor)
        #expect(entries.map(\.sequence) == (1...20).map { UInt64($0) })
        #expect(try await DiskPipelineLogTests.append(log, "next") == 21)
    }

    @Test func zerosOfABlockOrMoreAfterTheLastEntryArePadding() async throws {
        // What a crash leaves of a segment that reserved its space for submitted
        // writes: megabytes of zeros after the last entry.
        let base = DiskPipelineLogTests.temporaryDirectory()
        let (directory, files) = try await DiskPipelineLogTests.writeClosedLog(base, count: 20)
        for name in [files[0], files[files.count - 1]] {
            let handle = try #require(FileHandle(forUpdatingAtPath: directory + "/" + name))
            try handle.seekToEnd()
            try handle.write(contentsOf: [UInt8](repeating: 0, count: 3 << 20))
            try handle.close()
        }
        let log = try DiskPipelineLogTests.open(base)
        defer { log.close() }
        #expect(DiskPipelineLogTests.segments(log, suffix: ".corrupt").isEmpty)
        let cursor = log.cursor(DiskPipelineLogTests.reader)
        let entries = await DiskPipelineLogTests.readAvailable(log, DiskPipelineLogTests.reader, cursor)
        #expect(entries.map(\.sequence) == (1...20).map { UInt64($0) })
        // Cut off, so the next entry follows the last one.
        #expect(try Self.contents(directory + "/" + files[files.count - 1]).suffix(16).contains { $0 != 0 })
    }

    @Test func zerosWhereEntriesWereAreDamageNotPadding() async throws {
        let base = DiskPipelineLogTests.temporaryDirectory()
        let (directory, files) = try await DiskPipelineLogTests.writeClosedLog(base, count: 20)
        #expect(files.count >= 2)
        // The older segment's last entry overwritten with zeros: the next segment's
        // name says it was there.
        let victim = directory + "/" + files[0]
        let bytes = try Self.contents(victim)
        let handle = try #require(FileHandle(forUpdatingAtPath: victim))
        try handle.seek(toOffset: UInt64(bytes.count - 10))
        try handle.write(contentsOf: [UInt8](repeating: 0, count: SegmentAppender.blockSize))
        try handle.close()
        let log = try DiskPipelineLogTests.open(base)
        defer { log.close() }
        #expect(FileManager.default.fileExists(atPath: victim + ".corrupt"))
    }
}

/// Event loops write their own entry only while the disk keeps a local disk's pace.
@Suite struct InlineWriteTests {
    @Test func aSlowDiskLeavesWritingToTheWriterThreadAndSaysSoOnce() async throws {
        let logs = CapturedLogs()
        var settings = DiskLogSettings(segmentBytes: 1 << 20)
        // Every write is "slow".
        settings.slowInlineWrite = .zero
        let base = DiskPipelineLogTests.temporaryDirectory()
        let log = try DiskPipelineLog.open(directory: base, name: "logs/audit", signal: .logs, readers: [DiskPipelineLogTests.reader],
                                           settings: settings, logger: logs.logger(), metrics: MetricsRegistry())
        defer { log.close() }
        let started = ContinuousClock.now
        for i in 1...10 {
            try await DiskPipelineLogTests.append(log, "e\(i)")
            // Apart enough that each would be written inline (one at a time, not
            // within a millisecond of the last), were it not for the slow disk.
            try await Task.sleep(for: .milliseconds(3))
        }
        log.flush()
        let said = logs.all.filter { $0.message.contains("slower than a local one") }
        // Once at info; a pause of 10 s per message after that (a slow run, under
        // ASan, can pass one), never a message per write.
        let pauses = Int((ContinuousClock.now - started) / .seconds(10))
        #expect(said.count >= 1 && said.count <= 1 + pauses, "\(said.map(\.message))")
        #expect(said.filter { $0.level == .info }.count == 1)
        #expect(said.first?.level == .info)
        // Written by the writer thread from then on, and all there.
        let cursor = log.cursor(DiskPipelineLogTests.reader)
        let entries = await DiskPipelineLogTests.readAvailable(log, DiskPipelineLogTests.reader, cursor)
        #expect(entries.map(\.sequence) == (1...10).map { UInt64($0) })
    }
}
