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

    @Test func limitRefusesInsteadOfGrowing() throws {
        let arena = try #require(OTLPArena(firstChunk: 64, limit: 256))
        #expect(arena.allocate(200) != nil)
        #expect(arena.allocate(100) == nil)
        #expect(arena.allocate(32) != nil)
        #expect(arena.allocate(Int.max - 8) == nil)
    }
}
