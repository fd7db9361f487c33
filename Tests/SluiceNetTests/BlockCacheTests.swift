import CBlockCache
import Foundation
import Testing

/// The block cache keeps large freed blocks for reuse and gives back the ones load
/// no longer takes. The cache is process-wide and other tests use it meanwhile, so
/// this one works with a size nothing else allocates (40 MiB) and looks for its own
/// block.
@Suite struct BlockCacheTests {
    static let size = 40 << 20

    @Test func keepsReusesAndTrimsIdleBlocks() throws {
        sluice_block_trim(0)
        let block = try #require(malloc(Self.size))
        sluice_block_put(block)
        #expect(sluice_block_cached_bytes() >= Self.size)
        // A request of about that size gets the same block back; a much smaller one does not.
        var usable = 0
        if let other = sluice_block_take(Self.size / 4, &usable) {
            #expect(other != block)
            sluice_block_put(other)
        }
        let taken = try #require(sluice_block_take(Self.size - 1000, &usable))
        #expect(taken == block)
        #expect(usable >= Self.size)
        // Recently put: a trim with a long idle time keeps it ...
        sluice_block_put(taken)
        sluice_block_trim(60_000)
        let kept = try #require(sluice_block_take(Self.size, &usable))
        #expect(kept == taken)
        // ... and a zero idle time gives it back to the system.
        sluice_block_put(kept)
        sluice_block_trim(0)
        #expect(sluice_block_take(Self.size, &usable) == nil)
    }
}
