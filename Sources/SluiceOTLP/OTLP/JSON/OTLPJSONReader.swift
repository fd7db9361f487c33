#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import COTLP

/// Parses OTLP/JSON straight into protobuf-c's structs in a batch's arena, so a
/// JSON request and a protobuf request look the same to everything downstream.
///
/// What it accepts (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding
/// and proto3's JSON mapping): lowerCamelCase keys and the original snake_case
/// ones; trace and span ids as hex (base64 too, as some exporters write it); 64-bit
/// integers as strings or numbers; enums as integers or names; `bytes` as base64;
/// `null` as "not set"; unknown keys are skipped. Objects and arrays may nest at
/// most `maxDepth` deep, which keeps this parser's recursion (and protobuf-c's, when
/// the batch is packed later) bounded.
struct OTLPJSONReader: JSONScanner {
    let p: UnsafePointer<UInt8>
    let end: Int
    var i = 0
    var scratch: [UInt8] = []
    private let arena: OTLPArena
    private let maxDepth: Int

    init(_ bytes: UnsafeBufferPointer<UInt8>, arena: OTLPArena, maxDepth: Int) {
        // An empty body still needs a valid pointer; one byte that is never read.
        p = bytes.baseAddress ?? UnsafePointer(bitPattern: 1)!
        end = bytes.count
        self.arena = arena
        self.maxDepth = maxDepth
        scratch.reserveCapacity(256)
    }

    mutating func parseDocument(_ schema: MessageSchema) throws(OTLPDecodeError) -> UnsafeMutableRawPointer {
        let message = try newMessage(schema)
        skipWhitespace()
        try parseObject(into: message, schema, depth: 1)
        skipWhitespace()
        guard i == end else { throw syntax("unexpected data after the top-level object") }
        return message
    }

    // MARK: Structure

    private mutating func parseObject(into message: UnsafeMutableRawPointer, _ schema: MessageSchema, depth: Int) throws(OTLPDecodeError) {
        guard depth <= maxDepth else { throw tooDeep() }
        guard peek() == UInt8(ascii: "{") else { throw syntax("expected an object for \(schema.name)") }
        i += 1
        skipWhitespace()
        if peek() == UInt8(ascii: "}") { i += 1; return }
        while true {
            skipWhitespace()
            let keyOffset = i
            let field = try parseKey(schema)
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw syntax("expected ':' after a key") }
            i += 1
            skipWhitespace()
            if let field, !skipNull() {
                do {
                    try parseField(field, into: message, depth: depth)
                } catch let error where error.kind == .malformed && error.message.hasPrefix("field ") == false {
                    throw OTLPDecodeError(.malformed, "field \(schema.name).\(String(decoding: field.jsonName, as: UTF8.self)): \(error.message)", offset: error.offset ?? keyOffset)
                }
            } else if field == nil {
                try skipValue(depth: depth)
            }
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): i += 1
            case UInt8(ascii: "}"): i += 1; return
            default: throw syntax("expected ',' or '}' in an object")
            }
        }
    }

    private mutating func parseKey(_ schema: MessageSchema) throws(OTLPDecodeError) -> FieldSchema? {
        let key = try parseStringBytes()
        return key.withUnsafeBufferPointer { key in
            for field in schema.fields where Self.equal(key, field.jsonName) || Self.equal(key, field.protoName) {
                return field
            }
            return nil
        }
    }

    private static func equal(_ a: UnsafeBufferPointer<UInt8>, _ b: [UInt8]) -> Bool {
        a.count == b.count && b.withUnsafeBufferPointer { memcmp(a.baseAddress!, $0.baseAddress!, a.count) == 0 }
    }

    private mutating func parseField(_ field: FieldSchema, into message: UnsafeMutableRawPointer, depth: Int) throws(OTLPDecodeError) {
        if field.isRepeated {
            try parseRepeated(field, into: message, depth: depth)
            return
        }
        try parseValue(field, into: message + field.offset, depth: depth)
        if field.isOneofMember {
            message.storeBytes(of: field.number, toByteOffset: field.quantifierOffset, as: UInt32.self)
        } else if field.hasPresenceFlag {
            message.storeBytes(of: 1, toByteOffset: field.quantifierOffset, as: Int32.self)
        }
    }

    /// Arrays do not count as a level: depth counts messages, exactly as the
    /// protobuf nesting check does, so a batch written as JSON always reads back.
    private mutating func parseRepeated(_ field: FieldSchema, into message: UnsafeMutableRawPointer, depth: Int) throws(OTLPDecodeError) {
        guard peek() == UInt8(ascii: "[") else { throw syntax("expected an array") }
        i += 1
        let size = field.type.storageSize
        var elements: [UInt8] = []
        var count = 0
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            i += 1
        } else {
            var element = (UInt64(0), UInt64(0))
            while true {
                skipWhitespace()
                element = (0, 0)
                // Each element is parsed into a 16-byte slot (the largest element,
                // ProtobufCBinaryData, fits), then appended to the flat array.
                try withUnsafeMutableBytes(of: &element) { (slot) throws(OTLPDecodeError) in
                    try parseValue(field, into: slot.baseAddress!, depth: depth)
                    elements.append(contentsOf: UnsafeRawBufferPointer(rebasing: slot[0..<size]))
                }
                count += 1
                skipWhitespace()
                switch peek() {
                case UInt8(ascii: ","): i += 1
                case UInt8(ascii: "]"): i += 1
                default: throw syntax("expected ',' or ']' in an array")
                }
                if p[i - 1] == UInt8(ascii: "]") { break }
            }
        }
        let previous = message.load(fromByteOffset: field.quantifierOffset, as: Int.self)
        guard count > 0 || previous == 0 else { return }
        guard let array = arena.allocate(max(count * size, 1)) else { throw outOfMemory() }
        elements.withUnsafeBytes { if count > 0 { array.copyMemory(from: $0.baseAddress!, byteCount: count * size) } }
        message.storeBytes(of: count, toByteOffset: field.quantifierOffset, as: Int.self)
        message.storeBytes(of: count > 0 ? array : nil, toByteOffset: field.offset, as: UnsafeMutableRawPointer?.self)
    }

    /// One value of `field`'s type, stored at `dest` as protobuf-c lays it out.
    private mutating func parseValue(_ field: FieldSchema, into dest: UnsafeMutableRawPointer, depth: Int) throws(OTLPDecodeError) {
        switch field.type {
        case .int32, .sint32, .sfixed32:
            let v = try parseInteger(min: Int64(Int32.min), max: Int64(Int32.max))
            dest.storeBytes(of: Int32(v), as: Int32.self)
        case .uint32, .fixed32:
            let v = try parseUnsigned(max: UInt64(UInt32.max))
            dest.storeBytes(of: UInt32(v), as: UInt32.self)
        case .int64, .sint64, .sfixed64:
            dest.storeBytes(of: try parseInteger(min: Int64.min, max: Int64.max), as: Int64.self)
        case .uint64, .fixed64:
            dest.storeBytes(of: try parseUnsigned(max: UInt64.max), as: UInt64.self)
        case .double:
            dest.storeBytes(of: try parseDouble(), as: Double.self)
        case .float:
            dest.storeBytes(of: Float(try parseDouble()), as: Float.self)
        case .bool:
            dest.storeBytes(of: try parseBool() ? 1 : 0, as: Int32.self)
        case .enumeration:
            dest.storeBytes(of: try parseEnum(field), as: Int32.self)
        case .string:
            let text = try parseStringBytes()
            guard let copy = text.withUnsafeBufferPointer({ arena.copyBinary($0) }) else { throw outOfMemory() }
            dest.storeBytes(of: copy, as: ProtobufCBinaryData.self)
        case .bytes:
            let start = i
            let text = try parseStringBytes()
            guard let decoded = field.isHexID ? Self.decodeID(text, length: field.idLength) : Self.decodeBase64(text) else {
                throw OTLPDecodeError(.malformed, field.isHexID ? "expected \(field.idLength * 2) hex digits or an empty string" : "expected base64", offset: start)
            }
            guard let data = decoded.withUnsafeBufferPointer({ arena.copyBinary($0) }) else { throw outOfMemory() }
            dest.storeBytes(of: data, as: ProtobufCBinaryData.self)
        case .message:
            guard let schema = field.message else { throw syntax("unknown message type") }
            let child = try newMessage(schema)
            try parseObject(into: child, schema, depth: depth + 1)
            dest.storeBytes(of: child, as: UnsafeMutableRawPointer.self)
        }
    }

    // MARK: Scalars

    private mutating func parseInteger(min: Int64, max: Int64) throws(OTLPDecodeError) -> Int64 {
        let start = i
        let text = try numberText()
        guard let value = Self.integer(text), value >= min, value <= max else {
            throw OTLPDecodeError(.malformed, "expected an integer from \(min) to \(max)", offset: start)
        }
        return value
    }

    private mutating func parseUnsigned(max: UInt64) throws(OTLPDecodeError) -> UInt64 {
        let start = i
        let text = try numberText()
        if let value = Self.unsigned(text), value <= max { return value }
        throw OTLPDecodeError(.malformed, "expected an integer from 0 to \(max)", offset: start)
    }

    private mutating func parseDouble() throws(OTLPDecodeError) -> Double {
        let start = i
        let text = try numberText()
        switch text {
        case Array("NaN".utf8): return .nan
        case Array("Infinity".utf8): return .infinity
        case Array("-Infinity".utf8): return -.infinity
        default:
            guard let value = Self.double(text), value.isFinite else {
                throw OTLPDecodeError(.malformed, "expected a number a double can hold", offset: start)
            }
            return value
        }
    }

    private mutating func parseBool() throws(OTLPDecodeError) -> Bool {
        if literal("true") { return true }
        if literal("false") { return false }
        throw syntax("expected true or false")
    }

    private mutating func parseEnum(_ field: FieldSchema) throws(OTLPDecodeError) -> Int32 {
        let start = i
        if peek() == UInt8(ascii: "\""), let descriptor = field.enumDescriptor {
            var name = try parseStringBytes()
            name.append(0)
            let found = name.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { protobuf_c_enum_descriptor_get_value_by_name(descriptor, $0.baseAddress!) }
            }
            if let found { return found.pointee.value }
            if let number = Self.integer(Array(name.dropLast())), let value = Int32(exactly: number) { return value }
            throw OTLPDecodeError(.malformed, "unknown enum value", offset: start)
        }
        return Int32(try parseInteger(min: Int64(Int32.min), max: Int64(Int32.max)))
    }

    /// Ids are hex by the OTLP/JSON rules; some exporters wrote base64 (proto3's
    /// default for bytes), which is accepted when it yields a whole 8- or 16-byte id.
    static func decodeID(_ text: [UInt8], length: Int) -> [UInt8]? {
        if text.isEmpty { return [] }
        if text.count == length * 2, let hex = decodeHex(text) { return hex }
        guard let decoded = decodeBase64(text), decoded.count == length else { return nil }
        return decoded
    }

    /// Standard or URL-safe base64, padded or not; leftover bits must be zero.
    static func decodeBase64(_ text: [UInt8]) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(text.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        var padding = 0
        for c in text {
            if c == UInt8(ascii: "=") { padding += 1; continue }
            guard let v = Base64Digit.value(c) else { return nil }
            guard padding == 0 else { return nil }
            accumulator = accumulator << 6 | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        guard padding <= 2, bits < 6, accumulator & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return out
    }

    // MARK: Skipping

    private mutating func skipValue(depth: Int) throws(OTLPDecodeError) {
        switch peek() {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            guard depth + 1 <= maxDepth else { throw tooDeep() }
            let close = p[i] == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
            let isObject = close == UInt8(ascii: "}")
            i += 1
            skipWhitespace()
            if peek() == close { i += 1; return }
            while true {
                skipWhitespace()
                if isObject {
                    _ = try parseStringBytes()
                    skipWhitespace()
                    guard peek() == UInt8(ascii: ":") else { throw syntax("expected ':' after a key") }
                    i += 1
                    skipWhitespace()
                }
                try skipValue(depth: depth + 1)
                skipWhitespace()
                if peek() == UInt8(ascii: ",") { i += 1; continue }
                if peek() == close { i += 1; return }
                throw syntax(isObject ? "expected ',' or '}' in an object" : "expected ',' or ']' in an array")
            }
        case UInt8(ascii: "\""):
            _ = try parseStringBytes()
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            _ = try parseBool()
        case UInt8(ascii: "n"):
            guard skipNull() else { throw syntax("expected a value") }
        default:
            let start = i
            let text = try numberText()
            guard Self.double(text) != nil else { throw OTLPDecodeError(.malformed, "invalid JSON: bad number", offset: start) }
        }
    }

    private mutating func newMessage(_ schema: MessageSchema) throws(OTLPDecodeError) -> UnsafeMutableRawPointer {
        guard let message = arena.newMessage(schema.descriptor) else { throw outOfMemory() }
        return message
    }

    private func tooDeep() -> OTLPDecodeError {
        OTLPDecodeError(.tooDeep, "JSON nests deeper than \(maxDepth) levels; flatten the attribute values", offset: i)
    }

    private func outOfMemory() -> OTLPDecodeError {
        OTLPDecodeError(.outOfMemory, "the request needs more memory than its size allows", offset: i)
    }
}

extension OTLPBatch {
    /// Decodes an `Export*ServiceRequest` from OTLP/JSON into protobuf-c structs.
    public static func decode(
        json bytes: UnsafeRawBufferPointer,
        signal: OTLPSignal,
        limits: OTLPDecodeLimits = .default
    ) throws(OTLPDecodeError) -> OTLPBatch {
        try checkSize(bytes.count, limits)
        // JSON is wordier than protobuf: the structs take about three times its size.
        let arena = try makeArena(forInput: bytes.count, sizeFactor: 3, limits)
        var reader = OTLPJSONReader(bytes.assumingMemoryBound(to: UInt8.self), arena: arena, maxDepth: limits.maxNestingDepth)
        let message = try reader.parseDocument(OTLPSchemas.shared.request(signal))
        return OTLPBatch(signal: signal, arena: arena, message: message.assumingMemoryBound(to: ProtobufCMessage.self))
    }

    public static func decode(json bytes: [UInt8], signal: OTLPSignal, limits: OTLPDecodeLimits = .default) throws(OTLPDecodeError) -> OTLPBatch {
        do {
            return try bytes.withUnsafeBytes { buffer in try decode(json: buffer, signal: signal, limits: limits) }
        } catch let error as OTLPDecodeError {
            throw error
        } catch {
            throw OTLPDecodeError(.malformed, "\(error)")
        }
    }
}
