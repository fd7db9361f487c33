import Testing
@testable import SluiceCore

/// The memory log's limits: bytes always, and entries or items when the exporters'
/// `sending_queue` counts requests or items, as the Collector's sizers do.
@Suite struct MemoryPipelineLogTests {
    static let reader = ComponentID(type: "nop", name: nil)

    @Test func requestsSizerBoundsEntries() throws {
        let log = MemoryPipelineLog(name: "logs", limitBytes: 1 << 30, limitEntries: 2)
        _ = log.cursor(Self.reader)
        let batch = try DiskPipelineLogTests.batch("a")
        #expect(log.append(batch, items: 2, bytes: 100) == .appended(sequence: 1))
        #expect(log.append(batch, items: 2, bytes: 100) == .appended(sequence: 2))
        #expect(!log.hasRoom(for: 1))
        #expect(log.append(batch, items: 2, bytes: 100) == .full)
    }

    @Test func itemsSizerBoundsItemsButTakesOneRequestIntoAnEmptyLog() throws {
        let log = MemoryPipelineLog(name: "logs", limitBytes: 1 << 30, limitItems: 5)
        _ = log.cursor(Self.reader)
        let batch = try DiskPipelineLogTests.batch("a")
        #expect(log.append(batch, items: 9, bytes: 100) == .appended(sequence: 1), "larger than the limit, but the log is empty")
        #expect(log.append(batch, items: 1, bytes: 100) == .full)
    }

    @Test func aClosedLogSaysSo() throws {
        let log = MemoryPipelineLog(name: "logs", limitBytes: 1 << 20)
        #expect(!log.isClosed)
        log.close()
        #expect(log.isClosed && !log.hasRoom(for: 1))
    }
}
