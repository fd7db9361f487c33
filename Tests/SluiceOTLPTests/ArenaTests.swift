import Testing
@testable import SluiceOTLP

@Suite struct ArenaTests {
    @Test func allocationsAreAlignedAndCounted() throws {
        let arena = try #require(OTLPArena(firstChunk: 64))
        var total = 0
        for size in [1, 7, 16, 17, 100, 5000, 3] {
            let p = try #require(arena.allocate(size))
            #expect(Int(bitPattern: p) % 16 == 0)
            p.initializeMemory(as: UInt8.self, repeating: 0xAB, count: size)
            total += (size + 15) / 16 * 16
        }
        #expect(arena.usedBytes == total)
    }

    @Test func editsAfterDecodingGrowTheArenaByTheInputNotByDoubling() throws {
        var json = #"{"resourceLogs":[{"scopeLogs":[{"logRecords":["#
        json += (0..<200).map { #"{"attributes":[{"key":"user_id","value":{"stringValue":"user-\#($0)@example.com"}}]}"# }.joined(separator: ",")
        json += "]}]}]}"
        let input = try OTLPBatch.decode(json: Array(json.utf8), signal: .logs).encodeProtobuf()
        let batch = try OTLPBatch.decode(protobuf: input, signal: .logs)
        let decoded = batch.memoryBytes
        // Past the first chunk, as a processor's edits go.
        while batch.memoryBytes == decoded { _ = try #require(batch.arena.allocate(64)) }
        #expect(batch.memoryBytes - decoded < decoded, "the next chunk is sized from the input, not twice the first")
        #expect(batch.memoryBytes - decoded >= 64 << 10)
    }

    @Test func limitRefusesInsteadOfGrowing() throws {
        let arena = try #require(OTLPArena(firstChunk: 64, limit: 256))
        #expect(arena.allocate(200) != nil)
        #expect(arena.allocate(100) == nil)
        #expect(arena.allocate(32) != nil)
        #expect(arena.allocate(Int.max - 8) == nil)
    }
}
