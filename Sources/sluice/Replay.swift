import ArgumentParser
import Foundation
import Logging
import SluiceComponents
import SluiceCore

/// `sluice replay`: sends dead-lettered (or file-exported) requests through an
/// exporter of the configuration again. Each line of the input is either a
/// dead-letter line (`{"time":…,"exporter":…,"reason":…,"signal":…,"request":{…}}`)
/// or an OTLP/JSON request as the file exporter writes it. Records keep their
/// attributes (event_id) and ids, so the destination can deduplicate.
struct Replay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send dead-lettered or file-exported records through an exporter again.")

    @OptionGroup var options: ConfigOptions

    @Option(help: "The exporter to send through, as in the configuration (splunk_hec/security).")
    var exporter: String

    @Option(help: "The file to read (default: the exporter's dead-letter file).")
    var from: String?

    @Option(help: "Only lines dead-lettered at or after this time (ISO 8601, e.g. 2026-11-21T10:00:00Z).")
    var since: String?

    @Option(help: "Signal of plain OTLP/JSON lines (dead-letter lines carry their own).")
    var signal: String = "logs"

    @Option(help: "Folder of the dead-letter files.")
    var dataDirectory: String = "data"

    func run() async throws {
        var errors = StandardError()
        guard let id = ComponentID(exporter) else { throw ValidationError("--exporter '\(exporter)' is not a component id") }
        guard let defaultSignal = OTLPSignal(rawValue: signal) else { throw ValidationError("--signal must be logs, traces or metrics") }
        var sinceDate: Date?
        if let since {
            guard let parsed = ISO8601DateFormatter().date(from: since) ?? ISO8601DateFormatter.withFractionalSeconds.date(from: since) else {
                throw ValidationError("--since '\(since)' is not an ISO 8601 time like 2026-11-21T10:00:00Z")
            }
            sinceDate = parsed
        }
        LoggingSystem.bootstrap { label in StructuredLogHandler(label: label, format: .text, level: .warning) }
        let logger = Logger(label: "sluice.replay")
        let config = options.load()
        let context = ComponentContext(logger: logger, dataDirectory: dataDirectory)
        guard let section = config.exporters.first(where: { $0.id == id }) else {
            print("\(options.config): no exporter \(id); defined: \(config.exporters.map(\.id.description).joined(separator: ", "))", to: &errors)
            throw ExitCode(1)
        }
        guard let factory = ComponentRegistry.builtIn.exporters[id.type],
              let made = factory.make(id: id, config: section.config, context: context), config.diagnostics.isEmpty else {
            for diagnostic in config.diagnostics.all { print(diagnostic, to: &errors) }
            throw ExitCode(1)
        }
        let input = from ?? DeadLetterFile.path(of: id, in: dataDirectory)
        guard let data = FileManager.default.contents(atPath: input) else {
            print("cannot read \(input); give the file with --from", to: &errors)
            throw ExitCode(1)
        }

        // Decode every line first: a bad line is reported with its number and skipped.
        var batches: [OTLPBatch] = []
        var skipped = 0
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            guard !line.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) else { continue }
            do {
                if let batch = try ReplayLine.decode(Array(line), defaultSignal: defaultSignal, since: sinceDate) { batches.append(batch) }
            } catch {
                skipped += 1
                print("\(input):\(lineNumber): skipped: \(error)", to: &errors)
            }
        }
        let items = batches.reduce(0) { $0 + $1.itemCount }
        print("replaying \(batches.count) request(s), \(items) item(s) from \(input) through \(id)", to: &errors)

        try await made.start()
        var delivered = 0, failed = 0
        let failures = DeadLetterFile(path: "\(dataDirectory)/dead-letter/\(id.fileSafe).replay-failed.ndjson")
        for (index, batch) in batches.enumerated() where made.signals.contains(batch.signal) {
            let log = MemoryPipelineLog(name: "replay", limitBytes: .max)
            let delivery = ExporterDelivery(exporter: made, signal: batch.signal, pipeline: "replay", cursor: log.cursor(id),
                                            shape: .unbatched, status: ExporterStatus(id: id), deadLetter: failures, logger: logger)
            _ = log.append(batch, items: batch.itemCount, bytes: batch.memoryBytes)
            log.close()
            let deadBefore = delivery.counters.deadLettered.count
            await delivery.run()
            if delivery.counters.deadLettered.count > deadBefore { failed += batch.itemCount } else { delivered += batch.itemCount }
            print("  \(index + 1)/\(batches.count) requests, \(delivered) delivered, \(failed) failed", to: &errors)
        }
        await made.shutdown()
        print("done: \(delivered) delivered, \(failed) failed again (in \(failures.path)), \(skipped) line(s) skipped")
        if failed > 0 || skipped > 0 { throw ExitCode(2) }
    }
}

/// One line of a dead-letter or file-exporter file.
enum ReplayLine {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// `nil` for a dead-letter line older than `since`.
    static func decode(_ line: [UInt8], defaultSignal: OTLPSignal, since: Date?) throws -> OTLPBatch? {
        // Dead-letter lines start with the fields Sluice writes; a request starts
        // with resourceLogs / resourceSpans / resourceMetrics.
        guard line.starts(with: Array(#"{"time":"#.utf8)) else {
            return try OTLPBatch.decode(json: line, signal: defaultSignal, limits: OTLPDecodeLimits(maxBodyBytes: .max))
        }
        guard let object = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
              let time = object["time"] as? String, let signalName = object["signal"] as? String,
              let signal = OTLPSignal(rawValue: signalName), let request = object["request"] else {
            throw Failure(description: "not a dead-letter line (time, signal and request are required)")
        }
        if let since, let when = ISO8601DateFormatter.withFractionalSeconds.date(from: time), when < since { return nil }
        let requestJSON = try JSONSerialization.data(withJSONObject: request)
        return try OTLPBatch.decode(json: Array(requestJSON), signal: signal, limits: OTLPDecodeLimits(maxBodyBytes: .max))
    }
}
