import Foundation
import Logging
import Synchronization
import Testing
import SluiceCore
@testable import SluiceComponents

/// Which parts of a running service a reload keeps, rebuilds or retires
/// (ReloadPlan.swift), and how a delivery loop is stopped or drained through its
/// cursor (DeliveryControl.swift) — all without sockets.
struct ReloadPlanTests {
    static func config(_ text: String) -> CollectorConfig {
        let loaded = CollectorConfig.load(text: text, file: "collector.yaml")
        #expect(loaded.diagnostics.isEmpty, "\(loaded.diagnostics.all)")
        return loaded
    }

    static let base = """
        extensions:
          bearertokenauth:
            token: secret-one
          health_check:
            endpoint: 127.0.0.1:13133
        receivers:
          otlp:
            protocols:
              http:
                endpoint: 127.0.0.1:4318
                auth:
                  authenticator: bearertokenauth
          otlp/plain:
            protocols:
              http:
                endpoint: 127.0.0.1:4319
        processors:
          batch:
            send_batch_size: 100
        exporters:
          otlphttp:
            endpoint: http://a.example:4318
          debug: {}
        service:
          extensions: [bearertokenauth, health_check]
          pipelines:
            logs:
              receivers: [otlp, otlp/plain]
              processors: [batch]
              exporters: [otlphttp, debug]
        """

    @Test func anIdenticalFileKeepsEverything() {
        let diff = ConfigDiff(old: Self.config(Self.base), new: Self.config(Self.base))
        #expect(diff.receivers.isEmpty && diff.processors.isEmpty && diff.exporters.isEmpty && diff.extensions.isEmpty)
        #expect(diff.receivers.kept == [ComponentID("otlp")!, ComponentID("otlp/plain")!])
        #expect(diff.pipelines.kept == [ComponentID("logs")!])
    }

    @Test func movedLinesAndReorderedKeysAreNotChanges() {
        let moved = "# a comment that shifts every line\n\n" + Self.base.replacingOccurrences(
            of: "  otlphttp:\n    endpoint: http://a.example:4318\n  debug: {}",
            with: "  debug: {}\n  otlphttp:\n    endpoint: http://a.example:4318")
        let diff = ConfigDiff(old: Self.config(Self.base), new: Self.config(moved))
        #expect(diff.exporters.kept == [ComponentID("otlphttp")!, ComponentID("debug")!])
        #expect(diff.exporters.changed.isEmpty)
    }

    @Test func aNewEndpointRebuildsOnlyThatExporter() {
        let edited = Self.base.replacingOccurrences(of: "http://a.example:4318", with: "http://b.example:4318")
        let diff = ConfigDiff(old: Self.config(Self.base), new: Self.config(edited))
        #expect(diff.exporters == ComponentChanges(kept: [ComponentID("debug")!], changed: [ComponentID("otlphttp")!]))
        #expect(diff.receivers.changed.isEmpty && diff.processors.changed.isEmpty)
    }

    @Test func aChangedAuthenticatorRebuildsTheReceiversThatNameIt() {
        let edited = Self.base.replacingOccurrences(of: "secret-one", with: "secret-two")
        let diff = ConfigDiff(old: Self.config(Self.base), new: Self.config(edited))
        #expect(diff.extensions.changed == [ComponentID("bearertokenauth")!])
        #expect(diff.extensions.kept == [ComponentID("health_check")!])
        #expect(diff.receivers.changed == [ComponentID("otlp")!])
        #expect(diff.receivers.kept == [ComponentID("otlp/plain")!])
    }

    @Test func addedAndRemovedExportersAndPipelines() {
        let edited = Self.base
            .replacingOccurrences(of: "  debug: {}", with: "  otlphttp/second:\n    endpoint: http://c.example:4318")
            .replacingOccurrences(of: "exporters: [otlphttp, debug]", with: "exporters: [otlphttp, otlphttp/second]\n    traces:\n      receivers: [otlp/plain]\n      exporters: [otlphttp]")
        let diff = ConfigDiff(old: Self.config(Self.base), new: Self.config(edited))
        #expect(diff.exporters == ComponentChanges(kept: [ComponentID("otlphttp")!], added: [ComponentID("otlphttp/second")!],
                                                   removed: [ComponentID("debug")!]))
        #expect(diff.pipelines == ComponentChanges(kept: [ComponentID("logs")!], added: [ComponentID("traces")!]))
    }

    @Test func aComponentNoPipelineUsesIsNotPartOfTheDiff() {
        let edited = Self.base.replacingOccurrences(of: "  debug: {}", with: "  debug: {}\n  debug/unused: {}")
        let diff = ConfigDiff(old: Self.config(Self.base), new: Self.config(edited))
        #expect(diff.exporters.isEmpty)
    }

    @Test func logDecisions() {
        let logs = ComponentID("logs")!
        let settings = DiskLogSettings()
        var other = settings
        other.maxSizeBytes = settings.maxSizeBytes * 2
        #expect(LogSpec.decide(pipeline: logs, old: .memory(limitBytes: 1 << 20), new: .memory(limitBytes: 1 << 20)) == .keep)
        #expect(LogSpec.decide(pipeline: logs, old: .memory(limitBytes: 1 << 20), new: .memory(limitBytes: 2 << 20)) == .replace)
        #expect(LogSpec.decide(pipeline: logs, old: .memory(limitBytes: 1 << 20), new: .disk(directory: "/d", settings: settings)) == .replace)
        #expect(LogSpec.decide(pipeline: logs, old: .disk(directory: "/d", settings: settings), new: .disk(directory: "/e", settings: settings)) == .replace)
        #expect(LogSpec.decide(pipeline: logs, old: .disk(directory: "/d", settings: settings), new: .disk(directory: "/d", settings: settings)) == .keep)
        guard case .keepUntilRestart(let why) = LogSpec.decide(pipeline: logs, old: .disk(directory: "/d", settings: settings),
                                                                new: .disk(directory: "/d", settings: other)) else {
            Issue.record("changed settings in the same directory must keep the open log")
            return
        }
        #expect(why.contains("pipeline logs") && why.contains("restart"))
    }

    @Test func deliveryPlan() {
        func key(_ pipeline: String, _ exporter: String) -> DeliveryKey { DeliveryKey(pipeline: ComponentID(pipeline)!, exporter: ComponentID(exporter)!) }
        let small = BatchShape(sendBatchSize: 100), large = BatchShape(sendBatchSize: 200)
        let old = [key("logs", "a"): small, key("logs", "b"): small, key("logs", "gone"): small, key("logs/x", "a"): small,
                   key("traces", "a"): small, key("logs/removed", "a"): small]
        let new = [key("logs", "a"): small, key("logs", "b"): small, key("logs", "new"): small, key("logs/x", "a"): large,
                   key("traces", "a"): small, key("metrics", "a"): small]
        let plan = DeliveryPlan(old: old, new: new, keptLogs: [ComponentID("logs")!, ComponentID("logs/x")!],
                                keptExporters: [ComponentID("a")!])
        #expect(plan == DeliveryPlan(
            keep: [key("logs", "a")],
            // b was rebuilt (new endpoint); logs/x's batch shape changed.
            restart: [key("logs", "b"), key("logs/x", "a")],
            // traces got a new log; metrics and logs→new are new.
            start: [key("logs", "new"), key("traces", "a"), key("metrics", "a")],
            drain: [key("logs", "gone")],
            retire: [key("traces", "a"), key("logs/removed", "a")]))
    }
}

/// The delivery-loop side of a reload, against a real memory log.
struct DeliveryControlTests {
    static let reader = ComponentID("otlphttp")!

    static func batch() throws -> OTLPBatch {
        try OTLPBatch.decode(protobuf: [], signal: .logs, limits: OTLPDecodeLimits(maxBodyBytes: 1 << 20))
    }

    @Test func aDrainDeliversThroughItsTargetAndNoFurther() async throws {
        let log = MemoryPipelineLog(name: "logs", limitBytes: 1 << 20)
        let control = DeliveryControl()
        let cursor = ControlledCursor(inner: log.cursor(Self.reader), control: control)
        for _ in 0..<3 { _ = log.append(try Self.batch(), items: 1, bytes: 10) }
        control.drain(through: log.lastSequence, alreadyDone: false)
        for _ in 0..<2 { _ = log.append(try Self.batch(), items: 1, bytes: 10) }   // after the reload
        let first = await cursor.read(BatchShape(sendBatchSize: 1, timeout: .zero, sendBatchMaxSize: 1))
        #expect(first.map(\.sequence) == [1])
        cursor.commit(through: 1)
        var delivered: [UInt64] = [1]
        while true {
            let entries = await cursor.read(BatchShape(sendBatchSize: 10, timeout: .zero))
            guard let last = entries.last else { break }
            delivered += entries.map(\.sequence)
            cursor.commit(through: last.sequence)
        }
        #expect(delivered == [1, 2, 3])
        #expect(control.isStopping)
        log.detach(Self.reader)
        #expect(log.lag(Self.reader).entries == 0)
        // With its only reader gone, the log holds nothing back.
        #expect(log.usedBytes == 0)
    }

    @Test func aStopEndsAnIdleReadAndLeavesTheCursorWhereItWas() async throws {
        let log = MemoryPipelineLog(name: "logs", limitBytes: 1 << 20)
        let control = DeliveryControl()
        let cursor = ControlledCursor(inner: log.cursor(Self.reader), control: control)
        _ = log.append(try Self.batch(), items: 1, bytes: 10)
        let one = await cursor.read(.unbatched)
        cursor.commit(through: one.last!.sequence)
        let rest = Mutex<[LogEntry]?>(nil)
        // Nothing to read: the loop waits until the stop cancels it.
        let task = Task {
            let got = await cursor.read(.unbatched)
            rest.withLock { $0 = got }
        }
        control.attach(task)
        control.stop()
        await task.value
        #expect(rest.withLock { $0 }?.isEmpty == true)
        // The next reader of this cursor starts right after the last commit.
        _ = log.append(try Self.batch(), items: 1, bytes: 10)
        let next = await log.cursor(Self.reader).read(.unbatched)
        #expect(next.map(\.sequence) == [2])
    }

    @Test func aStopDuringAnAttemptWaitsForItAndEndsTheBackoff() async throws {
        let control = DeliveryControl()
        #expect(control.enter(.exporting))
        control.stop()
        // The attempt on the wire is not cancelled; the backoff after it is refused.
        await #expect(throws: CancellationError.self) { try await control.sleep(.seconds(3600)) }
    }
}
