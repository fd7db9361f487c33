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
        if let packed = withPackedLogs({ Self.array($0) }) { return packed }
        return Self.packWithProtobufC(message)
    }

    /// Calls `body` with a logs request packed by `LogsProtobufWriter` (protobuf-c's
    /// bytes, several times faster); nil, without calling it, for other signals and
    /// for the trees that writer leaves to protobuf-c.
    func withPackedLogs<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R? {
        guard signal == .logs else { return nil }
        return try withExtendedLifetime(self) {
            let request = UnsafeRawPointer(message).assumingMemoryBound(to: CLogsRequest.self)
            // The packed request is smaller than its structs in the arena (a string's
            // 16-byte descriptor against its 1-byte length, a message's 24-byte header
            // against 2 bytes of tag and length): half the arena is a first guess
            // that rarely grows, and the unused head of the buffer is never touched.
            return try LogsProtobufWriter.withPacked(request, capacity: arena.usedBytes / 2, body)
        }
    }

    /// protobuf-c's generic packer: a size walk over the descriptors, then a pack walk
    /// (public for `make bench`, which holds LogsProtobufWriter against it).
    public static func packWithProtobufC(_ message: UnsafePointer<ProtobufCMessage>) -> [UInt8] {
        let size = protobuf_c_message_get_packed_size(message)
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            count = size == 0 ? 0 : protobuf_c_message_pack(message, buffer.baseAddress)
        }
    }

    private static func array(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: bytes.count) { buffer, count in
            if let base = bytes.baseAddress { buffer.baseAddress!.initialize(from: base.assumingMemoryBound(to: UInt8.self), count: bytes.count) }
            count = bytes.count
        }
    }
}
