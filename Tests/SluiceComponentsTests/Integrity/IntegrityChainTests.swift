import Logging
import Testing
@testable import SluiceComponents
import SluiceCore

@Suite struct IntegrityChainTests {
    func processor() -> IntegrityProcessor {
        IntegrityProcessor(id: ComponentID(type: "integrity"), chain: true, key: nil, stream: "s",
                           logger: Logger(label: "test"), metrics: MetricsRegistry())
    }

    func request(_ records: Int) throws -> OTLPBatch {
        var all: [NewLogRecord] = []
        for i in 0..<records {
            var record = NewLogRecord()
            record.attributes = [OTLPKeyValue("event_id", .text("e\(i)"))]
            all.append(record)
        }
        return try OTLPBatch.makeLogs(resource: [], scopeName: "t", records: all)
    }

    func seqs(_ batch: OTLPBatch) -> [String] {
        batch.withLogs { $0.records.map { $0.record.attributes["integrity_seq"]!.stringValue } } ?? []
    }

    @Test func aRefusedAppendHandsItsNumbersOutAgain() throws {
        let integrity = processor()
        let log = MemoryPipelineLog(name: "logs", limitBytes: 1 << 20, limitEntries: 1)
        let route = PipelineRoute(name: "logs", processors: [integrity], log: log)
        #expect(route.sealers.count == 1)

        let first = try request(3)
        guard case .appended = route.append(first, sealers: route.sealers[...]) else { Issue.record("first append refused"); return }
        #expect(seqs(first) == ["1", "2", "3"])

        // The log holds one entry: the second request is refused after sealing…
        let refused = try request(2)
        #expect(route.append(refused, sealers: route.sealers[...]) == .full)
        // …and its numbers go to the retry once there is room.
        let retry = try request(2)
        // (The same pipeline, its log now with room; another pipeline's chain is separate.)
        let other = MemoryPipelineLog(name: "logs", limitBytes: 1 << 20)
        let roomy = PipelineRoute(name: "logs", processors: [integrity], log: other)
        guard case .appended = roomy.append(retry, sealers: roomy.sealers[...]) else { Issue.record("retry refused"); return }
        #expect(seqs(retry) == ["4", "5"])
        let prev = retry.withLogs { $0.records.first { _ in true }!.record.attributes["integrity_prev"]!.stringValue }
        let lastOfFirst = first.withLogs { $0.records.map { $0.record.attributes["integrity_hash"]!.stringValue }.last }
        #expect(prev == lastOfFirst)
    }

    @Test func spansPassUnsealed() throws {
        let integrity = processor()
        let spans = try OTLPBatch.decode(json: Array(#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"s"}]}]}]}"#.utf8), signal: .traces)
        var appended = false
        #expect(integrity.seal(spans, pipeline: "traces") { appended = true; return true } == true)
        #expect(appended && !spans.isEdited)
    }
}

extension IntegrityChainTests {
    @Test func eachPipelineHasItsOwnChain() throws {
        let integrity = processor()
        let a = PipelineRoute(name: "logs/a", processors: [integrity], log: MemoryPipelineLog(name: "logs/a", limitBytes: 1 << 20))
        let b = PipelineRoute(name: "logs/b", processors: [integrity], log: MemoryPipelineLog(name: "logs/b", limitBytes: 1 << 20))
        let (first, second, third) = (try request(2), try request(2), try request(1))
        _ = a.append(first, sealers: a.sealers[...])
        _ = b.append(second, sealers: b.sealers[...])
        _ = a.append(third, sealers: a.sealers[...])
        #expect(seqs(first) == ["1", "2"] && seqs(second) == ["1", "2"] && seqs(third) == ["3"])
        let streams = [first, second].map { $0.withLogs { $0.records.first { _ in true }!.record.attributes["integrity_stream"]!.stringValue }! }
        #expect(streams[0].hasPrefix("s/logs/a#") && streams[1].hasPrefix("s/logs/b#"))
    }
}
