import SluiceOTLP

// Secrets: API keys with the prefixes their issuers give them, bearer tokens, JSON
// Web Tokens and PEM private key blocks.

/// API keys recognised by their issuer's prefix, and the token after `Bearer `.
///
/// | prefix | issuer | after the prefix |
/// |---|---|---|
/// | `sk-` (`sk-proj-`, `sk-ant-`, …) | OpenAI, Anthropic and others | 20+ of `A–Z a–z 0–9 _ -` |
/// | `sk_live_`, `sk_test_`, `rk_live_`, `rk_test_` | Stripe secret and restricted keys | 16+ letters and digits |
/// | `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` | GitHub tokens | 30+ letters and digits |
/// | `github_pat_` | GitHub fine-grained tokens | 22+ of `A–Z a–z 0–9 _` |
/// | `xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xoxe-` | Slack tokens | 10+ of `A–Z a–z 0–9 -` |
/// | `AKIA`, `ASIA` | AWS access key ids | exactly 16 of `A–Z 0–9` |
/// | `AIza` | Google API keys | exactly 35 of `A–Z a–z 0–9 _ -` |
///
/// `Bearer ` (any case) followed by a token of 8 or more characters of RFC 6750's
/// b64token, not all letters: the token is masked, the word `Bearer` kept.
enum SecretToken {
    static func match(_ text: UnsafeBufferPointer<UInt8>, _ i: Int) -> (Int, Int)? {
        switch text[i] {
        case UInt8(ascii: "s"):
            if Bytes.has(text, "sk_live_", at: i) || Bytes.has(text, "sk_test_", at: i) { return tail(text, i, 8, min: 16, alphabet: .alphanumeric) }
            if Bytes.has(text, "sk-", at: i) { return tail(text, i, 3, min: 20, alphabet: .token) }
        case UInt8(ascii: "r"):
            if Bytes.has(text, "rk_live_", at: i) || Bytes.has(text, "rk_test_", at: i) { return tail(text, i, 8, min: 16, alphabet: .alphanumeric) }
        case UInt8(ascii: "g"):
            if Bytes.has(text, "github_pat_", at: i) { return tail(text, i, 11, min: 22, alphabet: .word) }
            if i + 4 <= text.count, text[i + 1] == UInt8(ascii: "h"), text[i + 3] == UInt8(ascii: "_"),
               oneOf(text[i + 2], "pousr") {
                return tail(text, i, 4, min: 30, alphabet: .alphanumeric)
            }
        case UInt8(ascii: "x"):
            if Bytes.has(text, "xox", at: i), i + 4 < text.count, text[i + 4] == UInt8(ascii: "-"),
               oneOf(text[i + 3], "bparse") {
                return tail(text, i, 5, min: 10, alphabet: .alphanumericDash)
            }
        case UInt8(ascii: "A"):
            if Bytes.has(text, "AKIA", at: i) || Bytes.has(text, "ASIA", at: i) { return tail(text, i, 4, min: 16, max: 16, alphabet: .upperDigits) }
            if Bytes.has(text, "AIza", at: i) { return tail(text, i, 4, min: 35, max: 35, alphabet: .token) }
        case UInt8(ascii: "B"), UInt8(ascii: "b"):
            if Bytes.has(text, "bearer ", at: i, caseInsensitive: true) { return bearer(text, i + 7) }
        default:
            break
        }
        return nil
    }

    private static func oneOf(_ b: UInt8, _ letters: StaticString) -> Bool {
        for k in 0..<letters.utf8CodeUnitCount where letters.utf8Start[k] == b { return true }
        return false
    }

    enum Alphabet {
        case alphanumeric, alphanumericDash, token, word, upperDigits

        func contains(_ b: UInt8) -> Bool {
            switch self {
            case .alphanumeric: Bytes.isAlphanumeric(b)
            case .alphanumericDash: Bytes.isAlphanumeric(b) || b == UInt8(ascii: "-")
            case .token: Bytes.isTokenByte(b)
            case .word: Bytes.isAlphanumeric(b) || b == UInt8(ascii: "_")
            case .upperDigits: Bytes.isUpper(b) || Bytes.isDigit(b)
            }
        }
    }

    /// The prefix at `i` and the run of `alphabet` after it, when that run is long
    /// enough and ends the word.
    private static func tail(_ text: UnsafeBufferPointer<UInt8>, _ i: Int, _ prefix: Int, min: Int, max: Int = .max, alphabet: Alphabet) -> (Int, Int)? {
        var end = i + prefix
        while end < text.count, alphabet.contains(text[end]) {
            end += 1
            if end - i - prefix > max { return nil }
        }
        let length = end - i - prefix
        guard length >= min, end == text.count || !Bytes.isTokenByte(text[end]) else { return nil }
        return (i, end)
    }

    /// The b64token after `Bearer ` (RFC 6750 §2.1).
    private static func bearer(_ text: UnsafeBufferPointer<UInt8>, _ start: Int) -> (Int, Int)? {
        var begin = start
        while begin < text.count, text[begin] == UInt8(ascii: " ") { begin += 1 }
        var end = begin
        while end < text.count, isB64Token(text[end]) { end += 1 }
        while end < text.count, text[end] == UInt8(ascii: "=") { end += 1 }
        // Prose ("the bearer responsibility") has letters only; a token has more.
        guard end - begin >= 8, text[begin..<end].contains(where: { !Bytes.isLetter($0) }) else { return nil }
        return (begin, end)
    }

    private static func isB64Token(_ b: UInt8) -> Bool {
        Bytes.isTokenByte(b) || b == UInt8(ascii: ".") || b == UInt8(ascii: "~") || b == UInt8(ascii: "+") || b == UInt8(ascii: "/")
    }
}

/// JSON Web Tokens (RFC 7519) in compact form: three base64url parts separated by
/// dots (the third may be empty, for `alg: none`), the first decoding to a JSON
/// object with an `"alg"` member (RFC 7515 §4.1.1). The header is decoded into a
/// buffer on the stack.
enum JSONWebToken {
    static func match(_ text: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        // `{"` in base64url is `eyJ`: every JSON header starts so.
        guard Bytes.has(text, "eyJ", at: start) else { return nil }
        var i = start
        var firstDot = -1, secondDot = -1
        while i < text.count {
            let b = text[i]
            if b == UInt8(ascii: ".") {
                if firstDot < 0 { firstDot = i } else if secondDot < 0 { secondDot = i } else { break }
            } else if !Bytes.isBase64URL(b) {
                break
            }
            i += 1
        }
        guard firstDot > start, secondDot > firstDot + 1 else { return nil }
        // A token ends its word: `a.b.c.d` or `…=` is something else.
        if i < text.count, text[i] == UInt8(ascii: ".") || text[i] == UInt8(ascii: "=") { return nil }
        let headerLength = firstDot - start
        guard headerLength <= 2048 else { return nil }
        let hasAlg = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: headerLength) { buffer -> Bool in
            guard let decoded = decodeBase64URL(UnsafeBufferPointer(rebasing: text[start..<firstDot]), into: buffer) else { return false }
            return isJSONObjectWithAlg(UnsafeBufferPointer(rebasing: buffer[0..<decoded]))
        }
        return hasAlg ? i : nil
    }

    /// Decodes unpadded base64 into `out`; the decoded length, or nil.
    static func decodeBase64URL(_ input: UnsafeBufferPointer<UInt8>, into out: UnsafeMutableBufferPointer<UInt8>) -> Int? {
        var accumulator: UInt32 = 0
        var bits = 0
        var n = 0
        for b in input {
            // The scan let only base64url's characters into the header.
            guard let value = Base64Digit.value(b) else { return nil }
            accumulator = accumulator << 6 | value
            bits += 6
            if bits >= 8 {
                bits -= 8
                guard n < out.count else { return nil }
                out[n] = UInt8(truncatingIfNeeded: accumulator >> UInt32(bits))
                n += 1
            }
        }
        return n
    }

    /// `{ … "alg" … }`: an object whose text names an `alg` member.
    private static func isJSONObjectWithAlg(_ json: UnsafeBufferPointer<UInt8>) -> Bool {
        var first = 0
        while first < json.count, json[first] == UInt8(ascii: " ") || json[first] == UInt8(ascii: "\n") || json[first] == UInt8(ascii: "\r") || json[first] == UInt8(ascii: "\t") { first += 1 }
        guard first < json.count, json[first] == UInt8(ascii: "{"), json.last == UInt8(ascii: "}") || json.contains(UInt8(ascii: "}")) else { return false }
        var i = first
        while i + 5 <= json.count {
            if Bytes.has(json, "\"alg\"", at: i) { return true }
            i += 1
        }
        return false
    }
}

/// PEM private key blocks (RFC 7468): from `-----BEGIN … PRIVATE KEY-----` (RSA,
/// EC, DSA, OPENSSH, ENCRYPTED or plain PKCS #8) to the matching END line, or to the
/// end of the value when the block was cut off.
enum PrivateKeyBlock {
    static func match(_ text: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        guard Bytes.has(text, "-----BEGIN ", at: start) else { return nil }
        var i = start + 11
        let labelLimit = min(text.count, i + 40)
        while i < labelLimit, Bytes.isUpper(text[i]) || text[i] == UInt8(ascii: " ") {
            if Bytes.has(text, "PRIVATE KEY-----", at: i) { break }
            i += 1
        }
        guard Bytes.has(text, "PRIVATE KEY-----", at: i) else { return nil }
        i += 16
        while i < text.count {
            if text[i] == UInt8(ascii: "-"), Bytes.has(text, "-----END ", at: i) {
                var j = i + 9
                while j < text.count, j < i + 60, !Bytes.has(text, "PRIVATE KEY-----", at: j) { j += 1 }
                if Bytes.has(text, "PRIVATE KEY-----", at: j) { return j + 16 }
            }
            i += 1
        }
        return text.count
    }
}
