import Foundation
import Testing
import SluiceCore
@testable import SluiceComponents

/// The exporter kit without sockets: the split-and-send loop on scripted answers,
/// per-record results and their progress, and requests cut to some of their records.
@Suite struct ExporterKitTests {
    // MARK: Requests cut to some records

    @Test func aLargeRecordsNeighbourIsCopiedWithoutIt() throws {
        let big = String(repeating: "p", count: 3 << 19)
        let batch = try OTLPBatch.decode(json: Array(logsJSON(["big": big, "small": "s"]).utf8), signal: .logs)
        let index = OTLPRecordIndex([batch], signal: .logs)
        #expect(index.count == 2)
        let second = index.batches([1], of: [batch], signal: .logs)
        #expect(second.count == 1 && second[0] !== batch)
        #expect(second[0].itemCount == 1)
        #expect(second[0].encodeProtobuf().count < 1000)
        #expect(index.batches([0, 1], of: [batch], signal: .logs).first === batch)
    }

    // MARK: The split-and-send loop

    /// Sends records 0..<n, each of `size` bytes, to a destination that takes
    /// bodies up to `limit` bytes and refuses the records in `bad`.
    func deliver(records n: Int, size: Int, limit: Int, answer: @escaping @Sendable (Payload) -> PayloadAnswer? = { _ in nil })
        async -> (ExportProgress, PayloadDelivery.Result, sent: [[Int]], refusedTooLarge: Int) {
        var records = EncodedRecords()
        for i in 0..<n {
            records.bytes += Array(repeating: UInt8(ascii: "a"), count: size)
            records.ends.append(records.bytes.count)
            records.locators.append(RecordLocator(batch: 0, resource: 0, scope: 0, record: Int32(i)))
        }
        let log = SendLog()
        let delivery = PayloadDelivery(
            pack: { order, _ in
                var packer = PayloadPacker(limit: Int.max / 2, gzip: false)
                return packer.pack(records, order).payloads
            },
            send: { payload in
                if let scripted = answer(payload) {
                    log.append(payload.records, accepted: false)
                    return scripted
                }
                guard payload.body.count <= limit else {
                    log.append(payload.records, accepted: false)
                    return .tooLarge("HTTP 413")
                }
                log.append(payload.records, accepted: true)
                return .accepted
            })
        var progress = ExportProgress([], records: n)
        let result = await delivery.run(&progress)
        return (progress, result, log.accepted, log.refused)
    }

    @Test func a413SplitsInHalvesUntilEveryPayloadFitsAndOneRecordTooLargeAloneIsRefused() async {
        // 64 records of 100 bytes under a 1,000-byte limit: halves of 32, 16, 8 do not
        // fit, 4 do. Record 5 alone is 100 bytes too; make one record too large by a
        // scripted 413 whenever it is in a payload.
        let (progress, result, sent, refusedCount) = await deliver(records: 64, size: 100, limit: 1000) { payload in
            payload.records.contains(5) ? .tooLarge("HTTP 413") : nil
        }
        #expect(result.retry == nil)
        #expect(Set(sent.flatMap { $0 }) == Set(0..<64).subtracting([5]))
        #expect(sent.flatMap { $0 }.count == 63, "a record was delivered twice")
        #expect(progress.refused.keys.sorted() == [5])
        #expect(progress.refused[5]!.contains("even alone"))
        // Halving: at most 2n - 1 attempts in all for n records.
        #expect(sent.count + refusedCount <= 2 * 64)
    }

    @Test func perRecordResultsDeliverRefuseAndKeepOpen() async {
        let (progress, result, _, _) = await deliver(records: 4, size: 10, limit: 1 << 20) { payload in
            .perRecord([.delivered, .retry("HTTP 429 for this item"), .refused("mapper_parsing_exception: bad"), .delivered])
        }
        #expect(progress.delivered == [true, false, false, true])
        #expect(progress.refused == [2: "mapper_parsing_exception: bad"])
        #expect(progress.open == [1])
        #expect(result.retry?.reason.contains("429") == true)
    }

    @Test func aRetryStopsTheCallAndARefusalRefusesWhatIsLeft() async {
        let retried = await deliver(records: 10, size: 10, limit: 1 << 20) { _ in .retry("HTTP 503", after: .seconds(2)) }
        #expect(retried.1.retry?.after == .seconds(2))
        #expect(retried.0.open.count == 10)
        let refused = await deliver(records: 10, size: 10, limit: 1 << 20) { _ in .refused("HTTP 403") }
        #expect(refused.1.retry == nil)
        #expect(refused.0.refused.count == 10)
        let outcome = PayloadDelivery.outcome(refused.0, refused.1, records: OTLPRecordIndexStub(count: 10), batches: [], signal: .logs, redact: { $0 })
        #expect(outcome == .permanent(reason: "HTTP 403"))
    }

    @Test func everyRecordRefusedOneByOneIsNotAWholeRefusal() async throws {
        // A call whose only document has a mapping error: the destination is taking
        // data (issue 21), so the outcome is a partial delivery, not `.permanent`.
        let batch = try OTLPBatch.decode(json: Array(logsJSON(["bad": "1"]).utf8), signal: .logs)
        let index = OTLPRecordIndex([batch], signal: .logs)
        let (progress, result, _, _) = await deliver(records: 1, size: 10, limit: 1 << 20) { _ in .perRecord([.refused("mapper_parsing_exception")]) }
        let outcome = PayloadDelivery.outcome(progress, result, records: index, batches: [batch], signal: .logs, redact: { $0 })
        guard case .partiallyDelivered(let rejected, let reason) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect(rejected.map(\.itemCount) == [1] && reason == "mapper_parsing_exception")
    }

    @Test func theProgressMemoryGivesARetryOnlyWhatIsLeft() throws {
        let batch = try OTLPBatch.decode(json: Array(logsJSON(["a": "1", "b": "2"]).utf8), signal: .logs)
        let memory = ProgressMemory()
        var progress = memory.take([batch], records: 2)
        progress.deliver([0])
        memory.keep(progress)
        #expect(memory.take([batch], records: 2).open == [1])
        // Taken once: a third attempt starts afresh only if the second did not keep it.
        #expect(memory.take([batch], records: 2).open == [0, 1])
    }

    // MARK: Helpers

    func logsJSON(_ records: KeyValuePairs<String, String>) -> String {
        let items = records.map { id, value in
            #"{"body":{"stringValue":"\#(id)"},"attributes":[{"key":"event_id","value":{"stringValue":"\#(id)"}},{"key":"v","value":{"stringValue":"\#(value)"}}]}"#
        }
        return #"{"resourceLogs":[{"resource":{},"scopeLogs":[{"scope":{"name":"t"},"logRecords":[\#(items.joined(separator: ","))]}]}]}"#
    }
}

struct OTLPRecordIndexStub: EncodedRecordsIndex {
    var count: Int
    var locators: [RecordLocator] { (0..<count).map { RecordLocator(batch: 0, resource: 0, scope: 0, record: Int32($0)) } }
}

/// What a scripted destination was sent.
final class SendLog: @unchecked Sendable {
    // @unchecked: every stored property is read and written under `lock`.
    private let lock = NSLock()
    private var _accepted: [[Int]] = []
    private var _refused = 0
    func append(_ records: [Int], accepted: Bool) {
        lock.lock(); defer { lock.unlock() }
        if accepted { _accepted.append(records) } else { _refused += 1 }
    }
    var accepted: [[Int]] { lock.lock(); defer { lock.unlock() }; return _accepted }
    var refused: Int { lock.lock(); defer { lock.unlock() }; return _refused }
}
