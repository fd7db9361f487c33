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

    /// The log holds each request's protobuf and the newest decoded batches within
    /// their budget; a reader gets every record back, decoding again what the log
    /// let go.
    @Test func decodedBatchesBeyondTheBudgetAreLetGoAndDecodedAgainOnRead() async throws {
        let first = try DiskPipelineLogTests.batch("a", count: 20)
        let decoded = first.memoryBytes
        let protobuf = first.withProtobuf { $0.count }
        #expect(protobuf * 2 < decoded, "a decoded batch takes several times its protobuf")
        // Room for about two decoded batches: the older ones keep only protobuf.
        let log = MemoryPipelineLog(name: "logs", limitBytes: 1 << 30, decodedBudgetBytes: decoded * 2 + decoded / 2)
        let cursor = log.cursor(Self.reader)
        var expected: [String] = []
        var protobufTotal = 0
        for i in 0..<6 {
            let batch = i == 0 ? first : try DiskPipelineLogTests.batch("b\(i)", count: 20)
            expected += DiskPipelineLogTests.bodies([LogEntry(sequence: 0, batch: batch, items: 20, bytes: 0)])
            protobufTotal += batch.withProtobuf { $0.count }
            #expect(log.append(batch, items: 20, bytes: 0) == .appended(sequence: UInt64(i + 1)))
        }
        #expect(log.decodedBytes <= log.decodedBudgetBytes && log.decodedBytes >= decoded * 2)
        #expect(log.usedBytes == log.decodedBytes + protobufTotal)
        var read: [LogEntry] = []
        while read.count < 6 { read += await cursor.read(BatchShape(sendBatchSize: 0, timeout: .zero)) }
        #expect(read.map(\.sequence) == Array(1...6))
        #expect(DiskPipelineLogTests.bodies(read) == expected)
        #expect(log.lag(Self.reader).entries == 6)
        cursor.commit(through: 6)
        #expect(log.usedBytes == 0 && log.decodedBytes == 0)
    }

    /// Only protobuf makes the log full: decoded batches are let go to make room.
    @Test func theByteLimitCountsProtobufAndShedsDecodedBatchesFirst() throws {
        let batch = try DiskPipelineLogTests.batch("a", count: 20)
        let protobuf = batch.withProtobuf { $0.count }
        // Room for the protobuf of three requests, far less than one decoded batch.
        let log = MemoryPipelineLog(name: "logs", limitBytes: protobuf * 3)
        _ = log.cursor(Self.reader)
        for i in 1...3 {
            #expect(log.append(try DiskPipelineLogTests.batch("a", count: 20), items: 20, bytes: 0) == .appended(sequence: UInt64(i)))
            #expect(log.usedBytes <= log.limitBytes)
        }
        #expect(!log.hasRoom(for: protobuf))
        #expect(log.append(try DiskPipelineLogTests.batch("a", count: 20), items: 20, bytes: 0) == .full)
        #expect(log.decodedBytes == 0)
    }

    /// A reader far behind gets the backlog in reads whose decoded size stays within
    /// the log's limit (at least one entry each), not all of it decoded at once.
    @Test func oneReadDecodesNoMoreThanTheLimit() async throws {
        let decoded = try DiskPipelineLogTests.batch("a", count: 20).memoryBytes
        let log = MemoryPipelineLog(name: "logs", limitBytes: decoded * 2 + decoded / 2, decodedBudgetBytes: 0)
        let cursor = log.cursor(Self.reader)
        for i in 1...5 { #expect(log.append(try DiskPipelineLogTests.batch("a", count: 20), items: 20, bytes: 0) == .appended(sequence: UInt64(i))) }
        var reads: [[UInt64]] = []
        while reads.joined().count < 5 { reads.append(await cursor.read(BatchShape(sendBatchSize: 0, timeout: .zero)).map(\.sequence)) }
        #expect(reads == [[1, 2], [3, 4], [5]])
    }

    /// A processor's edit is what the log keeps, also once the decoded batch is gone.
    @Test func anEditedBatchIsKeptAsEdited() async throws {
        let log = MemoryPipelineLog(name: "logs", limitBytes: 1 << 30, decodedBudgetBytes: 0)
        let cursor = log.cursor(Self.reader)
        let batch = try DiskPipelineLogTests.batch("secret", count: 3)
        let removed = batch.edit { editor in editor.removeLogRecords { $0.view.body?.stringValue == "secret-1" } }
        #expect(removed == 1)
        #expect(log.append(batch, items: 2, bytes: 0) == .appended(sequence: 1))
        #expect(log.decodedBytes == 0, "a budget of nothing keeps protobuf only")
        let read = await cursor.read(BatchShape(sendBatchSize: 0, timeout: .zero))
        #expect(DiskPipelineLogTests.bodies(read) == ["secret-0", "secret-2"])
    }

    @Test func aClosedLogSaysSo() throws {
        let log = MemoryPipelineLog(name: "logs", limitBytes: 1 << 20)
        #expect(!log.isClosed)
        log.close()
        #expect(log.isClosed && !log.hasRoom(for: 1))
    }
}
