import Foundation
import Synchronization

/// Where records go that an exporter can never deliver: one NDJSON line per batch,
/// `{"time":…,"exporter":…,"reason":…,"signal":…,"request":<OTLP/JSON>}`, appended
/// and fsynced before the pipeline log lets the data go. `sluice replay` reads these.
public final class DeadLetterFile: Sendable {
    public let path: String
    private let lock = Mutex(())

    public init(path: String) { self.path = path }

    /// Where an exporter's dead-letter file is: the service writes it, `/status`
    /// shows it and `sluice replay` reads it.
    public static func path(of exporter: ComponentID, in dataDirectory: String) -> String {
        "\(dataDirectory)/dead-letter/\(exporter.fileSafe).ndjson"
    }

    public enum WriteError: Error, CustomStringConvertible {
        case cannotOpen(String, Int32)
        case cannotWrite(String, Int32)
        public var description: String {
            switch self {
            case .cannotOpen(let path, let code): "cannot open dead-letter file \(path): \(String(cString: strerror(code)))"
            case .cannotWrite(let path, let code): "cannot write dead-letter file \(path): \(String(cString: strerror(code)))"
            }
        }
    }

    public func write(_ batches: [OTLPBatch], exporter: ComponentID, reason: String, now: Date = Date()) throws {
        var out = JSONOutput()
        let time = ISO8601DateFormatter.withFractionalSeconds.string(from: now)
        for batch in batches {
            out.append(ascii: "{\"time\":")
            out.appendString(time)
            out.append(ascii: ",\"exporter\":")
            out.appendString(exporter.description)
            out.append(ascii: ",\"reason\":")
            out.appendString(reason)
            out.append(ascii: ",\"signal\":")
            out.appendString(batch.signal.rawValue)
            out.append(ascii: ",\"request\":")
            out.appendRaw(batch.encodeJSON())
            out.append(ascii: "}\n")
        }
        try lock.withLock { _ in
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty { try? POSIXFile.makeDirectories(directory) }
            let fd = POSIXFile.openPrivate(path, flags: O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC)
            guard fd >= 0 else { throw WriteError.cannotOpen(path, errno) }
            defer { close(fd) }
            var written = 0
            try out.bytes.withUnsafeBytes { raw in
                while written < raw.count {
                    let n = Foundation.write(fd, raw.baseAddress! + written, raw.count - written)
                    if n < 0 { if errno == EINTR { continue }; throw WriteError.cannotWrite(path, errno) }
                    written += n
                }
            }
            guard fsync(fd) == 0 else { throw WriteError.cannotWrite(path, errno) }
        }
    }
}

extension ISO8601DateFormatter {
    nonisolated(unsafe) public static let withFractionalSeconds: ISO8601DateFormatter = {
        // nonisolated(unsafe): ISO8601DateFormatter is documented thread-safe for
        // formatting once configured, and this one is never reconfigured.
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()
}
