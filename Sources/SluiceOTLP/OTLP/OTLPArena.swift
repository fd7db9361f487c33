import COTLP

/// The memory one decoded request lives in (see `sluice_arena.h`). Owned by exactly
/// one `OTLPBatch`; freed in one step when the batch goes.
final class OTLPArena {
    let raw: OpaquePointer

    /// `nil` when the system is out of memory.
    init?(firstChunk: Int = 0, limit: Int = 0) {
        guard let raw = sluice_arena_create(firstChunk, limit) else { return nil }
        self.raw = raw
    }

    deinit { sluice_arena_destroy(raw) }

    var allocator: UnsafeMutablePointer<ProtobufCAllocator> { sluice_arena_allocator(raw) }

    /// Bytes handed out: what the decoded batch costs.
    var usedBytes: Int { sluice_arena_used(raw) }

    /// Bytes taken from the system, unused chunk tails included: what the batch
    /// really costs while it is held.
    var reservedBytes: Int { sluice_arena_reserved(raw) }

    func allocate(_ size: Int) -> UnsafeMutableRawPointer? { sluice_arena_alloc(raw, size) }

    /// Makes the next chunk `size` bytes (those after it double again).
    func setNextChunk(_ size: Int) { sluice_arena_set_next_chunk(raw, size) }

    /// A copy of `bytes` as protobuf-c binary data.
    func copyBinary(_ bytes: UnsafeBufferPointer<UInt8>) -> ProtobufCBinaryData? {
        if bytes.isEmpty { return ProtobufCBinaryData(len: 0, data: nil) }
        guard let memory = allocate(bytes.count) else { return nil }
        memory.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        return ProtobufCBinaryData(len: bytes.count, data: memory.assumingMemoryBound(to: UInt8.self))
    }

    /// A zeroed, initialised message of `descriptor`'s type.
    func newMessage(_ descriptor: UnsafePointer<ProtobufCMessageDescriptor>) -> UnsafeMutableRawPointer? {
        guard let memory = allocate(descriptor.pointee.sizeof_message) else { return nil }
        protobuf_c_message_init(descriptor, memory)
        return memory
    }
}
