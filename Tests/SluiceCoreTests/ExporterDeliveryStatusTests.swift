import Foundation
import Logging
import Synchronization
import Testing
@testable import SluiceCore

/// The delivery loop's status machine, with an injected clock so a day of retries
/// passes in milliseconds: active → degraded → active, degraded → failed (dead
/// letter) when `max_elapsed_time` runs out, and active → failed → active when the
/// destination refuses whole requests for good and then takes one (issue 21).
@Suite struct ExporterDeliveryStatusTests {
    /// Answers from a script, one per attempt; `.delivered` once the script ends.
    private final class ScriptedExporter: Exporter {
        let id = ComponentID(type: "scripted")
        let signals: Set<OTLPSignal> = [.logs]
        let retry: RetrySettings
        let queue = QueueSettings()
        let secrets: SecretMask
        private let script: Mutex<[ExportOutcome]>
        let attempts = Atomic<Int>(0)
        /// The status as each attempt found it: the state the attempt before left.
        private let watched = Mutex<(status: ExporterStatus?, seen: [ExporterStatus.Snapshot])>((nil, []))

        init(_ script: [ExportOutcome], retry: RetrySettings = RetrySettings(), secrets: [String] = []) {
            self.script = Mutex(script)
            self.retry = retry
            self.secrets = SecretMask(secrets)
        }

        func watch(_ status: ExporterStatus) { watched.withLock { $0.status = status } }
        var seenAtExport: [ExporterStatus.Snapshot] { watched.withLock { $0.seen } }

        func start() async throws {}
        func shutdown() async {}
        func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
            attempts.add(1, ordering: .relaxed)
            watched.withLock { w in if let status = w.status { w.seen.append(status.snapshot) } }
            return script.withLock { $0.isEmpty ? .delivered : $0.removeFirst() }
        }
    }

    /// A clock that moves only when the loop sleeps.
    private final class FakeClock: Sendable {
        private let offset = Mutex(Duration.zero)
        private let start = ContinuousClock.now
        func now() -> ContinuousClock.Instant { start + offset.withLock { $0 } }
        func sleep(_ d: Duration) { offset.withLock { $0 += d } }
    }

    private func batch() throws -> OTLPBatch {
        try OTLPBatch.decode(json: Array(#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}"#.utf8), signal: .logs)
    }

    /// Delivers `entries` one-record requests, one per export call; `seen` is the state at each sleep.
    private func run(_ exporter: ScriptedExporter, deadLetter: String, entries: Int = 1,
                     logger: Logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
    ) async throws -> (ExporterStatus, [ExporterStatus.State], MetricsRegistry) {
        let log = MemoryPipelineLog(name: "logs", limitBytes: 1 << 20)
        let status = ExporterStatus(id: exporter.id)
        exporter.watch(status)
        let seen = Mutex<[ExporterStatus.State]>([])
        let clock = FakeClock()
        let metrics = MetricsRegistry()
        let delivery = ExporterDelivery(
            exporter: exporter, signal: .logs, pipeline: "logs", cursor: log.cursor(exporter.id),
            shape: BatchShape(sendBatchSize: 1, timeout: .zero, sendBatchMaxSize: 1), status: status,
            deadLetter: DeadLetterFile(path: deadLetter), logger: logger,
            metrics: metrics,
            sleep: { d in seen.withLock { $0.append(status.snapshot.state) }; clock.sleep(d) },
            now: { clock.now() })
        for _ in 0..<entries { _ = log.append(try batch(), items: 1, bytes: 100) }
        log.close()
        await delivery.run()
        return (status, seen.withLock { $0 }, metrics)
    }

    @Test func degradedWhileRetryingThenActive() async throws {
        let exporter = ScriptedExporter(Array(repeating: .retryable(reason: "HTTP 503", after: nil), count: 5))
        let path = NSTemporaryDirectory() + "dl-\(UUID().uuidString).ndjson"
        let (status, seen, metrics) = try await run(exporter, deadLetter: path)
        #expect(seen == Array(repeating: .degraded, count: 5))
        #expect(status.snapshot.state == .active)
        #expect(status.snapshot.lastError == "HTTP 503")
        #expect(exporter.attempts.load(ordering: .relaxed) == 6)
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(metrics.exposition().contains("sluice_exporter_retries_total{exporter=\"scripted\",signal=\"logs\"} 5"))
    }

    @Test func retryAfterWinsOverTheSchedule() async throws {
        var retry = RetrySettings()
        retry.initialInterval = .seconds(1)
        #expect(retry.delay(attempt: 3, retryAfter: .seconds(42), random: 0.5) == .seconds(42))
        #expect(retry.delay(attempt: 0, retryAfter: nil, random: 0.5) == .seconds(1))
        #expect(retry.delay(attempt: 50, retryAfter: nil, random: 0.5) == .seconds(30))
    }

    @Test func failedAfterADayOfRetriesAndTheDataIsDeadLettered() async throws {
        // The destination never recovers: a day of retries, then the dead-letter file.
        let exporter = ScriptedExporter(Array(repeating: .retryable(reason: "connection refused", after: nil), count: 100_000))
        let path = NSTemporaryDirectory() + "dl-\(UUID().uuidString).ndjson"
        let (status, seen, _) = try await run(exporter, deadLetter: path)
        #expect(status.snapshot.state == .failed)
        #expect(status.snapshot.lastError?.contains("retries exhausted after") == true)
        #expect(status.snapshot.lastError?.contains("sluice replay --exporter scripted") == true)
        #expect(status.snapshot.deadLetteredItems == 1)
        #expect(seen.allSatisfy { $0 == .degraded })
        // 24 h at up to 30 s (+50 % jitter) per retry is a few thousand attempts.
        #expect(exporter.attempts.load(ordering: .relaxed) > 2000)
        let line = try String(contentsOfFile: path, encoding: .utf8)
        #expect(line.contains("\"exporter\":\"scripted\"") && line.contains("retries exhausted") && line.contains("\"stringValue\":\"x\""))
    }

    @Test func permanentRefusalIsDeadLetteredWithoutRetrying() async throws {
        let exporter = ScriptedExporter([.permanent(reason: "HTTP 400: bad data")])
        let path = NSTemporaryDirectory() + "dl-\(UUID().uuidString).ndjson"
        let (status, seen, _) = try await run(exporter, deadLetter: path)
        #expect(seen.isEmpty)
        #expect(exporter.attempts.load(ordering: .relaxed) == 1)
        #expect(status.snapshot.state == .failed)
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains("HTTP 400: bad data"))
    }

    @Test func aRefusedRequestFailsTheExporterUntilADeliverySucceeds() async throws {
        let refusal = "HTTP 403 from Splunk HEC: Invalid token (code 4); check the HEC token"
        let exporter = ScriptedExporter([.permanent(reason: refusal), .permanent(reason: refusal)])
        let path = NSTemporaryDirectory() + "dl-\(UUID().uuidString).ndjson"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let logs = CapturedLogs()
        let (status, seen, metrics) = try await run(exporter, deadLetter: path, entries: 3, logger: logs.logger(level: .info))
        #expect(seen.isEmpty)  // never retried
        // Each attempt finds what the one before left: refused → failed, with the
        // items dead-lettered since the transition; the third is delivered.
        let before = exporter.seenAtExport
        #expect(before.map(\.state) == [.active, .failed, .failed])
        #expect(before.map(\.deadLetteredItems) == [0, 1, 2])
        let failed = before[1]
        #expect(failed.lastError?.contains(refusal) == true)
        #expect(failed.lastError?.contains("dead-letter file \(path)") == true)
        #expect(failed.lastError?.contains("sluice replay --exporter scripted") == true)
        // Delivered again: active, the count starts over, the refusal stays as the last error.
        #expect(status.snapshot.state == .active)
        #expect(status.snapshot.deadLetteredItems == 0)
        #expect(status.snapshot.lastError?.contains(refusal) == true)
        // One line per transition, not one per refused request.
        #expect(logs.all.filter { $0.level == .error }.map(\.message).count == 1)
        #expect(logs.all.filter { $0.message.hasPrefix("exporter failed") }.count == 1)
        #expect(logs.all.filter { $0.message == "exporter recovered" }.count == 1)
        // The file has both refused requests, with the destination's reason alone.
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2 && lines.allSatisfy { $0.contains(refusal) && !$0.contains("sluice replay") })
        #expect(metrics.exposition().contains("sluice_exporter_dead_lettered_items_total{exporter=\"scripted\",signal=\"logs\"} 2"))
    }

    @Test func recordsRefusedInsideAnAcceptedRequestLeaveTheExporterActive() async throws {
        let rejected = try batch()
        let exporter = ScriptedExporter([.partiallyDelivered(rejected: [rejected], reason: "1 event refused: HTTP 400 (code 6)")])
        let path = NSTemporaryDirectory() + "dl-\(UUID().uuidString).ndjson"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, _, metrics) = try await run(exporter, deadLetter: path)
        #expect(exporter.attempts.load(ordering: .relaxed) == 1)
        #expect(status.snapshot.state == .active)
        #expect(status.snapshot.lastError == "1 event refused: HTTP 400 (code 6)")
        #expect(status.snapshot.deadLetteredItems == 1)
        #expect(metrics.exposition().contains("sluice_exporter_dead_lettered_items_total{exporter=\"scripted\",signal=\"logs\"} 1"))
    }

    @Test func theExportersSecretsAreMaskedInReasons() async throws {
        let secret = "s3cr3t-v4lue-1234"
        let exporter = ScriptedExporter([.permanent(reason: "HTTP 401: Invalid token \(secret)")], secrets: [secret])
        let path = NSTemporaryDirectory() + "dl-\(UUID().uuidString).ndjson"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, _, _) = try await run(exporter, deadLetter: path)
        #expect(status.snapshot.lastError?.hasPrefix("HTTP 401: Invalid token [REDACTED] (refused for good;") == true)
        let line = try String(contentsOfFile: path, encoding: .utf8)
        #expect(line.contains("Invalid token [REDACTED]") && !line.contains(secret))
    }

    @Test func statusShowsTheDeadLetterFileAndWhatWentThere() throws {
        let path = NSTemporaryDirectory() + "dl-\(UUID().uuidString).ndjson"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let status = ExporterStatus(id: ComponentID(type: "scripted"))
        let board = StatusBoard()
        board.register(status, deadLetter: path) { CursorLag(entries: 0, items: 0, bytes: 0, oldestAgeSeconds: 0) }
        func entry() throws -> [String: Any] {
            let object = try JSONSerialization.jsonObject(with: Data(board.json())) as? [String: Any]
            return try #require((object?["exporters"] as? [String: Any])?["scripted"] as? [String: Any])
        }
        func deadLetter(_ shown: [String: Any]) -> (String?, Int?) {
            let file = shown["dead_letter"] as? [String: Any]
            return (file?["path"] as? String, file?["bytes"] as? Int)
        }
        var shown = try entry()
        #expect(shown["status"] as? String == "active" && shown["dead_lettered_items"] as? Int == 0)
        #expect(deadLetter(shown) == (path, 0))
        #expect(shown["lag"] != nil && shown["since"] != nil)  // the keys there before stay

        status.set(.failed, error: "HTTP 403")
        try DeadLetterFile(path: path).write([try batch()], exporter: status.id, reason: "HTTP 403")
        status.deadLettered(1)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        shown = try entry()
        #expect(shown["status"] as? String == "failed" && shown["dead_lettered_items"] as? Int == 1)
        #expect(deadLetter(shown) == (path, size))
        #expect(size > 0)
    }
}
