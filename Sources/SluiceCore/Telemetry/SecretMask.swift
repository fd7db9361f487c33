/// Hides the values of configured secrets (an HEC token, a credential in an
/// exporter's headers) in text that may echo them: what a destination answers
/// ends up in `/status`, the log and the dead-letter file.
///
/// A value is masked only where it stands whole — not inside a longer run of
/// letters, digits, `-` and `_` — and only when it has at least `minimumLength`
/// characters. Masking every occurrence of any value turned "Invalid token" into
/// "Invalid [REDACTED]en" for the token `tok` (issue 21): a message that cannot be
/// read hides the problem it reports. A value shorter than the minimum is not a
/// secret worth the name (it is guessed in a few thousand tries) and would match
/// ordinary words.
public struct SecretMask: Sendable {
    /// What stands in for a secret, everywhere Sluice hides one.
    public static let placeholder = "[REDACTED]"
    public static let minimumLength = 4

    /// Longest first, so that a secret containing another is masked whole.
    private let secrets: [String]

    public init(_ values: some Sequence<String>, minimumLength: Int = SecretMask.minimumLength) {
        secrets = Set(values.filter { $0.count >= minimumLength }).sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }
    }

    public var isEmpty: Bool { secrets.isEmpty }

    /// `text` with every whole occurrence of a secret replaced by `placeholder`.
    public func callAsFunction(_ text: String) -> String {
        var text = text
        for secret in secrets { text = Self.mask(secret, in: text) }
        return text
    }

    /// What a destination said, fit to be shown in the log, `/status` and the
    /// dead-letter file: secrets masked first (so that a cut cannot leave part of
    /// one readable), then on one line, then at most `limit` characters. Every
    /// exporter's error text goes through this (the exporter kit for answer bodies,
    /// `ExporterDelivery` for every reason), so none copies a destination verbatim.
    public func clean(_ text: String, limit: Int) -> String {
        let masked = callAsFunction(text)
        var out = ""
        var count = 0
        for character in masked {
            if count == limit {
                let rest = masked.count - limit
                return out + "… (\(rest) more characters)"
            }
            out.append(character.isNewline ? " " : character)
            count += 1
        }
        return out
    }

    /// The longest reason kept; an answer body quoted in one is shorter
    /// (`excerptLength`), so the reason around it stays readable.
    public static let reasonLength = 1024
    public static let excerptLength = 300

    private static func mask(_ secret: String, in text: String) -> String {
        guard text.contains(secret) else { return text }
        let chars = Array(text)
        let needle = Array(secret)
        // A boundary matters only on a side where the secret itself ends in a word
        // character: "abc==" followed by "x" is still the whole value.
        let checkBefore = isWordCharacter(needle[0]), checkAfter = isWordCharacter(needle[needle.count - 1])
        var out = ""
        var i = 0
        while i < chars.count {
            let end = i + needle.count
            if end <= chars.count, chars[i] == needle[0], chars[i..<end].elementsEqual(needle),
               !(checkBefore && i > 0 && isWordCharacter(chars[i - 1])),
               !(checkAfter && end < chars.count && isWordCharacter(chars[end])) {
                out += placeholder
                i = end
            } else {
                out.append(chars[i])
                i += 1
            }
        }
        return out
    }

    static func isWordCharacter(_ c: Character) -> Bool {
        c.isLetter || c.isNumber || c == "-" || c == "_"
    }

    // MARK: Which configured values are secrets

    static let secretWords = ["token", "password", "passwd", "secret", "authorization", "api_key", "apikey", "api-key", "credential", "private_key"]

    /// Whether a key (log metadata, a header name) names a secret, so its value is
    /// hidden whatever it is.
    public static func isSecretName(_ key: String) -> Bool {
        let lower = key.lowercased()
        return secretWords.contains { lower.contains($0) }
    }

    /// Header names carry credentials under more names than log metadata does
    /// (`X-Auth`, `DD-API-KEY`, `X-Insert-Key`, `Cookie`, a signature): a configured
    /// header with any of these words is masked too.
    static let credentialHeaderWords = ["key", "auth", "cookie", "session", "signature"]

    static func isCredentialHeader(_ name: String) -> Bool {
        let lower = name.lowercased()
        return isSecretName(name) || credentialHeaderWords.contains { lower.contains($0) }
    }

    /// The values to mask for a set of headers: each credential header's value, and its
    /// credential alone when it has a scheme (`Bearer abc…`), since a server that
    /// echoes a credential seldom echoes the scheme with it.
    public static func secrets(inHeaders headers: [String: String]) -> [String] {
        headers.filter { isCredentialHeader($0.key) }.values.flatMap { value -> [String] in
            let parts = value.split(separator: " ", maxSplits: 1)
            return parts.count == 2 ? [value, String(parts[1])] : [value]
        }
    }
}
