/// Walks protobuf wire format without decoding it, to refuse input protobuf-c
/// would choke on before protobuf-c sees it.
///
/// protobuf-c unpacks nested messages by recursion and has no depth limit, so a
/// client can overflow its stack with AnyValue → kvlist → AnyValue … nested a few
/// hundred thousand times. This walk follows only the fields the schema declares as
/// messages, skips everything else by length, and stops at `maxDepth`; its own
/// recursion is therefore bounded by that limit. It also reports where a payload
/// is malformed, which protobuf-c does not.
///
/// Wire format: https://protobuf.dev/programming-guides/encoding/
struct ProtobufNestingCheck {
    let maxDepth: Int

    func check(_ bytes: UnsafeRawBufferPointer, schema: MessageSchema) throws(OTLPDecodeError) {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        try walk(base, start: 0, end: bytes.count, schema: schema, depth: 1)
    }

    private func walk(_ p: UnsafePointer<UInt8>, start: Int, end: Int, schema: MessageSchema, depth: Int) throws(OTLPDecodeError) {
        var i = start
        while i < end {
            let tagStart = i
            let tag = try varint(p, &i, end)
            let number = tag >> 3
            guard number != 0 else {
                throw OTLPDecodeError(.malformed, "invalid protobuf: field number 0 in \(schema.name)", offset: tagStart)
            }
            switch tag & 7 {
            case 0:
                _ = try varint(p, &i, end)
            case 1:
                guard end - i >= 8 else { throw truncated(schema, tagStart) }
                i += 8
            case 5:
                guard end - i >= 4 else { throw truncated(schema, tagStart) }
                i += 4
            case 2:
                let length = try varint(p, &i, end)
                guard length <= UInt64(end - i) else { throw truncated(schema, tagStart) }
                let fieldEnd = i + Int(length)
                if let field = schema.field(number: number), field.type == .message, let child = field.message {
                    guard depth < maxDepth else {
                        throw OTLPDecodeError(
                            .tooDeep,
                            "messages nest deeper than \(maxDepth) levels (\(child.name) inside \(schema.name)); flatten the attribute values",
                            offset: tagStart)
                    }
                    // Every level of nesting costs at least two bytes (a tag and a
                    // length), so a child too short to reach the limit needs no walk;
                    // that skips most attributes. protobuf-c still checks its bytes.
                    if depth + 1 + Int(length) / 2 >= maxDepth {
                        try walk(p, start: i, end: fieldEnd, schema: child, depth: depth + 1)
                    }
                }
                i = fieldEnd
            default:
                throw OTLPDecodeError(.malformed, "invalid protobuf: wire type \(tag & 7) in \(schema.name)", offset: tagStart)
            }
        }
    }

    @inline(__always)
    private func varint(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ end: Int) throws(OTLPDecodeError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        let start = i
        while i < end {
            let byte = p[i]
            i += 1
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
            if shift >= 70 { break }
        }
        throw OTLPDecodeError(.malformed, "invalid protobuf: truncated or overlong varint", offset: start)
    }

    private func truncated(_ schema: MessageSchema, _ offset: Int) -> OTLPDecodeError {
        OTLPDecodeError(.malformed, "invalid protobuf: a field of \(schema.name) runs past the end of its message", offset: offset)
    }
}
