import Foundation
import Logging
import Synchronization
import Testing
@testable import SluiceCore

/// The delivery loop's status machine, with an injected clock so a day of retries
/// passes in milliseconds: active → degraded → active, and degraded → failed (dead
/// letter) when `max_elapsed_time` runs out.
@Suite struct ExporterDeliveryStatusTests {
    /// Answers from a script, one per attempt; `.delivered` once the script ends.
    private final class ScriptedExporter: Exporter {
        let id = ComponentID(type: "scripted")
        let signals: Set<OTLPSignal> = [.logs]
        let retry: RetrySettings
        let queue = QueueSettings()
        private let script: Mutex<[ExportOutcome]>
        let attempts = Atomic<Int>(0)

        init(_ script: [ExportOutcome], retry: RetrySettings = RetrySettings()) {
            self.script = Mutex(script)
            self.retry = retry
        }

        func start() async throws {}
        func shutdown() async {}
        func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
            attempts.add(1, ordering: .relaxed)
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

    private func run(_ exporter: ScriptedExporter, deadLetter: String) async throws -> (ExporterStatus, [ExporterStatus.State], MetricsRegistry) {
        let log = MemoryPipelineLog(name: "logs", limitBytes: 1 << 20)
        let status = ExporterStatus(id: exporter.id)
        let seen = Mutex<[ExporterStatus.State]>([])
        let clock = FakeClock()
        let metrics = MetricsRegistry()
        let delivery = ExporterDelivery(
            exporter: exporter, signal: .logs, pipeline: "logs", cursor: log.cursor(exporter.id), shape: .unbatched, status: status,
            deadLetter: DeadLetterFile(path: deadLetter), logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
            metrics: metrics,
            sleep: { d in seen.withLock { $0.append(status.snapshot.state) }; clock.sleep(d) },
            now: { clock.now() })
        _ = log.append(try batch(), items: 1, bytes: 100)
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
        #expect(status.snapshot.state == .active)
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains("HTTP 400: bad data"))
    }
}
