/// Reads any JSON (RFC 8259) into `OTLPValue`s, for receivers of formats other than
/// OTLP: an object becomes a map, an array an array, a string a string, an integer
/// that fits 64 bits an int (exactly), any other number a double, `null` an empty
/// value.
///
/// The input is untrusted, so the reader is strict where RFC 8259 leaves room:
/// - nesting deeper than `maxDepth` objects and arrays is refused (the parser
///   recurses, and so does protobuf-c when the batch is packed later);
/// - more than `maxValues` values in one text is refused (memory per request stays
///   proportional to a number the operator chose, not to how small the values are);
/// - a name repeated in one object is refused: §4 says names SHOULD be unique and
///   that parsers disagree about repeated ones, and an audit trail must not hold a
///   value one reader sees and another does not;
/// - strings must be UTF-8 (§8.1) without raw control characters (§7); `\u0000`
///   escapes are allowed and kept;
/// - numbers a double cannot hold (`1e400`) or longer than 63 characters are
///   refused rather than rounded to infinity.
/// Every error carries the byte offset where the problem is.
public struct JSONValueReader: JSONScanner {
    let p: UnsafePointer<UInt8>
    let end: Int
    var i = 0
    var scratch: [UInt8] = []
    private let maxDepth: Int
    private let maxValues: Int
    private var values = 0
    /// Inside a top-level array while `nextObject` hands out its elements.
    private var inTopArray = false
    private var firstInTopArray = false

    public init(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int = 64, maxValues: Int = 1_000_000) {
        // An empty text still needs a valid pointer; one byte that is never read.
        p = bytes.baseAddress ?? UnsafePointer(bitPattern: 1)!
        end = bytes.count
        self.maxDepth = max(1, maxDepth)
        self.maxValues = max(1, maxValues)
        scratch.reserveCapacity(256)
    }

    /// Where the reader is: the offset of the next byte it will read.
    public var offset: Int { i }

    /// The whole text as one value (trailing whitespace allowed, nothing else).
    public mutating func document() throws(OTLPDecodeError) -> OTLPValue {
        skipWhitespace()
        let value = try parseValue(depth: 0)
        skipWhitespace()
        guard i == end else { throw syntax("unexpected data after the value: \(found())") }
        return value
    }

    /// The next object of a stream of them: the text may hold any number of
    /// objects, and of arrays of objects, separated by whitespace (one object, an
    /// array, NDJSON, or objects written one after another). Returns the object's
    /// members in order and the offset of its `{`; `nil` at the end of the text.
    public mutating func nextObject() throws(OTLPDecodeError) -> (members: [OTLPKeyValue], offset: Int)? {
        while true {
            skipWhitespace()
            if inTopArray {
                if peek() == UInt8(ascii: "]") {
                    i += 1
                    inTopArray = false
                    continue
                }
                if !firstInTopArray {
                    guard peek() == UInt8(ascii: ",") else { throw syntax("expected ',' or ']' after an object in the array, found \(found())") }
                    i += 1
                    skipWhitespace()
                }
                firstInTopArray = false
                // The array is the first level, the object the second.
                return try topObject(depth: 2, what: "an object (each element of the array is one)")
            }
            guard i < end else { return nil }
            if peek() == UInt8(ascii: "[") {
                guard maxDepth >= 2 else { throw tooDeep() }
                i += 1
                inTopArray = true
                firstInTopArray = true
                continue
            }
            return try topObject(depth: 1, what: "an object or an array of objects")
        }
    }

    private mutating func topObject(depth: Int, what: String) throws(OTLPDecodeError) -> (members: [OTLPKeyValue], offset: Int) {
        let start = i
        guard peek() == UInt8(ascii: "{") else { throw syntax("expected \(what), found \(found())") }
        try count()
        return (try parseObject(depth: depth), start)
    }

    /// The 1-based line that `offset` is on (for NDJSON errors).
    public func line(at offset: Int) -> Int {
        var line = 1
        for k in 0..<min(offset, end) where p[k] == UInt8(ascii: "\n") { line += 1 }
        return line
    }

    // MARK: Values

    private mutating func parseValue(depth: Int) throws(OTLPDecodeError) -> OTLPValue {
        try count()
        switch peek() {
        case UInt8(ascii: "{"):
            return .map(try parseObject(depth: depth + 1))
        case UInt8(ascii: "["):
            return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""):
            return .string(try parseText())
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            if literal("true") { return .bool(true) }
            if literal("false") { return .bool(false) }
            throw syntax("expected true or false, found \(found())")
        case UInt8(ascii: "n"):
            guard skipNull() else { throw syntax("expected null, found \(found())") }
            return .empty
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try parseNumber()
        default:
            throw syntax("expected a value (object, array, string, number, true, false or null), found \(found())")
        }
    }

    /// The members of the object at `i`, whose `{` is the `depth`-th level.
    private mutating func parseObject(depth: Int) throws(OTLPDecodeError) -> [OTLPKeyValue] {
        guard depth <= maxDepth else { throw tooDeep() }
        i += 1
        var members: [OTLPKeyValue] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "}") { i += 1; return members }
        // Objects with many members check repeated names through a set.
        var names: Set<[UInt8]>?
        while true {
            skipWhitespace()
            let keyOffset = i
            guard peek() == UInt8(ascii: "\"") else { throw syntax("expected a member name in quotes, found \(found())") }
            let key = try parseText()
            if isRepeated(key, in: members, names: &names) {
                throw OTLPDecodeError(.malformed, "invalid JSON: the name \"\(String(decoding: key, as: UTF8.self))\" appears twice in one object; "
                                      + "keep one (readers disagree about which one counts)", offset: keyOffset)
            }
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw syntax("expected ':' after a member name, found \(found())") }
            i += 1
            skipWhitespace()
            members.append(OTLPKeyValue(key: key, value: try parseValue(depth: depth)))
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): i += 1
            case UInt8(ascii: "}"): i += 1; return members
            default: throw syntax("expected ',' or '}' in an object, found \(found())")
            }
        }
    }

    private func isRepeated(_ key: [UInt8], in members: [OTLPKeyValue], names: inout Set<[UInt8]>?) -> Bool {
        if members.count < 16 { return members.contains { $0.key == key } }
        if names == nil { names = Set(members.map(\.key)) }
        return !names!.insert(key).inserted
    }

    private mutating func parseArray(depth: Int) throws(OTLPDecodeError) -> OTLPValue {
        guard depth <= maxDepth else { throw tooDeep() }
        i += 1
        var elements: [OTLPValue] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "]") { i += 1; return .array(elements) }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): i += 1
            case UInt8(ascii: "]"): i += 1; return .array(elements)
            default: throw syntax("expected ',' or ']' in an array, found \(found())")
            }
        }
    }

    /// A string's contents, which must be UTF-8.
    private mutating func parseText() throws(OTLPDecodeError) -> [UInt8] {
        let start = i
        let text = try parseStringBytes()
        let bad = text.withUnsafeBufferPointer { Self.firstInvalidUTF8($0) }
        if let bad {
            // Exact for strings without escapes, which is where raw bytes come from.
            throw OTLPDecodeError(.malformed, "invalid JSON: a string is not UTF-8 (byte 0x\(String(text[bad], radix: 16, uppercase: true)))",
                                  offset: start + 1 + bad)
        }
        return text
    }

    /// An int when the token is an integer that fits 64 bits, else a double.
    private mutating func parseNumber() throws(OTLPDecodeError) -> OTLPValue {
        let start = i
        let token = try numberText()
        guard Self.isJSONNumber(token) else { throw OTLPDecodeError(.malformed, "invalid JSON: bad number", offset: start) }
        let integral = !token.contains { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }
        if integral, token.count <= 20, let value = Self.exactInteger(token) { return .int(value) }
        guard token.count < 64 else {
            throw OTLPDecodeError(.malformed, "invalid JSON: a number of \(token.count) characters; send at most 63 (or a string)", offset: start)
        }
        guard let value = Self.double(token), value.isFinite else {
            throw OTLPDecodeError(.malformed, "invalid JSON: a number beyond what a double holds; send it as a string", offset: start)
        }
        return .double(value)
    }

    /// Digits with an optional minus, when they fit Int64 (no rounding through a double).
    private static func exactInteger(_ token: [UInt8]) -> Int64? {
        let negative = token.first == UInt8(ascii: "-")
        var magnitude: UInt64 = 0
        for c in token.dropFirst(negative ? 1 : 0) {
            let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(c &- UInt8(ascii: "0")))
            guard !o1, !o2 else { return nil }
            magnitude = a
        }
        if negative { return magnitude <= UInt64(Int64.max) + 1 ? Int64(truncatingIfNeeded: 0 &- magnitude) : nil }
        return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
    }

    /// The bytes hex digits stand for (either case), or `nil` when `text` is not hex.
    public static func hexBytes(_ text: [UInt8]) -> [UInt8]? { decodeHex(text) }

    /// The index of the first byte of `bytes` that is not part of well-formed UTF-8.
    static func firstInvalidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        var k = 0
        while k < bytes.count {
            if bytes[k] < 0x80 { k += 1; continue }
            let length = JSONOutput.validSequenceLength(bytes, at: k)
            if length == 0 { return k }
            k += length
        }
        return nil
    }

    // MARK: Errors

    private mutating func count() throws(OTLPDecodeError) {
        values += 1
        guard values <= maxValues else {
            throw OTLPDecodeError(.tooLarge, "more than \(maxValues) JSON values in one request; send fewer events per request", offset: i)
        }
    }

    /// What is at `i`, for an error message.
    private func found() -> String {
        guard i < end else { return "the end of the text" }
        let c = p[i]
        if c >= 0x21, c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
        return "byte 0x\(String(c, radix: 16, uppercase: true))"
    }

    private func tooDeep() -> OTLPDecodeError {
        OTLPDecodeError(.tooDeep, "JSON nests deeper than \(maxDepth) levels of objects and arrays; flatten the event", offset: i)
    }
}
