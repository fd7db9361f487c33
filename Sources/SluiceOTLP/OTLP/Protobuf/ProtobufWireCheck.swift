#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Walks protobuf wire format without decoding it, to refuse what protobuf-c must
/// not see before it sees it:
///
/// - Nesting deeper than the limit. protobuf-c unpacks nested messages by recursion
///   with no depth limit, so AnyValue → kvlist → AnyValue … nested a few hundred
///   thousand times overflows its stack. This walk stops at `maxDepth`, so its own
///   recursion is bounded by that limit.
/// - Field number 0. protobuf-c accepts it when the tag is written in more than one
///   byte, keeps it as an unknown field and packs it back as a one-byte tag, which it
///   then refuses: a batch that decoded once would not decode from the disk log.
/// - NUL inside strings. protobuf-c keeps strings as C strings, so everything after
///   a NUL would vanish without a word; an audit record is refused instead.
/// - Trace and span ids of the wrong length (the Collector refuses them too).
/// - Truncated varints, lengths past their message's end, group wire types (OTLP has
///   no groups). These come back with the byte offset, which protobuf-c cannot say.
///
/// Fields the schema declares as messages are walked; everything else is skipped by
/// its length. Wire format: https://protobuf.dev/programming-guides/encoding/
struct ProtobufWireCheck {
    let maxDepth: Int

    func check(_ bytes: UnsafeRawBufferPointer, schema: MessageSchema) throws(OTLPDecodeError) {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let table = OTLPSchemas.shared.wireTable!
        var failure: OTLPDecodeError?
        table.children.withUnsafeBufferPointer { children in
            var walker = Walker(p: base, children: children.baseAddress!, stride: table.stride, maxDepth: maxDepth)
            if !walker.walk(start: 0, end: bytes.count, row: schema.index, depth: 1) {
                failure = walker.error(names: table.names)
            }
        }
        if let failure { throw failure }
    }

    /// The walk itself reports failure as a plain Bool and records where, so the hot
    /// loop carries no error values; the message is built once, on the way out.
    private struct Walker {
        let p: UnsafePointer<UInt8>
        let children: UnsafePointer<Int16>
        let stride: Int
        let maxDepth: Int
        var problem: Problem = .truncated
        var problemOffset = 0
        var problemRow = 0
        var problemChildRow = 0

        enum Problem { case truncated, fieldZero, overlongVarint, wireType(UInt64), tooDeep, badID(UInt64, Int) }

        mutating func walk(start: Int, end: Int, row: Int, depth: Int) -> Bool {
            var i = start
            let rowBase = children + row * stride
            while i < end {
                let tagStart = i
                var tag = UInt64(p[i])
                i += 1
                if tag >= 0x80 {
                    guard let long = varint(tag, &i, end) else { return fail(.overlongVarint, tagStart, row) }
                    tag = long
                }
                guard tag >= 8 else { return fail(.fieldZero, tagStart, row) }
                switch tag & 7 {
                case 0:
                    guard i < end else { return fail(.truncated, tagStart, row) }
                    let first = UInt64(p[i])
                    i += 1
                    if first >= 0x80, varint(first, &i, end) == nil { return fail(.overlongVarint, tagStart, row) }
                case 1:
                    guard end - i >= 8 else { return fail(.truncated, tagStart, row) }
                    i += 8
                case 5:
                    guard end - i >= 4 else { return fail(.truncated, tagStart, row) }
                    i += 4
                case 2:
                    guard i < end else { return fail(.truncated, tagStart, row) }
                    var length = UInt64(p[i])
                    i += 1
                    if length >= 0x80 {
                        guard let long = varint(length, &i, end) else { return fail(.truncated, tagStart, row) }
                        length = long
                    }
                    guard length <= UInt64(end - i) else { return fail(.truncated, tagStart, row) }
                    let fieldEnd = i + Int(length)
                    let number = tag >> 3
                    if number < UInt64(stride) {
                        let child = Int(rowBase[Int(number)])
                        if child <= Int(OTLPSchemas.WireTable.traceIDField) {
                            let expected = child == Int(OTLPSchemas.WireTable.traceIDField) ? 16 : 8
                            if length != 0, length != UInt64(expected) { return fail(.badID(number, expected), tagStart, row) }
                        } else if child >= 0 {
                            guard depth < maxDepth else {
                                problemChildRow = child
                                return fail(.tooDeep, tagStart, row)
                            }
                            if length > 0, !walk(start: i, end: fieldEnd, row: child, depth: depth + 1) { return false }
                        }
                    }
                    i = fieldEnd
                default:
                    return fail(.wireType(tag & 7), tagStart, row)
                }
            }
            return true
        }

        /// The rest of a varint whose first byte (`first`, ≥ 0x80) was read already.
        @inline(__always)
        func varint(_ first: UInt64, _ i: inout Int, _ end: Int) -> UInt64? {
            var result = first & 0x7F
            var shift: UInt64 = 7
            while i < end {
                let byte = p[i]
                i += 1
                result |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return result }
                shift += 7
                if shift >= 70 { return nil }
            }
            return nil
        }

        mutating func fail(_ problem: Problem, _ offset: Int, _ row: Int) -> Bool {
            self.problem = problem
            problemOffset = offset
            problemRow = row
            return false
        }

        func error(names: [String]) -> OTLPDecodeError {
            let name = names[problemRow]
            switch problem {
            case .truncated:
                return OTLPDecodeError(.malformed, "invalid protobuf: a field of \(name) runs past the end of its message", offset: problemOffset)
            case .fieldZero:
                return OTLPDecodeError(.malformed, "invalid protobuf: field number 0 in \(name)", offset: problemOffset)
            case .overlongVarint:
                return OTLPDecodeError(.malformed, "invalid protobuf: truncated or overlong varint in \(name)", offset: problemOffset)
            case .wireType(let type):
                return OTLPDecodeError(.malformed, "invalid protobuf: wire type \(type) in \(name)", offset: problemOffset)
            case .badID(let number, let expected):
                return OTLPDecodeError(.malformed, "invalid OTLP: id field \(number) of \(name) must be empty or \(expected) bytes", offset: problemOffset)
            case .tooDeep:
                return OTLPDecodeError(
                    .tooDeep,
                    "messages nest deeper than \(maxDepth) levels (\(names[problemChildRow]) inside \(name)); flatten the attribute values",
                    offset: problemOffset)
            }
        }
    }
}
