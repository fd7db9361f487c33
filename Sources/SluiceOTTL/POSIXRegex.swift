#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A regular expression for `IsMatch`, compiled once when the configuration is
/// read and matched against the arena's bytes (`REG_STARTEND`: no String; the
/// bytes are copied to the stack with a NUL after them, see `matches`).
///
/// OTTL's patterns are Go's RE2 syntax; this is POSIX extended syntax (glibc's
/// regcomp). `translate` rewrites what the two spell differently (`\d`, `\w`,
/// `\s` in and out of brackets, `(?:…)`, a leading `(?i)`, lazy quantifiers,
/// which cannot change whether a pattern matches) and refuses what it cannot
/// rewrite faithfully (look-arounds, named groups, Unicode classes), so a pattern
/// never silently means something else. Bytes are matched, not characters: `.`
/// is one byte of a multi-byte character.
final class POSIXRegex: @unchecked Sendable {
    // @unchecked: compiled once, then only read; glibc's regexec may run on one
    // compiled pattern from several threads at once.
    let pattern: String
    private let compiled: UnsafeMutablePointer<regex_t>?

    /// `nil` compiled means the empty pattern, which matches everything.
    init(_ pattern: [UInt8]) throws(RegexError) {
        self.pattern = String(decoding: pattern, as: UTF8.self)
        let (ere, ignoreCase) = try Self.translate(pattern)
        guard !ere.isEmpty else { compiled = nil; return }
        let regex = UnsafeMutablePointer<regex_t>.allocate(capacity: 1)
        var flags = REG_EXTENDED | REG_NOSUB
        if ignoreCase { flags |= REG_ICASE }
        let status = (ere + [0]).withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { regcomp(regex, $0.baseAddress!, flags) }
        }
        guard status == 0 else {
            var message = [CChar](repeating: 0, count: 256)
            regerror(status, regex, &message, message.count)
            regex.deallocate()
            throw RegexError(message: "the regular expression does not compile: \(String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
        }
        compiled = regex
    }

    deinit {
        if let compiled {
            regfree(compiled)
            compiled.deallocate()
        }
    }

    /// Whether the pattern matches anywhere in `bytes` (Go's `MatchString`).
    func matches(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let compiled else { return true }
        var range = regmatch_t()
        range.rm_so = 0
        range.rm_eo = regoff_t(bytes.count)
        // REG_STARTEND bounds the match, but regexec's declared argument is a C
        // string, and AddressSanitizer's interceptor reads it up to its NUL: the
        // value is copied (on the stack when small) with a NUL after it.
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: bytes.count + 1) { text in
            if let base = bytes.baseAddress {
                UnsafeMutableRawPointer(text.baseAddress!).copyMemory(from: base, byteCount: bytes.count)
            }
            text[bytes.count] = 0
            return regexec(compiled, text.baseAddress!, 1, &range, REG_STARTEND) == 0
        }
    }

    func matches(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBufferPointer { matches($0) } }

    struct RegexError: Error { let message: String }

    /// RE2 → POSIX extended. Returns the pattern and whether it asked for `(?i)`.
    static func translate(_ p: [UInt8]) throws(RegexError) -> (pattern: [UInt8], ignoreCase: Bool) {
        var out: [UInt8] = []
        var i = 0
        var ignoreCase = false
        if p.starts(with: Array("(?i)".utf8)) { ignoreCase = true; i = 4 }
        func refuse(_ what: String) -> RegexError {
            RegexError(message: "\(what) is not supported by Sluice's regular expressions (POSIX extended, with \\d \\w \\s, (?:…), a leading (?i)); rewrite the pattern without it")
        }
        let special = Array("\\.[](){}*+?|^$".utf8)
        func ascii(_ c: UInt8) -> Character { Character(Unicode.Scalar(c)) }
        while i < p.count {
            let c = p[i]
            switch c {
            case UInt8(ascii: "\\"):
                guard i + 1 < p.count else { throw RegexError(message: "the pattern ends with a lone backslash") }
                let d = p[i + 1]
                switch d {
                case UInt8(ascii: "d"): out += Array("[0-9]".utf8)
                case UInt8(ascii: "D"): out += Array("[^0-9]".utf8)
                case UInt8(ascii: "s"): out += Array("[[:space:]]".utf8)
                case UInt8(ascii: "S"): out += Array("[^[:space:]]".utf8)
                case UInt8(ascii: "w"): out += Array("[[:alnum:]_]".utf8)
                case UInt8(ascii: "W"): out += Array("[^[:alnum:]_]".utf8)
                case UInt8(ascii: "b"), UInt8(ascii: "B"): out += [c, d]
                case UInt8(ascii: "A"): out.append(UInt8(ascii: "^"))
                case UInt8(ascii: "z"): out.append(UInt8(ascii: "$"))
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "v"): out.append(0x0B)
                default:
                    if special.contains(d) { out += [c, d] }
                    else if d < 0x80, !(ascii(d).isLetter || ascii(d).isNumber) { out.append(d) }
                    else { throw refuse("\\\(ascii(d))") }
                }
                i += 2
            case UInt8(ascii: "("):
                if i + 1 < p.count, p[i + 1] == UInt8(ascii: "?") {
                    guard i + 2 < p.count, p[i + 2] == UInt8(ascii: ":") else {
                        let group = String(decoding: p[i..<min(p.count, i + 3)], as: UTF8.self)
                        throw refuse(group == "(?i" ? "(?i) after the start of the pattern" : "the group \(group)…")
                    }
                    out.append(c)
                    i += 3
                } else {
                    out.append(c)
                    i += 1
                }
            case UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "?"), UInt8(ascii: "}"):
                out.append(c)
                i += 1
                // Lazy and greedy quantifiers match the same inputs; only the
                // matched span differs, which IsMatch does not look at.
                if i < p.count, p[i] == UInt8(ascii: "?") { i += 1 }
            case UInt8(ascii: "["):
                i = try translateBracket(p, from: i, into: &out)
            default:
                out.append(c)
                i += 1
            }
        }
        return (out, ignoreCase)
    }

    /// A bracket expression from `start` (its `[`); returns the index after its `]`.
    private static func translateBracket(_ p: [UInt8], from start: Int, into out: inout [UInt8]) throws(RegexError) -> Int {
        var i = start + 1
        out.append(UInt8(ascii: "["))
        if i < p.count, p[i] == UInt8(ascii: "^") { out.append(p[i]); i += 1 }
        let contentStart = out.count
        if i < p.count, p[i] == UInt8(ascii: "]") { out.append(p[i]); i += 1 }
        while i < p.count {
            let c = p[i]
            if c == UInt8(ascii: "]") {
                out.append(c)
                return i + 1
            }
            if c == UInt8(ascii: "["), i + 1 < p.count, p[i + 1] == UInt8(ascii: ":") {
                // A POSIX class ([:alpha:]) means the same in both.
                guard let close = p[(i + 2)...].firstIndex(of: UInt8(ascii: "]")) else { break }
                out += p[i...close]
                i = close + 1
                continue
            }
            guard c == UInt8(ascii: "\\") else { out.append(c); i += 1; continue }
            guard i + 1 < p.count else { break }
            let d = p[i + 1]
            switch d {
            case UInt8(ascii: "d"): out += Array("0-9".utf8)
            case UInt8(ascii: "w"): out += Array("[:alnum:]_".utf8)
            case UInt8(ascii: "s"): out += Array("[:space:]".utf8)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "]"):
                guard out.count == contentStart else {
                    throw RegexError(message: "\\] inside brackets is not supported by Sluice's regular expressions; put ] first in the brackets, as in []abc]")
                }
                out.append(d)
            case UInt8(ascii: "-"):
                guard out.count == contentStart || (i + 2 < p.count && p[i + 2] == UInt8(ascii: "]")) else {
                    throw RegexError(message: "\\- inside brackets is not supported by Sluice's regular expressions; put - first or last in the brackets")
                }
                out.append(d)
            case UInt8(ascii: "^"):
                guard out.count != contentStart else {
                    throw RegexError(message: "\\^ first inside brackets is not supported by Sluice's regular expressions; put ^ after another character")
                }
                out.append(d)
            default:
                guard d < 0x80, !(Character(Unicode.Scalar(d)).isLetter || Character(Unicode.Scalar(d)).isNumber) else {
                    throw RegexError(message: "\\\(Character(Unicode.Scalar(d))) inside brackets is not supported by Sluice's regular expressions; rewrite the pattern without it")
                }
                // `\\` and escaped punctuation are literal; in POSIX brackets a
                // backslash is itself literal, so only the character is written.
                out.append(d)
            }
            i += 2
        }
        throw RegexError(message: "a [ in the pattern has no closing ]")
    }
}
