/// One problem in a configuration, with where it is and what to do about it:
/// `collector.yaml:14 exporters.splunk_hec.tokn: unknown key (did you mean token?)`.
public struct ConfigDiagnostic: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var path: String
    public var message: String
    /// The column (from 1) for a problem inside a value, such as a bad token in an
    /// OTTL condition: `collector.yaml:14:31`.
    public var column: Int? = nil

    public var description: String {
        let location = line.map { line in column.map { "\(file):\(line):\($0)" } ?? "\(file):\(line)" } ?? file
        return path.isEmpty ? "\(location): \(message)" : "\(location) \(path): \(message)"
    }
}

/// Collects every problem found while a configuration is read, so `sluice validate`
/// can print them all at once instead of stopping at the first.
public final class ConfigDiagnostics: @unchecked Sendable {
    // @unchecked: a configuration is read on one task; the lists are only read after.
    /// The problems, in the order of their lines in the file (those without a line first).
    public private(set) var all: [ConfigDiagnostic] = []
    /// What works but deserves a word: a deprecated name, a key without effect, a
    /// value read the Collector's way. Printed by `validate`, logged at start and on
    /// a reload; never a reason to refuse the file.
    public private(set) var warnings: [ConfigDiagnostic] = []
    public let file: String
    /// Set by `sluice validate`: it runs where the pod's mounted secrets (TLS
    /// certificates, token files) may not be, as the Collector's validate does not
    /// open them either. A missing file is then a warning; at start it is an error.
    public var filesMayBeAbsent = false
    /// The file's lines, to find where a character inside a value stands
    /// (`ConfigString.position`). Never printed: the file may hold tokens.
    var sourceLines: [Substring] = []

    public init(file: String) { self.file = file }

    /// Whether a problem was reported for `path` or anything under it (a component
    /// refused for its own mistakes needs no second message where it is used).
    public func reported(under path: String) -> Bool { all.contains { $0.path == path || $0.path.hasPrefix(path + ".") } }

    /// Whether a warning was given for `path` or anything under it.
    public func warned(under path: String) -> Bool { warnings.contains { $0.path == path || $0.path.hasPrefix(path + ".") } }

    public func report(line: Int?, column: Int? = nil, path: String, _ message: String) {
        Self.insert(ConfigDiagnostic(file: file, line: line, path: path, message: message, column: column), into: &all)
    }

    public func warn(line: Int?, path: String, _ message: String) {
        let warning = ConfigDiagnostic(file: file, line: line, path: path, message: message)
        if !warnings.contains(warning) { Self.insert(warning, into: &warnings) }
    }

    /// After the last one on the same line or before: sorted by line, in the order found within a line.
    private static func insert(_ diagnostic: ConfigDiagnostic, into list: inout [ConfigDiagnostic]) {
        let line = diagnostic.line ?? 0
        let at = list.lastIndex { ($0.line ?? 0) <= line }.map { $0 + 1 } ?? 0
        list.insert(diagnostic, at: at)
    }

    public var isEmpty: Bool { all.isEmpty }
}

/// A configuration that cannot be used, with every reason.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [ConfigDiagnostic]
    public init(_ diagnostics: [ConfigDiagnostic]) { self.diagnostics = diagnostics }
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// The closest known word to a misspelt one, for "did you mean …?".
public func closestMatch(to word: String, in candidates: some Sequence<String>) -> String? {
    var best: (String, Int)?
    for candidate in candidates {
        let distance = editDistance(word, candidate)
        if distance <= max(2, candidate.count / 3), distance < (best?.1 ?? .max) { best = (candidate, distance) }
    }
    return best?.0
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8), b = Array(b.utf8)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
