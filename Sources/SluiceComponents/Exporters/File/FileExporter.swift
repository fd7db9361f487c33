// The `file` exporter: writes every request to a local file, as the Collector's
// file exporter does, so a Collector config for it works unchanged and whatever
// reads the Collector's files reads Sluice's. It is also the default destination
// when no SIEM is configured, and often the audit trail itself, so it never
// acknowledges data that is not in the file: each export is one write, cut back
// whole if it fails, and optionally fsynced.
//
// FileExporterConfig.swift reads the section; RotatingFile.swift owns the file,
// its rotation, and the gzipped backups.
import Foundation
import Logging
import NIOPosix
import SluiceCore
import Synchronization

/// `file`: OTLP/JSON lines or length-prefixed protobuf, with size rotation.
public struct FileExporterFactory: ExporterFactory {
    public let type = "file"
    public let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Exporter)? {
        let before = config.diagnostics.all.count
        guard let settings = FileExporterConfig(config), config.diagnostics.all.count == before else { return nil }
        return FileExporter(id: id, config: settings, logger: context.logger)
    }
}

final class FileExporter: Exporter {
    let id: ComponentID
    let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    let config: FileExporterConfig
    var retry: RetrySettings { config.retry }
    var queue: QueueSettings { config.queue }
    private let file: Mutex<RotatingFile>

    init(id: ComponentID, config: FileExporterConfig, logger: Logger, now: @escaping @Sendable () -> Int64 = RotatingFile.wallClock) {
        self.id = id
        self.config = config
        let options = RotatingFile.Options(
            rotation: config.rotation, format: config.format,
            truncateAtStart: config.rotation == nil && !config.append,
            fsync: config.fsync, directoryMode: config.directoryMode, fileMode: config.fileMode)
        file = Mutex(RotatingFile(path: config.path, options: options, logger: logger, now: now))
    }

    func start() async throws {
        try await blocking {
            try self.file.withLock { (file: inout RotatingFile) throws(FileExporterError) in try file.open() }
        }
    }

    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
        let payload: [UInt8]
        do {
            payload = try Self.encode(batches, format: config.format, zstd: config.zstd)
        } catch {
            return .permanent(reason: "a request of \(error.bytes) bytes does not fit the 4-byte length prefix of format: proto")
        }
        do {
            try await blocking {
                try self.file.withLock { (file: inout RotatingFile) throws(FileExporterError) in try file.append(payload) }
            }
            return .delivered
        } catch let error as FileExporterError {
            return .retryable(reason: error.description, after: nil)
        } catch {
            // The blocking pool is gone or the task was cancelled before the write
            // ran: nothing was written, so the attempt can simply be made again.
            return .retryable(reason: "\(config.path): \(error)", after: nil)
        }
    }

    func shutdown() async {
        do {
            try await blocking { self.file.withLock { $0.close() } }
        } catch {
            // Without the pool (the process is ending) the close is still owed.
            file.withLock { $0.close() }
        }
    }

    /// File I/O waits on the disk (an fsync, gzipping a rotated file), so it runs on
    /// NIO's blocking pool instead of holding one of the few concurrency threads.
    private func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(body)
    }

    /// The bytes for one export: one record per batch, in the Collector's framing
    /// (exporter/fileexporter, file_writer.go: `exportMessageAsLine` writes the
    /// JSON and "\n"; `exportMessageAsBuffer` writes the protobuf after its length as
    /// a big-endian uint32). With zstd, each request (JSON or protobuf) is
    /// compressed on its own and framed by length, as the Collector writes it.
    static func encode(_ batches: [OTLPBatch], format: FileExporterConfig.Format, zstd: Bool = false) throws(OversizedRequest) -> [UInt8] {
        var payload: [UInt8] = []
        if zstd {
            for batch in batches {
                let message = format == .json ? batch.encodeJSON() : batch.encodeProtobuf()
                guard let frame = Compression.zstd(message), let length = UInt32(exactly: frame.count) else { throw OversizedRequest(bytes: message.count) }
                withUnsafeBytes(of: length.bigEndian) { payload.append(contentsOf: $0) }
                payload += frame
            }
            return payload
        }
        switch format {
        case .json:
            // The writer escapes control characters, so a request is one line; each
            // is written straight into the payload.
            payload.reserveCapacity(batches.reduce(0) { $0 + $1.memoryBytes / 3 })
            for batch in batches {
                batch.appendJSON(to: &payload)
                payload.append(0x0A)
            }
        case .proto:
            for batch in batches {
                let message = batch.encodeProtobuf()
                guard let length = UInt32(exactly: message.count) else { throw OversizedRequest(bytes: message.count) }
                withUnsafeBytes(of: length.bigEndian) { payload.append(contentsOf: $0) }
                payload += message
            }
        }
        return payload
    }

    /// A protobuf request of 4 GiB or more, which the framing cannot express.
    struct OversizedRequest: Error {
        var bytes: Int
    }
}
