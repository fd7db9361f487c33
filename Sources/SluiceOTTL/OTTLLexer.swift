/// The tokens of an OTTL condition, read from its UTF-8 bytes. Offsets are byte
/// offsets into the condition's text; `OTTLSyntaxError` turns them into columns.
struct OTTLToken: Equatable {
    enum Kind: Equatable {
        /// A name starting with a lowercase letter: a path segment, or `route`.
        case identifier
        /// A name starting with an uppercase letter: an enum or a converter.
        case upperIdentifier
        case string, int, float, bytes
        case leftParen, rightParen, leftBracket, rightBracket, comma, dot
        case comparison(OTTLComparison)
        case and, or, not, `where`, `true`, `false`, `nil`
        case end
    }

    var kind: Kind
    var start: Int
    var end: Int
}

/// The six comparison operators of OTTL's grammar.
public enum OTTLComparison: String, Sendable, Equatable {
    case equal = "==", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
}

/// Splits a condition into tokens. Keywords are the grammar's (`and`, `or`,
/// `not`, `where`, `true`, `false`, `nil`); string literals are double-quoted with
/// backslash escapes; numbers may carry a sign (`-1`, `+.5`); `0x…` is a byte
/// slice. https://github.com/open-telemetry/opentelemetry-collector-contrib/blob/main/pkg/ottl/LANGUAGE.md
struct OTTLLexer {
    let source: [UInt8]
    private(set) var position = 0

    init(_ text: String) { source = Array(text.utf8) }

    /// All tokens, ending with `.end`.
    mutating func tokens() throws(OTTLSyntaxError) -> [OTTLToken] {
        var out: [OTTLToken] = []
        while true {
            let token = try next()
            out.append(token)
            if token.kind == .end { return out }
        }
    }

    private func byte(at i: Int) -> UInt8? { i < source.count ? source[i] : nil }

    private mutating func next() throws(OTTLSyntaxError) -> OTTLToken {
        while let b = byte(at: position), b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { position += 1 }
        let start = position
        guard let b = byte(at: position) else { return OTTLToken(kind: .end, start: start, end: start) }
        func single(_ kind: OTTLToken.Kind) -> OTTLToken {
            position += 1
            return OTTLToken(kind: kind, start: start, end: position)
        }
        switch b {
        case UInt8(ascii: "("): return single(.leftParen)
        case UInt8(ascii: ")"): return single(.rightParen)
        case UInt8(ascii: "["): return single(.leftBracket)
        case UInt8(ascii: "]"): return single(.rightBracket)
        case UInt8(ascii: ","): return single(.comma)
        case UInt8(ascii: "="), UInt8(ascii: "!"), UInt8(ascii: "<"), UInt8(ascii: ">"):
            let twoChars = byte(at: position + 1) == UInt8(ascii: "=")
            position += twoChars ? 2 : 1
            let text = String(decoding: source[start..<position], as: UTF8.self)
            guard let op = OTTLComparison(rawValue: text) else {
                throw OTTLSyntaxError(offset: start, in: source, "'\(text)' is not an operator; compare with ==, !=, <, <=, > or >=")
            }
            return OTTLToken(kind: .comparison(op), start: start, end: position)
        case UInt8(ascii: "\""):
            return try string(from: start)
        case UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try number(from: start)
        case UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."):
            let afterSign = b == UInt8(ascii: ".") ? position : position + 1
            if let d = byte(at: afterSign), isDigit(d) || (d == UInt8(ascii: ".") && byte(at: afterSign + 1).map(isDigit) == true) {
                return try number(from: start)
            }
            if b == UInt8(ascii: ".") { return single(.dot) }
            throw OTTLSyntaxError(offset: start, in: source, "'\(Character(Unicode.Scalar(b)))' is not part of OTTL's conditions (no arithmetic in Sluice's subset)")
        default:
            if isLetter(b) || b == UInt8(ascii: "_") { return word(from: start) }
            throw OTTLSyntaxError(offset: start, in: source, "unexpected character \(OTTLSyntaxError.quote(source, start..<scalarEnd(start)))")
        }
    }

    private func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }
    private func isLetter(_ b: UInt8) -> Bool { (b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "z") }

    private func scalarEnd(_ start: Int) -> Int {
        var end = start + 1
        while end < source.count, source[end] & 0xC0 == 0x80 { end += 1 }
        return end
    }

    private mutating func word(from start: Int) -> OTTLToken {
        while let b = byte(at: position), isLetter(b) || isDigit(b) || b == UInt8(ascii: "_") { position += 1 }
        let kind: OTTLToken.Kind
        switch String(decoding: source[start..<position], as: UTF8.self) {
        case "and": kind = .and
        case "or": kind = .or
        case "not": kind = .not
        case "where": kind = .where
        case "true": kind = .true
        case "false": kind = .false
        case "nil": kind = .nil
        default: kind = source[start] >= UInt8(ascii: "A") && source[start] <= UInt8(ascii: "Z") ? .upperIdentifier : .identifier
        }
        return OTTLToken(kind: kind, start: start, end: position)
    }

    private mutating func number(from start: Int) throws(OTTLSyntaxError) -> OTTLToken {
        if source[position] == UInt8(ascii: "0"), byte(at: position + 1).map({ $0 | 0x20 }) == UInt8(ascii: "x") {
            position += 2
            let digits = position
            while let b = byte(at: position), isDigit(b) || ((b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "f")) { position += 1 }
            guard position > digits, (position - digits) % 2 == 0 else {
                throw OTTLSyntaxError(offset: start, in: source, "a byte slice is 0x followed by an even number of hex digits")
            }
            return OTTLToken(kind: .bytes, start: start, end: position)
        }
        if source[position] == UInt8(ascii: "-") || source[position] == UInt8(ascii: "+") { position += 1 }
        var isFloat = false
        while let b = byte(at: position), isDigit(b) || (b == UInt8(ascii: ".") && !isFloat) {
            if b == UInt8(ascii: ".") { isFloat = true }
            position += 1
        }
        if let b = byte(at: position), isLetter(b) || b == UInt8(ascii: "_") {
            throw OTTLSyntaxError(offset: start, in: source, "a number runs into a name here; put a space or an operator between them")
        }
        return OTTLToken(kind: isFloat ? .float : .int, start: start, end: position)
    }

    private mutating func string(from start: Int) throws(OTTLSyntaxError) -> OTTLToken {
        position += 1
        while let b = byte(at: position) {
            if b == UInt8(ascii: "\\") { position += 2; continue }
            position += 1
            if b == UInt8(ascii: "\"") { return OTTLToken(kind: .string, start: start, end: position) }
        }
        throw OTTLSyntaxError(offset: start, in: source, "the string opened here has no closing \"")
    }

    /// The value of a string token: the bytes between the quotes with `\"`, `\\`,
    /// `\n`, `\t` and `\r` unescaped. Any other backslash stays as written, so a
    /// regular expression keeps its `\d` or `\.`.
    static func unescape(_ token: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(token.count)
        var i = token.startIndex + 1
        let end = token.endIndex - 1
        while i < end {
            let b = token[i]
            if b == UInt8(ascii: "\\"), i + 1 < end {
                switch token[i + 1] {
                case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0D)
                default: out.append(b); out.append(token[i + 1])
                }
                i += 2
                continue
            }
            out.append(b)
            i += 1
        }
        return out
    }
}

/// A condition that does not parse, or names something Sluice does not know: where
/// (a byte offset into the condition, and the column counted in characters from 1)
/// and what was expected.
public struct OTTLSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Byte offset of the offending token in the condition's UTF-8 text.
    public let offset: Int
    /// Characters (Unicode scalars) before the offending token: the column within
    /// the condition, counted from 0.
    public let scalarOffset: Int
    public let message: String

    init(offset: Int, in source: [UInt8], _ message: String) {
        self.offset = offset
        scalarOffset = source.prefix(offset).reduce(0) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }
        self.message = message
    }

    public var description: String { "column \(scalarOffset + 1) of the condition: \(message)" }

    /// A token's text for a message, quoted and cut to 40 characters.
    static func quote(_ source: [UInt8], _ range: Range<Int>) -> String {
        let text = String(decoding: source[range], as: UTF8.self)
        return "'" + (text.count > 40 ? text.prefix(40) + "…" : text) + "'"
    }
}
