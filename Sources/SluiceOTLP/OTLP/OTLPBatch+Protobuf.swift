import COTLP

extension OTLPBatch {
    /// Decodes an `Export*ServiceRequest` from protobuf bytes.
    ///
    /// The bytes are checked for size and nesting first (see `ProtobufWireCheck`);
    /// protobuf-c then unpacks into a fresh arena capped at
    /// `limits.maxArenaBytesPerInputByte` times the input size.
    public static func decode(
        protobuf bytes: UnsafeRawBufferPointer,
        signal: OTLPSignal,
        limits: OTLPDecodeLimits = .default
    ) throws(OTLPDecodeError) -> OTLPBatch {
        try checkSize(bytes.count, limits)
        let schema = OTLPSchemas.shared.request(signal)
        try ProtobufWireCheck(maxDepth: limits.maxNestingDepth).check(bytes, schema: schema)
        // protobuf-c's structs take about seven times the wire size for OTLP logs
        // (measured on the benchmark's governance events): one chunk of eight times
        // fits most requests whole, so the arena is one allocation, not a chain (nine
        // when the input is kept as well).
        let keepSource = keepsProtobufSource && bytes.count > 0
        let arena = try makeArena(forInput: bytes.count, sizeFactor: keepSource ? 9 : 8, limits)
        var source: UnsafeRawBufferPointer?
        if keepSource {
            guard let copy = arena.allocate(bytes.count) else {
                throw OTLPDecodeError(.outOfMemory, "out of memory decoding the request")
            }
            copy.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            source = UnsafeRawBufferPointer(start: copy, count: bytes.count)
        }
        let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
        guard let message = protobuf_c_message_unpack(signal.requestDescriptor, arena.allocator, bytes.count, base) else {
            throw OTLPDecodeError(.malformed, "invalid protobuf: not an OTLP \(schema.name)")
        }
        // What processors add later (a masked value, the integrity seal: about twice
        // the input for the benchmark's events) grows from the input's size, not
        // from double the first chunk: an edited request then holds 4.5 MB rather
        // than 10 MB for a 376 KB input, and the disk log caches twice as many.
        arena.setNextChunk(max(bytes.count, 64 << 10))
        let batch = OTLPBatch(signal: signal, arena: arena, message: message)
        batch.protobufSource = source
        return batch
    }

    public static func decode(protobuf bytes: [UInt8], signal: OTLPSignal, limits: OTLPDecodeLimits = .default) throws(OTLPDecodeError) -> OTLPBatch {
        do {
            return try bytes.withUnsafeBytes { buffer in try decode(protobuf: buffer, signal: signal, limits: limits) }
        } catch let error as OTLPDecodeError {
            throw error
        } catch {
            throw OTLPDecodeError(.malformed, "\(error)")
        }
    }

    /// Both decoders refuse a body over the limit before doing any work.
    static func checkSize(_ count: Int, _ limits: OTLPDecodeLimits) throws(OTLPDecodeError) {
        guard count <= limits.maxDecompressedBytes else {
            throw OTLPDecodeError(.tooLarge, "request of \(count.byteCountText) is over the limit of \(limits.maxDecompressedBytes.byteCountText)")
        }
    }

    /// An arena for a request of `count` input bytes: a first chunk of `sizeFactor`
    /// times the input (what decoding is expected to take) and the limits' cap.
    static func makeArena(forInput count: Int, sizeFactor: Int, _ limits: OTLPDecodeLimits) throws(OTLPDecodeError) -> OTLPArena {
        guard let arena = OTLPArena(firstChunk: min(max(count * sizeFactor, 4096), 64 << 20), limit: limits.arenaLimit(forInput: count)) else {
            throw OTLPDecodeError(.outOfMemory, "out of memory decoding the request")
        }
        return arena
    }

    /// The request as protobuf bytes, packed from the decoded message (always: what
    /// the message says, whatever `protobufSource` holds).
    public func encodeProtobuf() -> [UInt8] {
        Self.pack(message)
    }

    static func pack(_ message: UnsafePointer<ProtobufCMessage>) -> [UInt8] {
        let size = protobuf_c_message_get_packed_size(message)
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            count = size == 0 ? 0 : protobuf_c_message_pack(message, buffer.baseAddress)
        }
    }
}
