import Foundation
import Logging
import Testing
@testable import SluiceCore

@Suite struct DiskPipelineLogTests {
    static let reader = ComponentID(type: "file", name: "a")
    static let other = ComponentID(type: "splunk_hec", name: "b")
    static let logger = Logger(label: "disk-log-test")

    /// A logs batch of `count` records whose bodies are `tag-0`, `tag-1`, …, padded.
    static func batch(_ tag: String, count: Int = 2, padding: Int = 200) throws -> OTLPBatch {
        let pad = String(repeating: "p", count: padding)
        let records = (0..<count).map { #"{"body":{"stringValue":"\#(tag)-\#($0)"},"attributes":[{"key":"pad","value":{"stringValue":"\#(pad)"}}]}"# }
        let text = #"{"resourceLogs":[{"resource":{"attributes":[]},"scopeLogs":[{"scope":{"name":"t"},"logRecords":[\#(records.joined(separator: ","))]}]}]}"#
        return try OTLPBatch.decode(json: Array(text.utf8), signal: .logs)
    }

    static func bodies(_ entries: [LogEntry]) -> [String] {
        entries.flatMap { entry in entry.batch.withLogs { view in view.records.map { $0.record.body?.stringValue ?? "" } } ?? [] }
    }

    static func temporaryDirectory() -> String {
        let path = NSTemporaryDirectory() + "sluice-disklog-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func open(_ base: String, readers: [ComponentID] = [reader], settings: DiskLogSettings = DiskLogSettings(segmentBytes: 4096),
                     metrics: MetricsRegistry = MetricsRegistry()) throws -> DiskPipelineLog {
        try DiskPipelineLog.open(directory: base, name: "logs/audit", signal: .logs, readers: readers, settings: settings, logger: logger, metrics: metrics)
    }

    static func durable(_ log: DiskPipelineLog, _ sequence: UInt64) async -> Bool {
        await withCheckedContinuation { continuation in log.whenDurable(sequence) { continuation.resume(returning: $0) } }
    }

    @discardableResult
    static func append(_ log: DiskPipelineLog, _ tag: String, count: Int = 2) async throws -> UInt64 {
        let batch = try batch(tag, count: count)
        guard case .appended(let sequence) = log.append(batch, items: batch.itemCount, bytes: batch.memoryBytes) else {
            Issue.record("append refused")
            return 0
        }
        #expect(await durable(log, sequence))
        return sequence
    }

    /// Everything the reader can read now (after `flush`), without waiting for more.
    static func readAvailable(_ log: DiskPipelineLog, _ reader: ComponentID, _ cursor: any LogCursor) async -> [LogEntry] {
        // An answered entry reaches readers once its submitted write is seen to
        // complete, a moment later; a flush waits for that.
        log.flush()
        var entries: [LogEntry] = []
        while case .entries = log.available(reader) { entries += await cursor.read(.unbatched) }
        return entries
    }

    static func segments(_ log: DiskPipelineLog, suffix: String = ".log") -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: log.directory)) ?? []).filter { $0.hasPrefix("segment-") && $0.hasSuffix(suffix) }.sorted()
    }

    /// A log in `base` with `count` appended entries, closed again: its directory and
    /// segment files, for tests that then damage them.
    static func writeClosedLog(_ base: String, count: Int) async throws -> (directory: String, files: [String]) {
        let log = try open(base)
        for i in 1...count { try await append(log, "e\(i)") }
        log.flush()
        let files = segments(log)
        log.close()
        return (log.directory, files)
    }

    static func shell(_ arguments: [String]) -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }

    /// A 256 KiB tmpfs on a new temporary directory (unmount it with `umount -l`), or
    /// nil with an issue recorded when this machine does not allow the mount.
    static func mountSmallFileSystem() throws -> String? {
        let mountPoint = temporaryDirectory() + "/small"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        guard shell(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mountPoint]) else {
            Issue.record("cannot mount a tmpfs here (needs root); ENOSPC not tested")
            return nil
        }
        return mountPoint
    }

    @Test func appendReadCommitDeletesSegments() async throws {
        let base = Self.temporaryDirectory()
        let log = try Self.open(base)
        defer { log.close() }
        let cursor = log.cursor(Self.reader)
        for i in 1...40 { #expect(try await Self.append(log, "e\(i)") == UInt64(i)) }
        log.flush()
        #expect(Self.segments(log).count > 2)
        let used = log.usedBytes
        #expect(used > 40 * 400)
        let entries = await Self.readAvailable(log, Self.reader, cursor)
        #expect(entries.map(\.sequence) == (1...40).map { UInt64($0) })
        #expect(Self.bodies(entries) == (1...40).flatMap { ["e\($0)-0", "e\($0)-1"] })
        #expect(log.lag(Self.reader).entries == 40)
        #expect(log.lag(Self.reader).items == 80)
        cursor.commit(through: 40)
        log.flush()
        #expect(log.lag(Self.reader) == CursorLag(entries: 0, items: 0, bytes: 0, oldestAgeSeconds: 0))
        #expect(Self.segments(log).count == 1)
        #expect(log.usedBytes < used)
        #expect(FileManager.default.fileExists(atPath: log.directory + "/cursors/file_a.cursor"))
    }

    @Test func twoReadersAtDifferentSpeeds() async throws {
        let base = Self.temporaryDirectory()
        let log = try Self.open(base, readers: [Self.reader, Self.other])
        defer { log.close() }
        let fast = log.cursor(Self.reader), slow = log.cursor(Self.other)
        for i in 1...30 { try await Self.append(log, "e\(i)") }
        log.flush()
        let all = await Self.readAvailable(log, Self.reader, fast)
        #expect(all.count == 30)
        fast.commit(through: 30)
        let some = await slow.read(BatchShape(sendBatchSize: 1, timeout: .zero, sendBatchMaxSize: 6))
        #expect(some.map(\.sequence) == [1, 2, 3])
        slow.commit(through: 3)
        log.flush()
        #expect(log.lag(Self.other).entries == 27)
        #expect(log.lag(Self.reader).entries == 0)
        // The slow reader's data is still there, from disk or memory.
        let rest = await Self.readAvailable(log, Self.other, slow)
        #expect(rest.map(\.sequence) == (4...30).map { UInt64($0) })
        #expect(Self.bodies(rest).first == "e4-0")
        // An abandoned attempt is read again.
        slow.rewind()
        #expect(await slow.read(.unbatched).first?.sequence == 4)
    }

    @Test func reopenResumesEachCursor() async throws {
        let base = Self.temporaryDirectory()
        do {
            let log = try Self.open(base, readers: [Self.reader, Self.other])
            let a = log.cursor(Self.reader), b = log.cursor(Self.other)
            for i in 1...20 { try await Self.append(log, "e\(i)") }
            log.flush()
            _ = await Self.readAvailable(log, Self.reader, a)
            _ = await Self.readAvailable(log, Self.other, b)
            a.commit(through: 5)
            b.commit(through: 12)
            log.close()
        }
        let log = try Self.open(base, readers: [Self.reader, Self.other])
        let a = log.cursor(Self.reader), b = log.cursor(Self.other)
        let newcomer = ComponentID(type: "debug")
        let c = log.cursor(newcomer)
        let seq = try await Self.append(log, "after")
        #expect(seq == 21)
        log.flush()
        let fromA = await Self.readAvailable(log, Self.reader, a)
        #expect(fromA.map(\.sequence) == (6...21).map { UInt64($0) })
        #expect(Self.bodies(fromA).prefix(2) == ["e6-0", "e6-1"])
        #expect(Self.bodies(fromA).suffix(2) == ["after-0", "after-1"])
        let fromB = await Self.readAvailable(log, Self.other, b)
        #expect(fromB.map(\.sequence) == (13...21).map { UInt64($0) })
        // A reader without a saved cursor starts at the oldest entry still on disk.
        let fromC = await Self.readAvailable(log, newcomer, c)
        #expect(fromC.first?.sequence == 6)
        log.close()
        #expect(await a.read(.unbatched).isEmpty)
    }

    @Test func tornLastEntryIsTruncated() async throws {
        let base = Self.temporaryDirectory()
        var directory = ""
        do {
            let log = try Self.open(base, settings: DiskLogSettings(fsync: .always))
            for i in 1...5 { try await Self.append(log, "e\(i)") }
            directory = log.directory
            log.close()
        }
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: directory).first { $0.hasPrefix("segment-") })
        let path = directory + "/" + segment
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(truncate(path, off_t(size - 7)) == 0)
        let log = try Self.open(base, settings: DiskLogSettings(fsync: .always))
        defer { log.close() }
        let cursor = log.cursor(Self.reader)
        let entries = await Self.readAvailable(log, Self.reader, cursor)
        #expect(entries.map(\.sequence) == [1, 2, 3, 4])
        #expect(try await Self.append(log, "next") == 5)
        log.flush()
        #expect(await Self.readAvailable(log, Self.reader, cursor).map(\.sequence) == [5])
    }

    @Test func flippedByteInMiddleSegmentIsQuarantined() async throws {
        let base = Self.temporaryDirectory()
        let (directory, files) = try await Self.writeClosedLog(base, count: 40)
        #expect(files.count >= 3)
        let victim = directory + "/" + files[1]
        let handle = try #require(FileHandle(forUpdatingAtPath: victim))
        try handle.seek(toOffset: 60)
        let byte = try #require(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: 60)
        try handle.write(contentsOf: [byte ^ 0xFF])
        try handle.close()
        let metrics = MetricsRegistry()
        let log = try Self.open(base, metrics: metrics)
        defer { log.close() }
        #expect(FileManager.default.fileExists(atPath: victim + ".corrupt"))
        #expect(!FileManager.default.fileExists(atPath: victim))
        #expect(metrics.exposition().contains(#"sluice_pipeline_log_quarantined_segments_total{pipeline="logs/audit"} 1"#))
        let cursor = log.cursor(Self.reader)
        let entries = await Self.readAvailable(log, Self.reader, cursor)
        let lostFirst = try #require(SegmentFormat.firstSequence(ofSegmentNamed: files[1]))
        let nextFirst = try #require(SegmentFormat.firstSequence(ofSegmentNamed: files[2]))
        let expected = (1...40).map { UInt64($0) }.filter { $0 < lostFirst || $0 >= nextFirst }
        #expect(entries.map(\.sequence) == expected)
        #expect(entries.last?.sequence == 40)
        #expect(try await Self.append(log, "next") == 41)
    }

    @Test func blockRefusesWhenFullAndRecoversWhenAReaderCommits() async throws {
        let base = Self.temporaryDirectory()
        let log = try Self.open(base, settings: DiskLogSettings(maxSizeBytes: 16 << 10, whenFull: .block, segmentBytes: 4096))
        defer { log.close() }
        let cursor = log.cursor(Self.reader)
        var appended = 0
        while appended < 200 {
            let batch = try Self.batch("e\(appended)")
            guard case .appended(let sequence) = log.append(batch, items: 2, bytes: batch.memoryBytes) else { break }
            #expect(await Self.durable(log, sequence))
            appended += 1
        }
        #expect(appended > 10 && appended < 200)
        #expect(!log.hasRoom(for: 1000))
        #expect(log.usedBytes <= log.limitBytes)
        let entries = await Self.readAvailable(log, Self.reader, cursor)
        #expect(entries.count == appended)
        cursor.commit(through: entries.last!.sequence)
        log.flush()
        #expect(log.hasRoom(for: 1000))
        try await Self.append(log, "again")
    }

    @Test func dropOldestDropsAndCounts() async throws {
        let base = Self.temporaryDirectory()
        let metrics = MetricsRegistry()
        let log = try Self.open(base, settings: DiskLogSettings(maxSizeBytes: 16 << 10, whenFull: .dropOldest, segmentBytes: 4096), metrics: metrics)
        defer { log.close() }
        let cursor = log.cursor(Self.reader)
        for i in 1...100 { try await Self.append(log, "e\(i)") }
        log.flush()
        #expect(log.usedBytes <= log.limitBytes)
        let entries = await Self.readAvailable(log, Self.reader, cursor)
        let dropped = metrics.counter("sluice_pipeline_log_dropped_items_total", "", labels: [("pipeline", "logs/audit")]).count
        #expect(dropped > 0)
        #expect(entries.reduce(0) { $0 + $1.items } + Int(dropped) == 200)
        #expect(entries.last?.sequence == 100)
    }

    @Test func unwritableDirectoryGivesAClearError() throws {
        let base = Self.temporaryDirectory()
        let file = base + "/not-a-directory"
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        do {
            _ = try Self.open(file)
            Issue.record("opened a log under a file")
        } catch let error as DiskLogError {
            #expect(error.message.contains(file))
            #expect(error.message.contains("Not a directory"))
            #expect(error.message.contains("write access"))
        }
        // A read-only file system, when this machine lets us mount one.
        let mountPoint = base + "/ro"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        guard Self.shell(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mountPoint]) else { return }
        defer { _ = Self.shell(["umount", "-l", mountPoint]) }
        try FileManager.default.createDirectory(atPath: mountPoint + "/logs_audit/cursors", withIntermediateDirectories: true)
        guard Self.shell(["mount", "-o", "remount,ro", mountPoint]) else { return }
        do {
            _ = try Self.open(mountPoint)
            Issue.record("opened a log on a read-only file system")
        } catch let error as DiskLogError {
            #expect(error.message.contains(mountPoint + "/logs_audit"))
            #expect(error.message.contains("Read-only file system"))
        }
    }

    @Test func fullDiskTurnsIntoBackpressureAndRecovers() async throws {
        guard let mountPoint = try Self.mountSmallFileSystem() else { return }
        defer { _ = Self.shell(["umount", "-l", mountPoint]) }
        var settings = DiskLogSettings(fsync: .always, maxSizeBytes: 64 << 20)
        // The wait after a failed write is ended by hand below, not by the clock.
        settings.writeRetryDelay = .seconds(3600)
        let log = try Self.open(mountPoint, settings: settings)
        let cursor = log.cursor(Self.reader)
        let first = try await Self.append(log, "before")
        // Fill the file system.
        let filler = mountPoint + "/filler"
        let fd = Foundation.open(filler, O_WRONLY | O_CREAT, 0o644)
        let chunk = [UInt8](repeating: 1, count: 4096)
        while chunk.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        close(fd)

        let batch = try Self.batch("lost", count: 20)
        guard case .appended(let failedSequence) = log.append(batch, items: 20, bytes: batch.memoryBytes) else {
            Issue.record("append refused before the disk was tried")
            return
        }
        #expect(await Self.durable(log, failedSequence) == false)
        #expect(!log.hasRoom(for: 100))
        #expect(log.append(try Self.batch("refused"), items: 2, bytes: 100) == .full)

        unlink(filler)
        log.retryWritesNow()
        #expect(log.hasRoom(for: 100))
        let after = try await Self.append(log, "after")
        log.flush()
        #expect(log.hasRoom(for: 100))
        let entries = await Self.readAvailable(log, Self.reader, cursor)
        #expect(entries.map(\.sequence) == [first, after])
        #expect(Self.bodies(entries) == ["before-0", "before-1", "after-0", "after-1"])
        log.close()
        // The failed entry left nothing behind on disk either.
        let reopened = try Self.open(mountPoint, settings: DiskLogSettings(fsync: .always, maxSizeBytes: 64 << 20))
        let again = reopened.cursor(ComponentID(type: "fresh"))
        #expect(await Self.readAvailable(reopened, ComponentID(type: "fresh"), again).map(\.sequence) == [first, after])
        reopened.close()
    }

    /// The log's own data fills a file system smaller than one segment: once the
    /// reader has committed everything, the next write starts a new segment and
    /// deletes the old one, so the log takes data again without a restart.
    @Test func segmentLargerThanTheFileSystemIsGivenBackOnceRead() async throws {
        guard let mountPoint = try Self.mountSmallFileSystem() else { return }
        defer { _ = Self.shell(["umount", "-l", mountPoint]) }
        // Segments of 16 MiB (a quarter of max_size) on a 256 KiB file system.
        var settings = DiskLogSettings(fsync: .interval(.milliseconds(50)), maxSizeBytes: 64 << 20)
        settings.writeRetryDelay = .seconds(3600)
        let log = try Self.open(mountPoint, settings: settings)
        defer { log.close() }
        let cursor = log.cursor(Self.reader)
        var stored: [UInt64] = []
        for i in 0..<200 {
            let batch = try Self.batch("fill\(i)", count: 20)
            guard case .appended(let sequence) = log.append(batch, items: 20, bytes: batch.memoryBytes) else { break }
            guard await Self.durable(log, sequence) else { break }
            stored.append(sequence)
        }
        #expect(!stored.isEmpty && stored.count < 200)
        #expect(!log.hasRoom(for: 100))
        #expect(Self.segments(log).count == 1)
        let entries = await Self.readAvailable(log, Self.reader, cursor)
        #expect(entries.map(\.sequence) == stored)
        cursor.commit(through: stored.last!)
        log.flush()
        log.retryWritesNow()
        let after = try await Self.append(log, "after")
        log.flush()
        #expect(log.hasRoom(for: 100))
        #expect(Self.segments(log) == [SegmentFormat.segmentName(first: after)])
        #expect(Self.bodies(await Self.readAvailable(log, Self.reader, cursor)) == ["after-0", "after-1"])
    }

    @Test func concurrentAppendersAndAReaderSeeEverythingOnce() async throws {
        let base = Self.temporaryDirectory()
        let log = try Self.open(base, settings: DiskLogSettings(fsync: .always, segmentBytes: 64 << 10))
        let cursor = log.cursor(Self.reader)
        let reading = Task { () -> [UInt64] in
            var seen: [UInt64] = []
            while true {
                let entries = await cursor.read(BatchShape(sendBatchSize: 50, timeout: .milliseconds(5), sendBatchMaxSize: 100))
                guard let last = entries.last else { return seen }
                seen += entries.map(\.sequence)
                cursor.commit(through: last.sequence)
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<4 {
                group.addTask { for i in 0..<250 { try await Self.append(log, "w\(writer)-\(i)", count: 1) } }
            }
            try await group.waitForAll()
        }
        log.close()
        let seen = await reading.value
        #expect(seen == (1...1000).map { UInt64($0) })
    }

    /// Event loops write inline while the writer thread takes its own round: the
    /// entries still reach the segments in sequence order (a round taken before the
    /// writer lock once let a loop write a newer entry first, and recovery cut the
    /// segment there, answered entries with it).
    @Test func concurrentAppendersWriteInSequenceOrder() async throws {
        let base = Self.temporaryDirectory()
        let log = try Self.open(base, settings: DiskLogSettings(fsync: .interval(.milliseconds(200)), segmentBytes: 256 << 10))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<4 {
                group.addTask { for i in 0..<250 { try await Self.append(log, "w\(writer)-\(i)", count: 1) } }
            }
            try await group.waitForAll()
        }
        log.close()
        let logs = CapturedLogs()
        let reopened = try DiskPipelineLog.open(directory: base, name: "logs/audit", signal: .logs, readers: [Self.reader],
                                                settings: DiskLogSettings(segmentBytes: 256 << 10), logger: logs.logger(), metrics: MetricsRegistry())
        defer { reopened.close() }
        #expect(logs.all.filter { $0.level >= .warning }.map(\.message) == [])
        let entries = await Self.readAvailable(reopened, Self.reader, reopened.cursor(Self.reader))
        #expect(entries.map(\.sequence) == (1...1000).map { UInt64($0) })
    }

    /// A batch decoded from protobuf (decoders keep the request's bytes once a disk
    /// log is open) is written byte for byte as it arrived, and reads back the same
    /// after a restart, when every entry comes from the segment.
    @Test func requestProtobufIsWrittenAsItArrived() async throws {
        let base = Self.temporaryDirectory()
        var log: DiskPipelineLog? = try Self.open(base, settings: DiskLogSettings(segmentBytes: 1 << 20))
        #expect(OTLPBatch.keepsProtobufSource)
        var requests: [[UInt8]] = []
        for i in 1...5 {
            let request = try Self.batch("pb\(i)", count: 3).encodeProtobuf()
            let batch = try OTLPBatch.decode(protobuf: request, signal: .logs)
            #expect(batch.protobufSource.map(Array.init) == request)
            guard case .appended(let sequence) = log!.append(batch, items: batch.itemCount, bytes: batch.memoryBytes) else {
                Issue.record("append refused")
                return
            }
            #expect(await Self.durable(log!, sequence))
            requests.append(request)
        }
        log!.flush()
        let path = log!.directory + "/" + (Self.segments(log!).first ?? "")
        log!.close()
        log = nil
        // The segment is exactly the entries: each a header, then the request's bytes.
        let segment = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        var offset = 0
        for request in requests {
            offset += SegmentFormat.headerSize
            #expect(Array(segment[offset..<offset + request.count]) == request)
            offset += request.count
        }
        #expect(offset == segment.count)
        let reopened = try Self.open(base, settings: DiskLogSettings(segmentBytes: 1 << 20))
        defer { reopened.close() }
        let entries = await Self.readAvailable(reopened, Self.reader, reopened.cursor(Self.reader))
        #expect(Self.bodies(entries) == (1...5).flatMap { i in (0..<3).map { "pb\(i)-\($0)" } })
    }

}
