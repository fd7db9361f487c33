import SluiceCore

/// A regular expression from the configuration (`pattern`, `blocked_values`, a
/// `regexp` match), compiled once when the configuration is read.
///
/// The Collector's patterns are Go RE2; Sluice compiles them as Swift Regex, which
/// reads the same syntax for what such patterns use: classes (`\d`, `[[:alpha:]]`),
/// `(?i)`, `(?P<name>…)` and `(?<name>…)` groups, non-greedy repeats. Matching is a
/// search anywhere in the text, as Go's `MatchString` is, unless the pattern anchors
/// itself with `^…$`.
struct ConfigPattern: @unchecked Sendable {
    // @unchecked: `Regex<AnyRegexOutput>` is not Sendable, but it is immutable once
    // compiled; `init` runs one match so the lazily built program exists before the
    // pattern is shared between event loops.
    let source: String
    let regex: Regex<AnyRegexOutput>

    init(_ source: String) throws {
        self.source = source
        regex = try Regex(source)
        _ = "".firstMatch(of: regex)
    }

    func matches(_ text: String) -> Bool { text.firstMatch(of: regex) != nil }

    func matches(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool { matches(String(decoding: bytes, as: UTF8.self)) }

    /// The names of the pattern's capture groups, in order; nil for a group without
    /// one. Read from the pattern's text: Swift Regex lists names only on a match.
    var groupNames: [String?] { Self.groupNames(in: source) }

    static func groupNames(in source: String) -> [String?] {
        var names: [String?] = []
        let bytes = Array(source.utf8)
        var i = 0
        var inClass = false
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\\") { i += 2; continue }
            if inClass { if b == UInt8(ascii: "]") { inClass = false }; i += 1; continue }
            if b == UInt8(ascii: "[") { inClass = true; i += 1; continue }
            guard b == UInt8(ascii: "(") else { i += 1; continue }
            let rest = bytes[(i + 1)...]
            if rest.starts(with: Array("?P<".utf8)) || (rest.starts(with: Array("?<".utf8)) && !rest.starts(with: Array("?<=".utf8)) && !rest.starts(with: Array("?<!".utf8))) {
                let start = i + 1 + (rest.starts(with: Array("?P<".utf8)) ? 3 : 2)
                var end = start
                while end < bytes.count, bytes[end] != UInt8(ascii: ">") { end += 1 }
                names.append(String(decoding: bytes[start..<min(end, bytes.count)], as: UTF8.self))
            } else if rest.first != UInt8(ascii: "?") {
                names.append(nil)
            }
            i += 1
        }
        return names
    }
}

extension ConfigMap {
    /// `key` as a regular expression; reports an error naming the key and the
    /// compiler's complaint when it does not compile.
    func pattern(_ key: String) -> ConfigPattern? {
        guard let text = string(key) else { return nil }
        return compile(text, key: key)
    }

    /// `key` as a list of regular expressions.
    func patterns(_ key: String) -> [ConfigPattern]? {
        guard let texts = stringList(key) else { return nil }
        var result: [ConfigPattern] = []
        for (i, text) in texts.enumerated() {
            if let pattern = compile(text, key: key, index: i) { result.append(pattern) }
        }
        return result
    }

    private func compile(_ text: String, key: String, index: Int? = nil) -> ConfigPattern? {
        do {
            return try ConfigPattern(text)
        } catch {
            let which = index.map { "item \($0) " } ?? ""
            report(key, "\(which)'\(text)' is not a valid regular expression (\(error)); Sluice reads RE2-style patterns as Swift Regex")
            return nil
        }
    }
}
