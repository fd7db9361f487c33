/// Finds personal and secret data in text, for the `redaction` processor: one pass
/// over the bytes, hand-written scanners instead of regular expressions.
///
/// Each byte is looked at once by a `switch`; only a byte that can start (or, for
/// `@`, be the middle of) something sensitive runs a detector, and a detector gives
/// up at the first byte that cannot belong to what it looks for. Nothing here
/// allocates: a value without a match costs the pass and no memory.
///
/// Detectors look for the written forms that carry the data, and check what can be
/// checked (Luhn for cards, mod 97 for IBANs, the SSA's rules for SSNs, a JSON
/// header with "alg" for JWTs) so that ids, timestamps and version strings that
/// merely look alike are left alone. Tests/SluiceComponentsTests/Fixtures/redaction-corpus.txt
/// lists what is and is not matched.
public struct SensitiveDataScanner: Sendable {
    let enabled: SensitiveKind.Set

    /// Every detector (public for `make bench`, which times the scan alone).
    public init() { self.enabled = .all }

    init(enabled: SensitiveKind.Set) { self.enabled = enabled }

    /// Calls `found` for each match, in order, without overlaps.
    public func scan(_ text: UnsafeBufferPointer<UInt8>, _ found: (Range<Int>, SensitiveKind) -> Void) {
        guard !enabled.isEmpty, !text.isEmpty else { return }
        let n = text.count
        var i = 0
        // No match may start before the end of the previous one.
        var floor = 0
        while i < n {
            let b = text[i]
            let previous: UInt8 = i > 0 ? text[i - 1] : 0
            var match: (start: Int, end: Int, kind: SensitiveKind)?
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                if Bytes.isNumberBoundary(previous) { match = numberAt(text, i) }
            case UInt8(ascii: "@"):
                match = atSign(text, i, floor: floor)
            case UInt8(ascii: "+"):
                if enabled.contains(.phone), !Bytes.isAlphanumeric(previous), let end = Phone.international(text, i) { match = (i, end, .phone) }
            case UInt8(ascii: "("):
                if enabled.contains(.phone), !Bytes.isAlphanumeric(previous), let end = Phone.parenthesized(text, i) { match = (i, end, .phone) }
            case UInt8(ascii: "-"):
                if enabled.contains(.privateKey), let end = PrivateKeyBlock.match(text, i) { match = (i, end, .privateKey) }
            case UInt8(ascii: ":"):
                if enabled.contains(.ip), !Bytes.isAlphanumeric(previous), previous != UInt8(ascii: ":"), let end = IPAddress.v6(text, i) { match = (i, end, .ip) }
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"):
                if !Bytes.isTokenByte(previous) { match = wordAt(text, i) }
            default:
                break
            }
            if let match {
                found(match.start..<match.end, match.kind)
                i = match.end
                floor = match.end
            } else if Bytes.isAlphanumeric(b) {
                // Inside a word nothing starts (a match starts at a word's first
                // byte, or at `@`, `+`, `(`, `-`, `:`): skip the rest of the word in
                // a tight loop. Most bytes of prose are passed here.
                i += 1
                while i < n, Bytes.isAlphanumeric(text[i]) { i += 1 }
            } else {
                i += 1
            }
        }
    }

    /// A digit after a boundary: a card number, SSN, phone number or IP address.
    private func numberAt(_ text: UnsafeBufferPointer<UInt8>, _ i: Int) -> (Int, Int, SensitiveKind)? {
        if enabled.contains(.card), let end = CardNumber.match(text, i) { return (i, end, .card) }
        if enabled.contains(.ssn), let end = SocialSecurityNumber.match(text, i) { return (i, end, .ssn) }
        if enabled.contains(.ip), let end = IPAddress.v4(text, i) { return (i, end, .ip) }
        if enabled.contains(.phone), let end = Phone.national(text, i) { return (i, end, .phone) }
        if enabled.contains(.ip), Self.startsHexGroup(text, i), let end = IPAddress.v6(text, i) { return (i, end, .ip) }
        return nil
    }

    /// A letter at the start of a word: an API key, a bearer token, a JWT, an IBAN,
    /// or an IPv6 address that starts with a letter.
    private func wordAt(_ text: UnsafeBufferPointer<UInt8>, _ i: Int) -> (Int, Int, SensitiveKind)? {
        if enabled.contains(.apiKey), let (start, end) = SecretToken.match(text, i) { return (start, end, .apiKey) }
        if enabled.contains(.jwt), text[i] == UInt8(ascii: "e"), let end = JSONWebToken.match(text, i) { return (i, end, .jwt) }
        if enabled.contains(.iban), let end = IBAN.match(text, i) { return (i, end, .iban) }
        if enabled.contains(.ip), Self.startsHexGroup(text, i), let end = IPAddress.v6(text, i) { return (i, end, .ip) }
        return nil
    }

    /// One to four hex digits and a colon at `i`: the only way an IPv6 address
    /// starts with a letter. Most words fail at their first or second byte.
    @inline(__always)
    private static func startsHexGroup(_ text: UnsafeBufferPointer<UInt8>, _ i: Int) -> Bool {
        var k = i
        while k < text.count, k - i < 4, Bytes.isHexDigit(text[k]) { k += 1 }
        return k > i && k < text.count && text[k] == UInt8(ascii: ":")
    }

    /// `@`: the userinfo of a URL (`https://user:secret@host`), or an email address
    /// around it, starting no earlier than `floor`.
    private func atSign(_ text: UnsafeBufferPointer<UInt8>, _ at: Int, floor: Int) -> (Int, Int, SensitiveKind)? {
        if enabled.contains(.urlCredentials), let start = URLUserinfo.start(text, at, floor: floor) { return (start, at, .urlCredentials) }
        if enabled.contains(.email), let (start, end) = Email.match(text, at, floor: floor) { return (start, end, .email) }
        return nil
    }
}

/// What the scanner finds; the raw value is the name written in `detectors:`.
public enum SensitiveKind: String, CaseIterable, Sendable {
    case email
    case card
    case iban
    case ssn
    case phone
    case ip
    case apiKey = "api_key"
    case jwt
    case privateKey = "private_key"
    case urlCredentials = "url_credentials"

    /// A set of kinds as one word: the scanner checks it per candidate byte.
    public struct Set: Sendable, Equatable {
        var bits: UInt32

        static let all = Set(bits: (1 << UInt32(SensitiveKind.allCases.count)) - 1)
        static let none = Set(bits: 0)

        init(bits: UInt32) { self.bits = bits }
        init(_ kinds: some Sequence<SensitiveKind>) { bits = kinds.reduce(0) { $0 | $1.bit } }

        func contains(_ kind: SensitiveKind) -> Bool { bits & kind.bit != 0 }
        var isEmpty: Bool { bits == 0 }
    }

    /// The kind's position in `allCases`: its bit, and its slot in per-kind counts.
    var index: Int {
        switch self {
        case .email: 0
        case .card: 1
        case .iban: 2
        case .ssn: 3
        case .phone: 4
        case .ip: 5
        case .apiKey: 6
        case .jwt: 7
        case .privateKey: 8
        case .urlCredentials: 9
        }
    }

    var bit: UInt32 { 1 << UInt32(index) }
}

/// Byte classes the detectors share.
enum Bytes {
    @inline(__always) static func isDigit(_ b: UInt8) -> Bool { b &- UInt8(ascii: "0") < 10 }
    @inline(__always) static func isUpper(_ b: UInt8) -> Bool { b &- UInt8(ascii: "A") < 26 }
    @inline(__always) static func isLower(_ b: UInt8) -> Bool { b &- UInt8(ascii: "a") < 26 }
    @inline(__always) static func isLetter(_ b: UInt8) -> Bool { isUpper(b) || isLower(b) }
    @inline(__always) static func isAlphanumeric(_ b: UInt8) -> Bool { isDigit(b) || isLetter(b) }
    @inline(__always) static func isHexDigit(_ b: UInt8) -> Bool { isDigit(b) || (b | 0x20) &- UInt8(ascii: "a") < 6 }
    /// Letters, digits, `_` and `-`: what keys and tokens are made of.
    @inline(__always) static func isTokenByte(_ b: UInt8) -> Bool { isAlphanumeric(b) || b == UInt8(ascii: "_") || b == UInt8(ascii: "-") }
    /// Base64url's alphabet.
    @inline(__always) static func isBase64URL(_ b: UInt8) -> Bool { isTokenByte(b) }

    /// Whether a number may start after `b`: not inside a word, an id (`id-123`,
    /// `a_123`), a decimal or version (`1.123`) or after a sign.
    @inline(__always) static func isNumberBoundary(_ b: UInt8) -> Bool {
        !(isAlphanumeric(b) || b == UInt8(ascii: "_") || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b == UInt8(ascii: "+"))
    }

    /// Whether a number may end before position `i`: the text ends, or the next byte
    /// neither continues a word nor starts another number part (`.5`, `-7`).
    @inline(__always) static func endsNumber(_ text: UnsafeBufferPointer<UInt8>, _ i: Int) -> Bool {
        guard i < text.count else { return true }
        let b = text[i]
        if isAlphanumeric(b) || b == UInt8(ascii: "_") { return false }
        if b == UInt8(ascii: ".") || b == UInt8(ascii: "-") {
            return !(i + 1 < text.count && isDigit(text[i + 1]))
        }
        return true
    }

    /// Whether `text` has `prefix` at `i`; `caseInsensitive` compares ASCII letters
    /// without case.
    @inline(__always) static func has(_ text: UnsafeBufferPointer<UInt8>, _ prefix: StaticString, at i: Int, caseInsensitive: Bool = false) -> Bool {
        let count = prefix.utf8CodeUnitCount
        guard i + count <= text.count else { return false }
        let p = prefix.utf8Start
        for k in 0..<count {
            let a = text[i + k], b = p[k]
            if a == b { continue }
            if caseInsensitive, isLetter(a), a | 0x20 == b | 0x20 { continue }
            return false
        }
        return true
    }
}
