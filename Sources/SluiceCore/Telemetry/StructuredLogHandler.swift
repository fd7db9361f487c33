import Foundation
import Logging
import Synchronization

/// Sluice's log lines on stderr: one JSON object per line by default
/// (`{"time":…,"level":"info","msg":…,"exporter":…}`), or `key=value` text.
///
/// Metadata whose key names a secret (token, password, authorization, api key…) is
/// written as `[REDACTED]`, so a careless log call cannot leak a credential.
public struct StructuredLogHandler: LogHandler {
    public enum Format: String, Sendable { case json, text }

    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let format: Format

    private static let lock = Mutex(())

    public init(label: String, format: Format, level: Logger.Level) {
        self.label = label
        self.format = format
        logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let time = ISO8601DateFormatter.withFractionalSeconds.string(from: Date())
        var out = JSONOutput(reservingCapacity: 256)
        switch format {
        case .json:
            out.append(ascii: "{\"time\":")
            out.appendString(time)
            out.append(ascii: ",\"level\":")
            out.appendString(event.level.shortName)
            out.append(ascii: ",\"msg\":")
            out.appendString(event.message.description)
            for key in merged.keys.sorted() {
                out.append(UInt8(ascii: ","))
                out.appendString(key)
                out.append(UInt8(ascii: ":"))
                out.appendString(SecretMask.isSecretName(key) ? SecretMask.placeholder : "\(merged[key]!)")
            }
            out.append(ascii: "}\n")
        case .text:
            var line = "\(time) \(event.level.shortName.uppercased()) \(event.message)"
            for key in merged.keys.sorted() {
                let value = SecretMask.isSecretName(key) ? SecretMask.placeholder : "\(merged[key]!)"
                line += " \(key)=\(value.contains(" ") ? "\"\(value)\"" : value)"
            }
            out.appendRaw((line + "\n").utf8)
        }
        Self.lock.withLock { _ in
            out.bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = write(2, raw.baseAddress! + offset, raw.count - offset)
                    if n <= 0 { break }
                    offset += n
                }
            }
        }
    }
}

extension Logger.Level {
    var shortName: String {
        switch self {
        case .trace: "trace"
        case .debug: "debug"
        case .info: "info"
        case .notice: "notice"
        case .warning: "warn"
        case .error: "error"
        case .critical: "critical"
        }
    }

    public init?(configName: String) {
        switch configName.lowercased() {
        case "debug": self = .debug
        case "info": self = .info
        case "warn", "warning": self = .warning
        case "error": self = .error
        default: return nil
        }
    }
}
