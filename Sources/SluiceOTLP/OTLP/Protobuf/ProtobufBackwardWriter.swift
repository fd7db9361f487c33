import COTLP

/// Protobuf written from the end of a buffer towards its start.
///
/// A length-delimited field is its tag, the length of its content as a varint, then
/// the content (https://protobuf.dev/programming-guides/encoding/#length-types).
/// Written forwards, the length must be known before the content: either every
/// nested message is sized first (protobuf-c's `get_packed_size`, a second walk of
/// the whole tree) or room is left and the content moved. Written backwards, the
/// content comes first and its length is simply how far the cursor moved, so one
/// walk writes everything: the writer emits a message's fields last to first, and
/// each field's content before its length and tag.
///
/// The buffer grows (doubling, the written tail moved to the new end) when a
/// `reserve` finds too little room; every write below assumes the caller reserved
/// for it, so the hot path is one compare per field.
struct ProtobufBackwardWriter: ~Copyable {
    /// The wire types of https://protobuf.dev/programming-guides/encoding/#structure.
    enum WireType: UInt8 {
        case varint = 0
        case i64 = 1
        case len = 2
        case i32 = 5
    }

    /// A one-byte tag: field numbers 1-15 (every field the writers here emit).
    @inline(__always)
    static func tag(_ field: UInt8, _ type: WireType) -> UInt8 { field << 3 | type.rawValue }

    /// The most a tag (one byte) and a varint length (at most ten) take.
    static let headerRoom = 11

    private var start: UnsafeMutablePointer<UInt8>
    private var end: UnsafeMutablePointer<UInt8>
    private var cursor: UnsafeMutablePointer<UInt8>

    init(capacity: Int) {
        let capacity = max(capacity, 256)
        start = .allocate(capacity: capacity)
        end = start + capacity
        cursor = end
    }

    deinit { start.deallocate() }

    /// Bytes written so far (they end at the buffer's end).
    var count: Int { end - cursor }

    /// What has been written, valid until the next write or the writer's end.
    var written: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: cursor, count: count) }

    /// Makes room for `bytes` more.
    @inline(__always)
    mutating func reserve(_ bytes: Int) {
        if _slowPath(cursor - start < bytes) { grow(bytes) }
    }

    @inline(never)
    private mutating func grow(_ bytes: Int) {
        let used = count
        let capacity = max((end - start) * 2, used + bytes + 4096)
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        (grown + capacity - used).update(from: cursor, count: used)
        start.deallocate()
        start = grown
        end = grown + capacity
        cursor = end - used
    }

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        cursor -= 1
        cursor.pointee = value
    }

    /// A base-128 varint, least significant group first.
    @inline(__always)
    mutating func varint(_ value: UInt64) {
        if value < 0x80 { return byte(UInt8(truncatingIfNeeded: value)) }
        // ceil(significant bits / 7) bytes.
        let size = (70 - value.leadingZeroBitCount) / 7
        cursor -= size
        var p = cursor
        var v = value
        while v >= 0x80 {
            p.pointee = UInt8(truncatingIfNeeded: v) | 0x80
            v >>= 7
            p += 1
        }
        p.pointee = UInt8(truncatingIfNeeded: v)
    }

    /// `int32` and `enum` values: negative ones are sign-extended to 64 bits, ten
    /// bytes on the wire (https://protobuf.dev/programming-guides/encoding/#signed-ints).
    @inline(__always)
    mutating func int32Varint(_ value: Int32) {
        varint(UInt64(bitPattern: Int64(value)))
    }

    @inline(__always)
    mutating func fixed64(_ value: UInt64) {
        cursor -= 8
        UnsafeMutableRawPointer(cursor).storeBytes(of: value.littleEndian, as: UInt64.self)
    }

    @inline(__always)
    mutating func fixed32(_ value: UInt32) {
        cursor -= 4
        UnsafeMutableRawPointer(cursor).storeBytes(of: value.littleEndian, as: UInt32.self)
    }

    /// The length prefix and tag of a length-delimited field whose content is the
    /// `count - mark` bytes written since `mark` was taken.
    @inline(__always)
    mutating func closeLengthDelimited(since mark: Int, tag: UInt8) {
        reserve(Self.headerRoom)
        varint(UInt64(count - mark))
        byte(tag)
    }

    /// A `bytes` (or string-as-bytes) field, written even when empty.
    @inline(__always)
    mutating func bytesField(_ tag: UInt8, _ data: ProtobufCBinaryData) throws(ProtobufWriteUnsupported) {
        let length = data.len
        reserve(length + Self.headerRoom)
        if length > 0 {
            guard let source = data.data else { throw ProtobufWriteUnsupported() }
            cursor -= length
            copy(UnsafeRawPointer(source), to: UnsafeMutableRawPointer(cursor), length)
        }
        varint(UInt64(length))
        byte(tag)
    }
}

/// Copies `count` (at least 1) bytes. Keys and values are mostly shorter than 16
/// bytes, where a call to memcpy costs more than the copy: two overlapping
/// unaligned loads and stores do it.
@inline(__always)
private func copy(_ source: UnsafeRawPointer, to target: UnsafeMutableRawPointer, _ count: Int) {
    if count >= 8 && count <= 16 {
        let head = source.loadUnaligned(as: UInt64.self)
        let tail = source.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
        target.storeBytes(of: head, as: UInt64.self)
        target.storeBytes(of: tail, toByteOffset: count - 8, as: UInt64.self)
    } else if count >= 4 && count < 8 {
        let head = source.loadUnaligned(as: UInt32.self)
        let tail = source.loadUnaligned(fromByteOffset: count - 4, as: UInt32.self)
        target.storeBytes(of: head, as: UInt32.self)
        target.storeBytes(of: tail, toByteOffset: count - 4, as: UInt32.self)
    } else if count < 4 {
        for i in 0..<count { target.storeBytes(of: source.load(fromByteOffset: i, as: UInt8.self), toByteOffset: i, as: UInt8.self) }
    } else {
        target.copyMemory(from: source, byteCount: count)
    }
}

/// The tree holds something a schema-specific writer does not write the way
/// protobuf-c would (unknown fields, an unknown oneof case, a missing element): the
/// caller packs the message with protobuf-c instead.
struct ProtobufWriteUnsupported: Error {}
