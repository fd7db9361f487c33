/// A byte buffer that JSON is written into: the OTLP/JSON writer here, and every
/// exporter's payload encoder later.
///
/// Strings from the wire are not trusted to be UTF-8 (protobuf-c does not check):
/// `appendString` replaces every ill-formed sequence with U+FFFD, so what Sluice
/// writes is always valid JSON a SIEM will accept.
public struct JSONOutput: Sendable {
    public var bytes: [UInt8]

    public init(reservingCapacity capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    // The small appends are @inlinable: an encoder calls them a few dozen times per
    // record from other modules, where a call each would cost more than the append.
    @inlinable public var count: Int { bytes.count }

    @inlinable @inline(__always) public mutating func append(_ byte: UInt8) { bytes.append(byte) }

    @inlinable @inline(__always) public mutating func append(ascii: StaticString) {
        ascii.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    @inlinable public mutating func appendRaw(_ raw: some Sequence<UInt8>) { bytes.append(contentsOf: raw) }

    public mutating func appendNull() { append(ascii: "null") }

    public mutating func appendBool(_ value: Bool) { value ? append(ascii: "true") : append(ascii: "false") }

    public mutating func appendInt(_ value: Int64) {
        if value < 0 {
            bytes.append(UInt8(ascii: "-"))
            appendUInt(value.magnitude)
        } else {
            appendUInt(UInt64(value))
        }
    }

    public mutating func appendUInt(_ value: UInt64) {
        if value < 10 { bytes.append(UInt8(ascii: "0") + UInt8(value)); return }
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 20 digits max, written backwards
        withUnsafeMutableBytes(of: &digits) { scratch in
            let end = scratch.baseAddress!.assumingMemoryBound(to: UInt8.self) + scratch.count
            let count = Self.writeDecimal(value, endingAt: end)
            bytes.append(contentsOf: UnsafeBufferPointer(start: end - count, count: count))
        }
    }

    /// `value` in decimal, written backwards so that its last digit is just before
    /// `end` (room for 20 digits); how many digits it took.
    @inline(__always)
    public static func writeDecimal(_ value: UInt64, endingAt end: UnsafeMutablePointer<UInt8>) -> Int {
        var v = value
        var p = end
        repeat {
            p -= 1
            p.pointee = UInt8(ascii: "0") + UInt8(v % 10)
            v /= 10
        } while v > 0
        return end - p
    }

    /// A JSON number, or for the values JSON has no number for, the strings
    /// "NaN", "Infinity" and "-Infinity" as proto3 JSON writes them.
    public mutating func appendDouble(_ value: Double) {
        if value.isNaN { append(ascii: "\"NaN\""); return }
        if value.isInfinite { value < 0 ? append(ascii: "\"-Infinity\"") : append(ascii: "\"Infinity\""); return }
        if value == value.rounded(.towardZero), value.magnitude < 1e15, !(value == 0 && value.sign == .minus) {
            appendInt(Int64(value))
            return
        }
        bytes.append(contentsOf: value.description.utf8)
    }

    /// A quoted, escaped string; ill-formed UTF-8 becomes U+FFFD.
    public mutating func appendString(_ utf8: UnsafeBufferPointer<UInt8>) {
        bytes.append(UInt8(ascii: "\""))
        appendStringContents(utf8)
        bytes.append(UInt8(ascii: "\""))
    }

    public mutating func appendString(_ string: String) {
        var string = string
        string.withUTF8 { appendString($0) }
    }

    /// The escaped contents of a string without the quotes (for building keys).
    ///
    /// Most strings need no escaping and are ASCII: `nextSpecial` finds the next byte
    /// that needs a look eight bytes at a time, and each run between such bytes is
    /// copied at once.
    public mutating func appendStringContents(_ utf8: UnsafeBufferPointer<UInt8>) {
        guard let base = utf8.baseAddress else { return }
        let n = utf8.count
        var i = 0
        var runStart = 0
        while true {
            i = Self.nextSpecial(base, from: i, count: n)
            if i >= n { break }
            let c = base[i]
            if c < 0x80 {
                if i > runStart { bytes.append(contentsOf: UnsafeBufferPointer(start: base + runStart, count: i - runStart)) }
                appendEscape(c)
                i += 1
                runStart = i
                continue
            }
            let length = Self.validSequenceLength(utf8, at: i)
            if length == 0 {
                if i > runStart { bytes.append(contentsOf: UnsafeBufferPointer(start: base + runStart, count: i - runStart)) }
                bytes.append(contentsOf: [0xEF, 0xBF, 0xBD] as [UInt8])
                i += 1
                runStart = i
            } else {
                i += length
            }
        }
        if n > runStart { bytes.append(contentsOf: UnsafeBufferPointer(start: base + runStart, count: n - runStart)) }
    }

    /// The index of the first byte at or after `from` that is not printable ASCII
    /// other than `"` and `\` (a byte to escape, or the start of a UTF-8 sequence to
    /// check), or `count`. Eight bytes per step: a byte is flagged when its top bit is
    /// set, when it is below 0x20, or when it equals 0x22 or 0x5C (the zero-byte test
    /// on the word xor the pattern). A borrow can flag a byte above a flagged one,
    /// never below, so the lowest flag is exact.
    @inline(__always)
    public static func nextSpecial(_ p: UnsafePointer<UInt8>, from start: Int, count n: Int) -> Int {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        var i = start
        while i + 8 <= n {
            let w = UInt64(littleEndian: UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self))
            let control = (w &- 0x2020_2020_2020_2020) & ~w
            let q = w ^ 0x2222_2222_2222_2222, b = w ^ 0x5C5C_5C5C_5C5C_5C5C
            let flags = (w | control | ((q &- ones) & ~q) | ((b &- ones) & ~b)) & highs
            if flags != 0 { return i + flags.trailingZeroBitCount / 8 }
            i += 8
        }
        while i < n {
            let c = p[i]
            if c < 0x20 || c >= 0x80 || c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") { return i }
            i += 1
        }
        return n
    }

    private mutating func appendEscape(_ c: UInt8) {
        switch c {
        case UInt8(ascii: "\""): append(ascii: "\\\"")
        case UInt8(ascii: "\\"): append(ascii: "\\\\")
        case UInt8(ascii: "\n"): append(ascii: "\\n")
        case UInt8(ascii: "\r"): append(ascii: "\\r")
        case UInt8(ascii: "\t"): append(ascii: "\\t")
        case 0x08: append(ascii: "\\b")
        case 0x0C: append(ascii: "\\f")
        default:
            append(ascii: "\\u00")
            bytes.append(Self.hexDigits[Int(c >> 4)])
            bytes.append(Self.hexDigits[Int(c & 0xF)])
        }
    }

    /// The length of the well-formed UTF-8 sequence starting at `i` (a non-ASCII
    /// lead byte), or 0 when it is ill-formed. Table 3-7 of the Unicode Standard:
    /// no overlong forms, no surrogates, nothing above U+10FFFF.
    @inline(__always)
    static func validSequenceLength(_ s: UnsafeBufferPointer<UInt8>, at i: Int) -> Int {
        let n = s.count
        let b0 = s[i]
        @inline(__always) func cont(_ k: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> Bool {
            i + k < n && s[i + k] >= lo && s[i + k] <= hi
        }
        switch b0 {
        case 0xC2...0xDF: return cont(1) ? 2 : 0
        case 0xE0: return cont(1, 0xA0) && cont(2) ? 3 : 0
        case 0xE1...0xEC, 0xEE...0xEF: return cont(1) && cont(2) ? 3 : 0
        case 0xED: return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0
        case 0xF0: return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0
        case 0xF1...0xF3: return cont(1) && cont(2) && cont(3) ? 4 : 0
        case 0xF4: return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0
        default: return 0
        }
    }

    public static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
    private static let base64Alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Lowercase hex in quotes, as OTLP/JSON writes trace and span ids.
    public mutating func appendHexString(_ data: UnsafeBufferPointer<UInt8>) {
        bytes.append(UInt8(ascii: "\""))
        Self.appendHex(data, to: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    /// Lowercase hex of `data` after what `out` holds, without quotes. Ids and
    /// digests are 8 to 32 bytes: written into a stack buffer, then appended at once
    /// (an append per digit costs more than the digits).
    public static func appendHex(_ data: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        var scratch: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &scratch) { raw in
            let scratch = raw.bindMemory(to: UInt8.self)
            let digits = "0123456789abcdef" as StaticString
            var k = 0
            for b in data {
                if k + 2 > scratch.count {
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: scratch[0..<k]))
                    k = 0
                }
                scratch[k] = digits.utf8Start[Int(b >> 4)]
                scratch[k + 1] = digits.utf8Start[Int(b & 0xF)]
                k += 2
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: scratch[0..<k]))
        }
    }

    /// Standard padded base64 in quotes, as proto3 JSON writes `bytes`.
    public mutating func appendBase64String(_ data: UnsafeBufferPointer<UInt8>) {
        bytes.append(UInt8(ascii: "\""))
        let a = Self.base64Alphabet
        var i = 0
        while i + 3 <= data.count {
            let v = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2])
            bytes.append(a[Int(v >> 18 & 63)]); bytes.append(a[Int(v >> 12 & 63)])
            bytes.append(a[Int(v >> 6 & 63)]); bytes.append(a[Int(v & 63)])
            i += 3
        }
        let rest = data.count - i
        if rest == 1 {
            let v = UInt32(data[i]) << 16
            bytes.append(a[Int(v >> 18 & 63)]); bytes.append(a[Int(v >> 12 & 63)])
            append(ascii: "==")
        } else if rest == 2 {
            let v = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8
            bytes.append(a[Int(v >> 18 & 63)]); bytes.append(a[Int(v >> 12 & 63)]); bytes.append(a[Int(v >> 6 & 63)])
            bytes.append(UInt8(ascii: "="))
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
