#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The lexical part of JSON (RFC 8259) that every JSON reader in Sluice shares:
// whitespace, literals, strings with their escapes, and number tokens. The
// schema-driven OTLP/JSON reader (OTLPJSONReader) and the generic one that turns
// any JSON into OTLP values (JSONValueReader) differ only in what they build.

/// A position in a JSON text held in memory. Conformers keep the four stored
/// properties; everything else comes from this protocol's extension.
protocol JSONScanner {
    /// The text; valid for the scanner's whole life.
    var p: UnsafePointer<UInt8> { get }
    /// Its length in bytes.
    var end: Int { get }
    /// The next byte to read.
    var i: Int { get set }
    /// Unescaped string contents, reused across strings.
    var scratch: [UInt8] { get set }
}

extension JSONScanner {
    /// The bytes of a number token, or of a quoted string holding one. A bare token
    /// must follow JSON's number grammar (RFC 8259 §6: no `01`, `.5`, `1.`, `+1`).
    mutating func numberText() throws(OTLPDecodeError) -> [UInt8] {
        if peek() == UInt8(ascii: "\"") { return try parseStringBytes() }
        let start = i
        while i < end, Self.isNumberByte(p[i]) { i += 1 }
        guard i > start else { throw syntax("expected a number") }
        let token = Array(UnsafeBufferPointer(start: p + start, count: i - start))
        guard Self.isJSONNumber(token) else { throw OTLPDecodeError(.malformed, "invalid JSON: bad number", offset: start) }
        return token
    }

    static func isJSONNumber(_ t: [UInt8]) -> Bool {
        var k = 0
        func digits() -> Int {
            let from = k
            while k < t.count, t[k] >= UInt8(ascii: "0"), t[k] <= UInt8(ascii: "9") { k += 1 }
            return k - from
        }
        if k < t.count, t[k] == UInt8(ascii: "-") { k += 1 }
        guard k < t.count else { return false }
        if t[k] == UInt8(ascii: "0") { k += 1 } else if digits() == 0 { return false }
        if k < t.count, t[k] == UInt8(ascii: ".") {
            k += 1
            guard digits() > 0 else { return false }
        }
        if k < t.count, t[k] == UInt8(ascii: "e") || t[k] == UInt8(ascii: "E") {
            k += 1
            if k < t.count, t[k] == UInt8(ascii: "+") || t[k] == UInt8(ascii: "-") { k += 1 }
            guard digits() > 0 else { return false }
        }
        return k == t.count
    }

    static func isNumberByte(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+")
            || c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E")
    }

    static func unsigned(_ text: [UInt8]) -> UInt64? {
        guard !text.isEmpty else { return nil }
        var value: UInt64 = 0
        for c in text {
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return integralDouble(text).flatMap { $0 >= 0 && $0 < 0x1p64 ? UInt64($0) : nil } }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(c - UInt8(ascii: "0")))
            guard !o1, !o2 else { return nil }
            value = a
        }
        return value
    }

    static func integer(_ text: [UInt8]) -> Int64? {
        guard let first = text.first else { return nil }
        let negative = first == UInt8(ascii: "-")
        let digits = negative ? Array(text.dropFirst()) : text
        guard let magnitude = unsigned(digits) else {
            return integralDouble(text).flatMap { $0 >= -0x1p63 && $0 < 0x1p63 ? Int64($0) : nil }
        }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
    }

    /// `1e3` or `5.0` for an integer field: proto3 JSON accepts exponent notation
    /// when the value is integral.
    static func integralDouble(_ text: [UInt8]) -> Double? {
        guard let d = double(text), d.isFinite, d == d.rounded(.towardZero) else { return nil }
        return d
    }

    static func double(_ text: [UInt8]) -> Double? {
        guard !text.isEmpty, text.count < 64, text.allSatisfy(isNumberByte) else { return nil }
        return text.withUnsafeBufferPointer { buffer -> Double? in
            withUnsafeTemporaryAllocation(of: CChar.self, capacity: buffer.count + 1) { c in
                for k in 0..<buffer.count { c[k] = CChar(bitPattern: buffer[k]) }
                c[buffer.count] = 0
                var endPointer: UnsafeMutablePointer<CChar>?
                let value = strtod(c.baseAddress!, &endPointer)
                return endPointer == c.baseAddress! + buffer.count ? value : nil
            }
        }
    }

    // MARK: Strings

    /// The contents of a JSON string with escapes resolved. Lone surrogates in
    /// `\u` escapes become U+FFFD.
    mutating func parseStringBytes() throws(OTLPDecodeError) -> [UInt8] {
        guard peek() == UInt8(ascii: "\"") else { throw syntax("expected a string") }
        let start = i
        i += 1
        let contentStart = i
        // Fast path: no escapes.
        while i < end {
            let c = p[i]
            if c == UInt8(ascii: "\"") {
                let result = Array(UnsafeBufferPointer(start: p + contentStart, count: i - contentStart))
                i += 1
                return result
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw syntax("control character inside a string; escape it as \\u00XX") }
            i += 1
        }
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(start: p + contentStart, count: i - contentStart))
        while i < end {
            let c = p[i]
            if c == UInt8(ascii: "\"") { i += 1; return scratch }
            if c < 0x20 { throw syntax("control character inside a string; escape it as \\u00XX") }
            if c != UInt8(ascii: "\\") { scratch.append(c); i += 1; continue }
            guard i + 1 < end else { break }
            let e = p[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "\""): scratch.append(0x22)
            case UInt8(ascii: "\\"): scratch.append(0x5C)
            case UInt8(ascii: "/"): scratch.append(0x2F)
            case UInt8(ascii: "b"): scratch.append(0x08)
            case UInt8(ascii: "f"): scratch.append(0x0C)
            case UInt8(ascii: "n"): scratch.append(0x0A)
            case UInt8(ascii: "r"): scratch.append(0x0D)
            case UInt8(ascii: "t"): scratch.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800, scalar <= 0xDBFF {
                    if i + 6 <= end, p[i] == UInt8(ascii: "\\"), p[i + 1] == UInt8(ascii: "u") {
                        let save = i
                        i += 2
                        let low = try hex4()
                        if low >= 0xDC00, low <= 0xDFFF {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            i = save
                            scalar = 0xFFFD
                        }
                    } else {
                        scalar = 0xFFFD
                    }
                } else if scalar >= 0xDC00, scalar <= 0xDFFF {
                    scalar = 0xFFFD
                }
                appendUTF8(scalar)
            default:
                throw OTLPDecodeError(.malformed, "invalid JSON: unknown escape '\\\(Character(Unicode.Scalar(e)))'", offset: i - 2)
            }
        }
        throw OTLPDecodeError(.malformed, "invalid JSON: unterminated string", offset: start)
    }

    mutating func hex4() throws(OTLPDecodeError) -> UInt32 {
        guard i + 4 <= end else { throw syntax("truncated \\u escape") }
        var value: UInt32 = 0
        for k in 0..<4 {
            guard let d = Self.hexValue(p[i + k]) else { throw syntax("invalid \\u escape") }
            value = value << 4 | UInt32(d)
        }
        i += 4
        return value
    }

    mutating func appendUTF8(_ scalar: UInt32) {
        switch scalar {
        case ..<0x80: scratch.append(UInt8(scalar))
        case ..<0x800:
            scratch.append(0xC0 | UInt8(scalar >> 6)); scratch.append(0x80 | UInt8(scalar & 0x3F))
        case ..<0x10000:
            scratch.append(0xE0 | UInt8(scalar >> 12)); scratch.append(0x80 | UInt8(scalar >> 6 & 0x3F))
            scratch.append(0x80 | UInt8(scalar & 0x3F))
        default:
            scratch.append(0xF0 | UInt8(scalar >> 18)); scratch.append(0x80 | UInt8(scalar >> 12 & 0x3F))
            scratch.append(0x80 | UInt8(scalar >> 6 & 0x3F)); scratch.append(0x80 | UInt8(scalar & 0x3F))
        }
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    static func decodeHex(_ text: [UInt8]) -> [UInt8]? {
        guard text.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(text.count / 2)
        var k = 0
        while k < text.count {
            guard let hi = hexValue(text[k]), let lo = hexValue(text[k + 1]) else { return nil }
            out.append(hi << 4 | lo)
            k += 2
        }
        return out
    }

    // MARK: Lexing

    @inline(__always) func peek() -> UInt8 { i < end ? p[i] : 0 }

    @inline(__always) mutating func skipWhitespace() {
        while i < end {
            let c = p[i]
            guard c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 else { return }
            i += 1
        }
    }

    mutating func literal(_ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard end - i >= n, memcmp(p + i, word.utf8Start, n) == 0 else { return false }
        i += n
        return true
    }

    mutating func skipNull() -> Bool { literal("null") }

    func syntax(_ what: String) -> OTLPDecodeError {
        OTLPDecodeError(.malformed, "invalid JSON: \(what)", offset: i)
    }

}
