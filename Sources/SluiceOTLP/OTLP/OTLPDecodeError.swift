/// Why a payload was refused. Every case says what was wrong and where, in words a
/// client's operator can act on; receivers turn it into 400/413/415.
public struct OTLPDecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The body or its decompressed form is over a configured size limit (413).
        case tooLarge
        /// Messages or JSON values nest deeper than the limit (400).
        case tooDeep
        /// Not valid protobuf / JSON / OTLP (400).
        case malformed
        /// A compressed body that does not decompress (400).
        case badCompression
        /// A content type or encoding Sluice does not speak (415).
        case unsupported
        /// The decoder ran out of memory for this request (503: retry later).
        case outOfMemory
    }

    public var kind: Kind
    public var message: String
    /// Byte offset in the (decompressed) body, where one is known.
    public var offset: Int?

    public init(_ kind: Kind, _ message: String, offset: Int? = nil) {
        self.kind = kind
        self.message = message
        self.offset = offset
    }

    public var description: String {
        if let offset { return "\(message) (at byte \(offset))" }
        return message
    }
}

/// Limits applied to untrusted input before and while it is decoded.
public struct OTLPDecodeLimits: Sendable, Equatable {
    /// Largest body accepted, compressed or not (the receiver's `max_request_body_size`).
    public var maxBodyBytes: Int
    /// Largest body after decompression. A compression bomb stops here.
    public var maxDecompressedBytes: Int
    /// Deepest nesting of messages (protobuf) or of objects and arrays (JSON).
    /// protobuf-c recurses without a limit; this keeps its stack safe.
    public var maxNestingDepth: Int
    /// Memory one decoded request may take, as a multiple of its decompressed size.
    public var maxArenaBytesPerInputByte: Int

    public init(
        maxBodyBytes: Int = 20 << 20,
        maxDecompressedBytes: Int? = nil,
        maxNestingDepth: Int = 64,
        maxArenaBytesPerInputByte: Int = 64
    ) {
        self.maxBodyBytes = maxBodyBytes
        self.maxDecompressedBytes = maxDecompressedBytes ?? maxBodyBytes
        // protobuf-c's recursion (and the JSON reader's) must stay far from the stack's
        // end whatever is configured.
        self.maxNestingDepth = min(max(maxNestingDepth, 1), Self.nestingCeiling)
        self.maxArenaBytesPerInputByte = maxArenaBytesPerInputByte
    }

    public static let `default` = OTLPDecodeLimits()

    /// The deepest nesting any setting can allow.
    public static let nestingCeiling = 256

    func arenaLimit(forInput count: Int) -> Int {
        let (product, overflow) = count.multipliedReportingOverflow(by: maxArenaBytesPerInputByte)
        return overflow ? Int.max : product + (1 << 20)
    }
}

extension Int {
    /// `12 MiB`, `512 KiB`, `300 bytes`: sizes in error messages.
    var byteCountText: String {
        if self >= 1 << 20, self % (1 << 20) == 0 { return "\(self >> 20) MiB" }
        if self >= 1 << 20 { return "\(self >> 20).\((self & ((1 << 20) - 1)) * 10 >> 20) MiB" }
        if self >= 1 << 10, self % (1 << 10) == 0 { return "\(self >> 10) KiB" }
        return "\(self) bytes"
    }
}
