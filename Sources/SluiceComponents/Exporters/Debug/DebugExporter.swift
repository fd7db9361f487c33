import Foundation
import SluiceCore
import Synchronization

/// `debug`: writes what passes to stderr, as the Collector's debug exporter does.
/// `basic`: one line per export with counts; `normal`: one line per record;
/// `detailed`: the whole request as OTLP/JSON.
public struct DebugExporterFactory: ExporterFactory {
    public let type = "debug"
    public let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Exporter)? {
        let before = config.diagnostics.all.count
        let verbosity = config.enumeration("verbosity", ["basic", "normal", "detailed"]) ?? "basic"
        // `output_paths` (with use_internal_logger: false in the Collector): stdout,
        // stderr, or a file appended to. Sluice writes there whatever use_internal_logger says.
        var destination: FileHandle = .standardError
        if let paths = config.stringList("output_paths") {
            if paths.count != 1 { config.report("output_paths", "name one place: stdout, stderr or a file path") }
            switch paths.first ?? "stderr" {
            case "stdout": destination = .standardOutput
            case "stderr": destination = .standardError
            case let path:
                if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]) }
                if let handle = FileHandle(forWritingAtPath: path) {
                    handle.seekToEndOfFile()
                    destination = handle
                } else {
                    config.report("output_paths", "cannot open '\(path)' for writing; check the path and its directory's permissions")
                }
            }
        }
        config.keysWithoutEffect([("sampling_initial", "every item is printed"), ("sampling_thereafter", "every item is printed"),
                                  ("use_internal_logger", "the debug exporter writes to output_paths (stderr by default), apart from Sluice's own log")])
        config.finish()
        guard config.diagnostics.all.count == before else { return nil }
        return DebugExporter(id: id, verbosity: verbosity, destination: destination)
    }
}

final class DebugExporter: Exporter {
    let id: ComponentID
    let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    let retry = RetrySettings()
    let queue = QueueSettings()
    let verbosity: String
    /// Where the text goes (`output_paths`); written under the lock, one export at a time.
    private let output: Mutex<FileHandle>

    init(id: ComponentID, verbosity: String, destination: FileHandle = .standardError) {
        self.id = id
        self.verbosity = verbosity
        output = Mutex(destination)
    }

    func start() async throws {}
    func shutdown() async {}

    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
        var out = ""
        let items = batches.reduce(0) { $0 + $1.itemCount }
        out += "\(id) \(signal): \(items) \(signal.itemName) in \(batches.count) request(s)\n"
        switch verbosity {
        case "normal":
            for batch in batches { out += Self.normalLines(batch) }
        case "detailed":
            for batch in batches { out += String(decoding: batch.encodeJSON(), as: UTF8.self) + "\n" }
        default:
            break
        }
        output.withLock { $0.write(Data(out.utf8)) }
        return .delivered
    }

    static func normalLines(_ batch: OTLPBatch) -> String {
        var out = ""
        batch.withLogs { logs in
            for (_, _, record) in logs.records {
                var line = "  \(record.effectiveTimeUnixNano) \(record.severityText.isEmpty ? "sev=\(record.severityNumber)" : record.severityText.string)"
                if let body = record.body { line += " \(body.stringValue)" }
                for attribute in record.attributes { line += " \(attribute.key)=\(attribute.value?.stringValue ?? "")" }
                out += line + "\n"
            }
        }
        batch.withTraces { traces in
            for (_, _, span) in traces.spans {
                out += "  \(span.traceID.hex) \(span.spanID.hex) \(span.name) \((span.endTimeUnixNano &- span.startTimeUnixNano) / 1000)µs\n"
            }
        }
        return out
    }
}
