// Receiver connections allocate their buffers (reads, request bodies) through the
// block cache that the decode arenas use too (Sources/CBlockCache): a request body
// of a few hundred KB then lands in memory that is already mapped, instead of a
// fresh mapping whose every page faults on first touch.
import CBlockCache
@_spi(CustomByteBufferAllocator) import NIOCore

extension ByteBufferAllocator {
    static let blockCache = ByteBufferAllocator(
        allocate: { sluice_block_malloc($0) },
        reallocate: { sluice_block_realloc($0, $1, $2) },
        deallocate: { sluice_block_free($0) },
        copy: { sluice_block_copy($0, $1, $2) })
}
