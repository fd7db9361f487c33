import Foundation
import Logging
import Synchronization
import Testing
@testable import SluiceCore

/// The delivery loop's handling of `ExportOutcome.partiallyDelivered`: the refused
/// items go to the dead-letter file on their own, the rest counts as delivered.
@Suite struct ExporterDeliveryTests {
    @Test func partialDeliveryDeadLettersOnlyTheRejected() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-delivery-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let batch = Self.logs(["a", "b", "c", "d"])
        let rejected = Self.logs(["c"])
        let exporter = ScriptedExporter([
            .retryable(reason: "HTTP 503", after: .seconds(7)),
            .partiallyDelivered(rejected: [rejected], reason: "event 3 is over max_event_size"),
        ])
        let metrics = MetricsRegistry()
        let slept = Mutex<[Duration]>([])
        let status = ExporterStatus(id: exporter.id)
        let deadLetter = DeadLetterFile(path: directory + "/dead.ndjson")
        let delivery = ExporterDelivery(
            exporter: exporter, signal: .logs, pipeline: "logs", cursor: NoCursor(), shape: .unbatched, status: status,
            deadLetter: deadLetter, logger: Logger(label: "test"), metrics: metrics,
            sleep: { duration in slept.withLock { $0.append(duration) } })

        let entry = LogEntry(sequence: 1, batch: batch, items: 4, bytes: 100)
        #expect(await delivery.deliver([entry]))

        // The retry waited as the destination asked, then the partial outcome ended it.
        #expect(slept.withLock { $0 } == [.seconds(7)])
        #expect(exporter.calls == 2)
        let lines = try String(contentsOfFile: deadLetter.path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 1)
        let line = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(line["reason"] as? String == "event 3 is over max_event_size")
        #expect(line["exporter"] as? String == "scripted")
        let request = try JSONSerialization.data(withJSONObject: try #require(line["request"]))
        let written = try OTLPBatch.decode(json: Array(request), signal: .logs)
        #expect(written.itemCount == 1)
        #expect(written.encodeProtobuf() == rejected.encodeProtobuf())

        let exposition = metrics.exposition()
        #expect(exposition.contains("sluice_exporter_sent_items_total{exporter=\"scripted\",signal=\"logs\"} 3"))
        #expect(exposition.contains("sluice_exporter_dead_lettered_items_total{exporter=\"scripted\",signal=\"logs\"} 1"))
        #expect(exposition.contains("sluice_exporter_retries_total{exporter=\"scripted\",signal=\"logs\"} 1"))
        // 4 in the failed attempt, 1 refused in the last.
        #expect(exposition.contains("sluice_exporter_send_failed_items_total{exporter=\"scripted\",signal=\"logs\"} 5"))
        let snapshot = status.snapshot
        #expect(snapshot.state == .active)
        #expect(snapshot.lastError == "event 3 is over max_event_size")
    }

    @Test func outcomesCompareBatchesByIdentity() {
        let a = Self.logs(["a"]), b = Self.logs(["a"])
        #expect(ExportOutcome.partiallyDelivered(rejected: [a], reason: "x") == .partiallyDelivered(rejected: [a], reason: "x"))
        #expect(ExportOutcome.partiallyDelivered(rejected: [a], reason: "x") != .partiallyDelivered(rejected: [b], reason: "x"))
        #expect(ExportOutcome.partiallyDelivered(rejected: [a], reason: "x") != .partiallyDelivered(rejected: [a], reason: "y"))
        #expect(ExportOutcome.partiallyDelivered(rejected: [a], reason: "x") != .permanent(reason: "x"))
        #expect(ExportOutcome.retryable(reason: "r", after: nil) == .retryable(reason: "r", after: nil))
    }

    static func logs(_ bodies: [String]) -> OTLPBatch {
        let records = bodies.map { #"{"timeUnixNano":"1763712000000000000","body":{"stringValue":"\#($0)"}}"# }.joined(separator: ",")
        let json = #"{"resourceLogs":[{"resource":{},"scopeLogs":[{"logRecords":[\#(records)]}]}]}"#
        return try! OTLPBatch.decode(json: Array(json.utf8), signal: .logs)
    }
}

/// Returns the scripted outcomes in order, then `.delivered`.
private final class ScriptedExporter: Exporter {
    let id = ComponentID(type: "scripted")
    let signals: Set<OTLPSignal> = [.logs]
    var retry: RetrySettings { RetrySettings() }
    var queue: QueueSettings { QueueSettings() }
    private let script: Mutex<[ExportOutcome]>
    private let callCount = Mutex(0)

    init(_ outcomes: [ExportOutcome]) { script = Mutex(outcomes) }

    var calls: Int { callCount.withLock { $0 } }
    func start() async throws {}
    func shutdown() async {}
    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
        callCount.withLock { $0 += 1 }
        return script.withLock { $0.isEmpty ? .delivered : $0.removeFirst() }
    }
}

/// `deliver` is called directly; the cursor is never read.
private struct NoCursor: LogCursor {
    func read(_ shape: BatchShape) async -> [LogEntry] { [] }
    func commit(through sequence: UInt64) {}
    func rewind() {}
}
