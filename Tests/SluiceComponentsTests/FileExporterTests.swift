import Foundation
import Logging
import Synchronization
import Testing
import SluiceCore
@testable import SluiceComponents

@Suite struct FileExporterTests {
    // MARK: Output formats

    @Test func jsonLinesRoundTrip() async throws {
        let directory = try TemporaryDirectory()
        // A parent that does not exist yet: the exporter creates it.
        let path = directory.path + "/nested/deeper/out.jsonl"
        let exporter = try #require(makeExporter("path: \(path)"))
        let batches = (0..<4).map { logsBatch(body: "event \($0)") }
        try await exporter.start()
        #expect(await exporter.export(Array(batches[0..<3]), signal: .logs) == .delivered)
        #expect(await exporter.export([batches[3]], signal: .logs) == .delivered)
        await exporter.shutdown()

        let lines = try jsonLines(path)
        #expect(lines.count == 4)
        for (line, batch) in zip(lines, batches) {
            let decoded = try OTLPBatch.decode(json: line, signal: .logs)
            #expect(decoded.encodeProtobuf() == batch.encodeProtobuf())
        }
    }

    @Test func protoFramesRoundTrip() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/out.binpb"
        let exporter = try #require(makeExporter("path: \(path)\nformat: proto\nfsync: true"))
        let batches = (0..<3).map { logsBatch(body: "event \($0)") }
        try await exporter.start()
        #expect(await exporter.export(batches, signal: .logs) == .delivered)
        await exporter.shutdown()

        let frames = try protoFrames(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        #expect(frames.count == 3)
        for (frame, batch) in zip(frames, batches) {
            #expect(frame == batch.encodeProtobuf())
            #expect(try OTLPBatch.decode(protobuf: frame, signal: .logs).encodeProtobuf() == batch.encodeProtobuf())
        }
    }

    // MARK: Start, append, reopen

    @Test func truncatedAtStartUnlessAppend() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/out.jsonl"
        try Data("earlier run\n".utf8).write(to: URL(fileURLWithPath: path))

        let truncating = try #require(makeExporter("path: \(path)"))
        try await truncating.start()
        await truncating.shutdown()
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)).isEmpty)

        try Data("earlier run\n".utf8).write(to: URL(fileURLWithPath: path))
        let appending = try #require(makeExporter("path: \(path)\nappend: true"))
        try await appending.start()
        #expect(await appending.export([logsBatch(body: "new")], signal: .logs) == .delivered)
        await appending.shutdown()
        let lines = try jsonLines(path)
        #expect(lines.count == 2)
        #expect(lines.first == Array("earlier run".utf8))
    }

    @Test func anExporterRebuiltInTheSameRunContinuesTheFile() async throws {
        // A reload builds a new exporter for the same path: what the first one
        // delivered stays.
        let directory = try TemporaryDirectory()
        let path = directory.path + "/out.jsonl"
        let first = try #require(makeExporter("path: \(path)"))
        try await first.start()
        #expect(await first.export([logsBatch(body: "before the reload")], signal: .logs) == .delivered)
        await first.shutdown()
        let rebuilt = try #require(makeExporter("path: \(path)"))
        try await rebuilt.start()
        #expect(await rebuilt.export([logsBatch(body: "after")], signal: .logs) == .delivered)
        await rebuilt.shutdown()
        #expect(try jsonLines(path).count == 2)
    }

    @Test func tornTailIsRepairedWhenTheFileIsContinued() async throws {
        let directory = try TemporaryDirectory()
        let batch = logsBatch(body: "whole")

        // JSON: a line cut short by a crash is ended, so the next starts cleanly.
        let jsonPath = directory.path + "/out.jsonl"
        try Data(Array(batch.encodeJSON().prefix(20))).write(to: URL(fileURLWithPath: jsonPath))
        let json = try #require(makeExporter("path: \(jsonPath)\nappend: true"))
        try await json.start()
        #expect(await json.export([batch], signal: .logs) == .delivered)
        await json.shutdown()
        let lines = try jsonLines(jsonPath)
        #expect(lines.count == 2)
        #expect(try OTLPBatch.decode(json: lines[1], signal: .logs).encodeProtobuf() == batch.encodeProtobuf())

        // proto: a torn frame is cut off, or every later frame would be misread.
        let protoPath = directory.path + "/out.binpb"
        let whole = try FileExporter.encode([batch], format: .proto)
        try Data(whole + Array(whole.prefix(whole.count / 2))).write(to: URL(fileURLWithPath: protoPath))
        let proto = try #require(makeExporter("path: \(protoPath)\nformat: proto\nappend: true"))
        try await proto.start()
        #expect(await proto.export([batch], signal: .logs) == .delivered)
        await proto.shutdown()
        let frames = try protoFrames(Array(try Data(contentsOf: URL(fileURLWithPath: protoPath))))
        #expect(frames == [batch.encodeProtobuf(), batch.encodeProtobuf()])
    }

    @Test func fileMovedAwayIsCreatedAgain() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/out.jsonl"
        let exporter = try #require(makeExporter("path: \(path)"))
        try await exporter.start()
        #expect(await exporter.export([logsBatch(body: "first")], signal: .logs) == .delivered)
        #expect(rename(path, path + ".moved") == 0)
        #expect(await exporter.export([logsBatch(body: "second")], signal: .logs) == .delivered)
        await exporter.shutdown()
        #expect(try jsonLines(path + ".moved").count == 1)
        #expect(try jsonLines(path).count == 1)
    }

    @Test func writeErrorIsRetryableWithThePathAndReason() async throws {
        // /dev/full takes the open and fails every write with ENOSPC.
        guard FileManager.default.fileExists(atPath: "/dev/full") else { return }
        var config = FileExporterConfig(path: "/dev/full")
        config.append = true
        let exporter = FileExporter(id: ComponentID(type: "file"), config: config, logger: Logger(label: "test"))
        try await exporter.start()
        let outcome = await exporter.export([logsBatch(body: "lost?")], signal: .logs)
        #expect(outcome == .retryable(reason: "/dev/full: \(String(cString: strerror(ENOSPC)))", after: nil))
        await exporter.shutdown()
    }

    // MARK: Rotation

    @Test func rotationBySizeKeepsGzippedBackupsOfEveryLine() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/out.jsonl"
        let batches = (0..<12).map { logsBatch(body: "event \($0)") }
        let lineSize = batches[0].encodeJSON().count + 1
        // Two lines fit, a third rotates.
        let exporter = rotatingExporter(path: path, maxBytes: lineSize * 2 + lineSize / 2, maxBackups: 0)
        try await exporter.start()
        for batch in batches { #expect(await exporter.export([batch], signal: .logs) == .delivered) }
        await exporter.shutdown()

        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        let backups = names.filter { $0 != "out.jsonl" }
        #expect(backups.count == 5)
        #expect(backups.allSatisfy { $0.wholeMatch(of: /out-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}\.jsonl\.gz/) != nil })

        var lines: [[UInt8]] = []
        for name in backups {
            let packed = Array(try Data(contentsOf: URL(fileURLWithPath: directory.path + "/" + name)))
            let text = try Decompression.decompress(packed, encoding: .gzip, limit: 1 << 20)
            #expect(text.split(separator: 0x0A).count == 2)
            lines += text.split(separator: 0x0A).map(Array.init)
        }
        lines += try jsonLines(path)
        #expect(lines.count == batches.count)
        for (line, batch) in zip(lines, batches) {
            #expect(try OTLPBatch.decode(json: line, signal: .logs).encodeProtobuf() == batch.encodeProtobuf())
        }
    }

    @Test func onlyTheNewestMaxBackupsAreKept() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/out.jsonl"
        let batches = (0..<10).map { logsBatch(body: "event \($0)") }
        let lineSize = batches[0].encodeJSON().count + 1
        // One line per file: every export after the first rotates.
        let exporter = rotatingExporter(path: path, maxBytes: lineSize, maxBackups: 3)
        try await exporter.start()
        for batch in batches { #expect(await exporter.export([batch], signal: .logs) == .delivered) }
        await exporter.shutdown()

        let backups = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0 != "out.jsonl" }.sorted()
        #expect(backups.count == 3)
        // The kept backups hold events 6, 7 and 8; event 9 is in the live file.
        for (name, expected) in zip(backups, batches[6...8]) {
            let packed = Array(try Data(contentsOf: URL(fileURLWithPath: directory.path + "/" + name)))
            let text = try Decompression.decompress(packed, encoding: .gzip, limit: 1 << 20)
            #expect(try OTLPBatch.decode(json: Array(text.dropLast()), signal: .logs).encodeProtobuf() == expected.encodeProtobuf())
        }
    }

    @Test func aRequestLargerThanTheLimitIsWrittenWholeToAFileOfItsOwn() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/out.jsonl"
        let batches = (0..<3).map { logsBatch(body: "event \($0)") }
        let exporter = rotatingExporter(path: path, maxBytes: batches[0].encodeJSON().count / 2, maxBackups: 0)
        try await exporter.start()
        for batch in batches { #expect(await exporter.export([batch], signal: .logs) == .delivered) }
        await exporter.shutdown()

        let backups = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0 != "out.jsonl" }.sorted()
        #expect(backups.count == 2)
        var lines: [[UInt8]] = []
        for name in backups {
            let packed = Array(try Data(contentsOf: URL(fileURLWithPath: directory.path + "/" + name)))
            lines.append(Array(try Decompression.decompress(packed, encoding: .gzip, limit: 1 << 20).dropLast()))
        }
        lines += try jsonLines(path)
        #expect(lines == batches.map { $0.encodeJSON() })
    }

    @Test func backupsOlderThanMaxDaysAreDeleted() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/out.jsonl"
        let old = directory.path + "/out-2001-02-03T04-05-06.789.jsonl.gz"
        try Data(try #require(Compression.gzip(Array("old\n".utf8)))).write(to: URL(fileURLWithPath: old))
        var config = FileExporterConfig(path: path)
        config.rotation = .init(maxBytes: 1 << 20, maxDays: 7, maxBackups: 0, localTime: false)
        let exporter = FileExporter(id: ComponentID(type: "file"), config: config, logger: Logger(label: "test"))
        try await exporter.start()
        await exporter.shutdown()
        #expect(!FileManager.default.fileExists(atPath: old))
    }

    @Test func whatACrashLeftMidRotationIsFinishedAtStart() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/out.jsonl"
        let clock = TestClock()
        let naming = BackupNaming(path: path, localTime: false)
        // Rotated but not yet gzipped, and a half-written temporary beside another.
        let plain = directory.path + "/" + naming.name(at: clock.now())
        try Data("rotated\n".utf8).write(to: URL(fileURLWithPath: plain))
        let other = directory.path + "/" + naming.name(at: clock.now())
        try Data("other\n".utf8).write(to: URL(fileURLWithPath: other))
        try Data([0x1F, 0x8B]).write(to: URL(fileURLWithPath: other + ".gz.tmp"))

        let exporter = rotatingExporter(path: path, maxBytes: 1 << 20, maxBackups: 0, clock: clock)
        try await exporter.start()
        await exporter.shutdown()
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: directory.path))
        #expect(names == [(plain as NSString).lastPathComponent + ".gz", (other as NSString).lastPathComponent + ".gz", "out.jsonl"])
        let packed = Array(try Data(contentsOf: URL(fileURLWithPath: plain + ".gz")))
        #expect(try Decompression.decompress(packed, encoding: .gzip, limit: 1 << 20) == Array("rotated\n".utf8))
    }

    @Test func backupNamesAreLumberjacks() {
        let naming = BackupNaming(path: "/var/log/sluice/out.jsonl", localTime: false)
        // 2026-11-21T23:45:00.007Z
        let time: Int64 = 1_795_304_700_007
        #expect(naming.name(at: time) == "out-2026-11-21T23-45-00.007.jsonl")
        #expect(naming.parse("out-2026-11-21T23-45-00.007.jsonl.gz")?.time == time)
        #expect(naming.parse("out-2026-11-21T23-45-00.007.jsonl")?.gzipped == false)
        #expect(naming.parse("out.jsonl") == nil)
        #expect(naming.parse("out-2026-11-21T23-45-00.007.jsonl.gz.tmp") == nil)
        #expect(BackupNaming(path: "plain", localTime: false).name(at: time) == "plain-2026-11-21T23-45-00.007")
        #expect(BackupNaming(path: "plain", localTime: false).directory == ".")
    }

    // MARK: Configuration

    @Test func collectorConfigIsAccepted() throws {
        let (exporter, diagnostics) = make("""
            path: ./data/out.json
            format: proto
            append: false
            flush_interval: 5s
            create_directory: true
            directory_permissions: "0750"
            rotation:
              max_megabytes: 10
              max_days: 3
              max_backups: 3
              localtime: true
            group_by:
              enabled: false
              resource_attribute: fileexporter.path_segment
            fsync: true
            retry_on_failure:
              max_elapsed_time: 1h
            sending_queue:
              queue_size: 100
        """)
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let file = try #require(exporter as? FileExporter)
        #expect(file.config.format == .proto)
        #expect(file.config.rotation == .init(maxBytes: 10 << 20, maxDays: 3, maxBackups: 3, localTime: true))
        #expect(file.config.fsync)
        #expect(file.config.directoryMode == 0o750)
        #expect(file.retry.maxElapsedTime == .seconds(3600))
        #expect(file.queue.queueSize == 100)
    }

    @Test func theDefaultCollectorYamlIsAccepted() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let config = CollectorConfig.load(path: root.appendingPathComponent("collector.yaml").path)
        let files = config.exporters.filter { $0.id.type == "file" }
        #expect(!files.isEmpty)
        for (id, section) in files {
            let before = config.diagnostics.all.count
            #expect(FileExporterFactory().make(id: id, config: section, context: ComponentContext(logger: Logger(label: "test"))) != nil)
            #expect(config.diagnostics.all.count == before, "\(config.diagnostics.all)")
        }
    }

    @Test func defaults() throws {
        let (exporter, diagnostics) = make("path: out.json\nrotation:")
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let file = try #require(exporter as? FileExporter)
        #expect(file.config.format == .json)
        #expect(!file.config.append && !file.config.fsync)
        #expect(file.config.rotation == .init(maxBytes: 100 << 20, maxDays: 0, maxBackups: 100, localTime: false))
        #expect(file.config.flushInterval == .seconds(1))

        let (plain, _) = make("path: out.json")
        #expect((plain as? FileExporter)?.config.rotation == nil)
    }

    @Test func missingPathIsReported() {
        let (exporter, diagnostics) = make("format: json")
        #expect(exporter == nil)
        #expect(diagnostics.contains { $0.path == "exporters.file.path" && $0.message.hasPrefix("missing") })
    }

    @Test func unknownKeysAreReportedWithAHint() {
        let (exporter, diagnostics) = make("path: out.json\nfsyncc: true\nrotation:\n  max_megabyte: 5")
        #expect(exporter == nil)
        #expect(diagnostics.contains { $0.path == "exporters.file.fsyncc" && $0.message == "unknown key (did you mean fsync?)" })
        #expect(diagnostics.contains { $0.path == "exporters.file.rotation.max_megabyte" && $0.message == "unknown key (did you mean max_megabytes?)" })
    }

    /// `compression: zstd` as the Collector writes it: each request a zstd frame
    /// behind its big-endian length, in either format.
    @Test func zstdFramesEachRequestBehindItsLength() throws {
        let (made, problems) = make("path: out.bin\ncompression: zstd")
        #expect(made != nil, "\(problems)")
        let batch = logsBatch(body: "zstd framed")
        for format in [FileExporterConfig.Format.json, .proto] {
            let bytes = try FileExporter.encode([batch, batch], format: format, zstd: true)
            let frames = try protoFrames(bytes)
            #expect(frames.count == 2)
            for frame in frames {
                let message = try Decompression.decompress(frame, encoding: .zstd, limit: 1 << 20)
                let decoded = format == .json ? try OTLPBatch.decode(json: message, signal: .logs) : try OTLPBatch.decode(protobuf: message, signal: .logs)
                #expect(decoded.itemCount == batch.itemCount)
                #expect(message == (format == .json ? batch.encodeJSON() : batch.encodeProtobuf()))
            }
        }
    }

    @Test func unsupportedCollectorFeaturesAreReported() {
        let (brotli, brotliDiagnostics) = make("path: out.json\ncompression: br")
        #expect(brotli == nil)
        #expect(brotliDiagnostics.contains { $0.path == "exporters.file.compression" })

        let (grouped, groupDiagnostics) = make("path: out.json\ngroup_by:\n  enabled: true")
        #expect(grouped == nil)
        #expect(groupDiagnostics.contains { $0.path == "exporters.file.group_by.enabled" })

        let (badFormat, formatDiagnostics) = make("path: out.json\nformat: jsonl")
        #expect(badFormat == nil)
        #expect(formatDiagnostics.contains { $0.path == "exporters.file.format" && $0.message.contains("did you mean json?") })
    }

    // MARK: Helpers

    private func make(_ section: String) -> ((any Exporter)?, [ConfigDiagnostic]) {
        let (map, diagnostics) = exporterSection("file", section)
        guard let map else { return (nil, diagnostics.all) }
        let exporter = FileExporterFactory().make(id: ComponentID(type: "file"), config: map, context: ComponentContext(logger: Logger(label: "test")))
        return (exporter, diagnostics.all)
    }

    private func makeExporter(_ section: String) -> (any Exporter)? {
        let (exporter, diagnostics) = make(section)
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        return exporter
    }

    private func rotatingExporter(path: String, maxBytes: Int, maxBackups: Int, clock: TestClock = TestClock()) -> FileExporter {
        var config = FileExporterConfig(path: path)
        config.rotation = .init(maxBytes: maxBytes, maxDays: 0, maxBackups: maxBackups, localTime: false)
        return FileExporter(id: ComponentID(type: "file"), config: config, logger: Logger(label: "test"), now: { clock.now() })
    }

    private func logsBatch(body: String) -> OTLPBatch {
        let json = """
        {"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"ai-gateway"}}]},
          "scopeLogs":[{"scope":{"name":"gateway.audit"},"logRecords":[{"timeUnixNano":"1763712000123456789",
            "severityNumber":13,"body":{"stringValue":"\(body)"},
            "attributes":[{"key":"line","value":{"stringValue":"a\\nb"}}]}]}]}]}
        """
        return try! OTLPBatch.decode(json: Array(json.utf8), signal: .logs)
    }

    private func jsonLines(_ path: String) throws -> [[UInt8]] {
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(bytes.last == 0x0A)
        return bytes.split(separator: 0x0A, omittingEmptySubsequences: false).dropLast().map(Array.init)
    }

    private func protoFrames(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var offset = 0
        while offset < bytes.count {
            try #require(offset + 4 <= bytes.count)
            let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            try #require(offset + 4 + length <= bytes.count)
            frames.append(Array(bytes[(offset + 4)..<(offset + 4 + length)]))
            offset += 4 + length
        }
        return frames
    }
}

/// A wall clock that moves a second per reading, so every rotation gets its own
/// name and the order of names is the order of rotations.
final class TestClock: Sendable {
    private let time = Mutex<Int64>(1_795_823_100_000)
    func now() -> Int64 { time.withLock { $0 += 1000; return $0 } }
}

/// A directory of its own under the system's temporary directory, removed when
/// the test is done with it.
final class TemporaryDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-file-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
