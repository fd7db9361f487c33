import Foundation
import Yams

/// A YAML mapping in the configuration, read key by key by the component it
/// configures. Every accessor records the key as known; `finish()` then reports
/// every key nobody asked for as unknown, with the closest known key as a hint.
/// Accessors never throw: they report into `diagnostics` and return `nil`, so one
/// pass finds every problem.
public final class ConfigMap: @unchecked Sendable {
    // @unchecked: read on one task while the configuration is loaded.
    public let path: String
    public let line: Int?
    public let diagnostics: ConfigDiagnostics
    /// Each key with the line it is written on (where messages about it point).
    let entries: [(key: String, keyLine: Int?, value: Node)]
    private var known: Set<String> = []

    /// `line` is where the section's key is written; without it, where its content starts.
    init(path: String, node: Node?, line: Int? = nil, diagnostics: ConfigDiagnostics) {
        self.path = path
        self.diagnostics = diagnostics
        self.line = line ?? node?.mark?.line
        var entries: [(key: String, keyLine: Int?, value: Node)] = []
        switch node {
        case .mapping(let mapping):
            for (key, value) in mapping {
                entries.append((key.string ?? "", key.mark?.line ?? value.mark?.line, value))
            }
        case .none:
            break
        case .scalar(let scalar) where scalar.string.isEmpty || scalar.tag.description == Tag.Name.null.rawValue:
            break
        default:
            diagnostics.report(line: node?.mark?.line, path: path, "expected a mapping of keys to values")
        }
        self.entries = entries
    }

    /// An empty section (a component listed with no settings: `debug:`).
    public static func empty(path: String, diagnostics: ConfigDiagnostics) -> ConfigMap {
        ConfigMap(path: path, node: nil, diagnostics: diagnostics)
    }

    public var keys: [String] { entries.map(\.key) }
    public var isEmpty: Bool { entries.isEmpty }

    func node(_ key: String) -> Node? {
        known.insert(key)
        return entries.last { $0.key == key }?.value
    }

    public func has(_ key: String) -> Bool { entries.contains { $0.key == key } }

    func childPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public func report(_ key: String, _ message: String) {
        let line = entries.last { $0.key == key }?.keyLine ?? self.line
        diagnostics.report(line: line, path: childPath(key), message)
    }

    /// A warning about `key`, at its line (ConfigDiagnostics.warnings).
    public func warn(_ key: String, _ message: String) {
        let line = entries.last { $0.key == key }?.keyLine ?? self.line
        diagnostics.warn(line: line, path: childPath(key), message)
    }

    /// Takes the keys of `keys` this section sets, which the Collector defines but
    /// which change nothing in Sluice, with a warning for each that names the key and
    /// why (`validate` prints it, the log has it at start): a key is implemented or
    /// named, never silently accepted.
    public func keysWithoutEffect(_ keys: [(key: String, why: String)]) {
        for (key, why) in keys where has(key) {
            accept(key)
            warn(key, "has no effect in Sluice (\(why)); remove it to silence this warning")
        }
    }

    // MARK: Typed values

    public func string(_ key: String) -> String? {
        guard let node = node(key) else { return nil }
        guard case .scalar(let scalar) = node else {
            report(key, "expected a single value, not a \(node.kindName)")
            return nil
        }
        if scalar.tag.description == Tag.Name.null.rawValue || (scalar.string.isEmpty && scalar.style == .plain) { return nil }
        return scalar.string
    }

    public func string(_ key: String, default value: String) -> String { string(key) ?? value }

    public func bool(_ key: String) -> Bool? {
        guard let text = string(key) else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            report(key, "expected true or false, not '\(text)'")
            return nil
        }
    }

    public func int(_ key: String, min: Int = .min, max: Int = .max) -> Int? {
        guard let text = string(key) else { return nil }
        guard let value = Int(text.replacingOccurrences(of: "_", with: "")) else {
            report(key, "expected a whole number, not '\(text)'")
            return nil
        }
        guard value >= min, value <= max else {
            report(key, "\(value) is out of range (\(min)…\(max))")
            return nil
        }
        return value
    }

    public func double(_ key: String) -> Double? {
        guard let text = string(key) else { return nil }
        guard let value = Double(text.replacingOccurrences(of: "_", with: "")) else {
            report(key, "expected a number, not '\(text)'")
            return nil
        }
        return value
    }

    /// A Go-style duration as the Collector writes them: `200ms`, `5s`, `1h30m`.
    public func duration(_ key: String) -> Duration? {
        guard let text = string(key) else { return nil }
        // A bare number is nanoseconds to the Collector (Go's time.Duration): read it
        // the same way, and say so, since `timeout: 5` is rarely meant as 5ns.
        let digits = text.replacingOccurrences(of: "_", with: "")
        if !digits.isEmpty, digits.allSatisfy(\.isASCII), let nanoseconds = Int64(digits), nanoseconds >= 0 {
            let value = Duration.nanoseconds(nanoseconds)
            let units: [(Int64, String)] = [(3_600_000_000_000, "h"), (60_000_000_000, "m"), (1_000_000_000, "s"), (1_000_000, "ms"), (1000, "us")]
            let written = units.first { nanoseconds != 0 && nanoseconds % $0.0 == 0 }.map { "\(nanoseconds / $0.0)\($0.1)" } ?? "\(nanoseconds)ns"
            warn(key, "\(text) has no unit: read as \(written) (nanoseconds, as the Collector reads a bare number); write \(written) if that is meant, or the value with its unit")
            return value
        }
        guard let value = parseGoDuration(text) else {
            report(key, "expected a duration with a unit such as 200ms, 5s, 1m or 24h, not '\(text)'")
            return nil
        }
        return value
    }

    /// Permission bits in octal, as the Collector writes them (`"0750"`, `0600`).
    public func fileMode(_ key: String) -> mode_t? {
        guard let text = string(key) else { return nil }
        let digits = text.hasPrefix("0o") ? String(text.dropFirst(2)) : text
        guard let mode = mode_t(digits, radix: 8), mode & 0o777 == mode else {
            report(key, "expected octal permission bits, like \"0700\" or \"0600\", not '\(text)'")
            return nil
        }
        return mode
    }

    /// A size in bytes: a whole number, or with a unit (`512MiB`, `1GiB`, `100MB`).
    public func byteSize(_ key: String) -> Int? {
        guard let text = string(key)?.replacingOccurrences(of: " ", with: "").replacingOccurrences(of: "_", with: "") else { return nil }
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
                                      ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000), ("B", 1)]
        var number = Substring(text)
        var scale = 1
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            scale = factor
            break
        }
        guard let value = Int(number), value >= 0, value <= Int.max / scale else {
            report(key, "expected a size such as 1073741824, 512MiB or 1GiB, not '\(text)'")
            return nil
        }
        return value * scale
    }

    public func enumeration(_ key: String, _ allowed: [String]) -> String? {
        guard let text = string(key) else { return nil }
        guard allowed.contains(text) else {
            let hint = closestMatch(to: text, in: allowed).map { " (did you mean \($0)?)" } ?? ""
            report(key, "'\(text)' is not one of \(allowed.joined(separator: ", "))\(hint)")
            return nil
        }
        return text
    }

    public func stringList(_ key: String) -> [String]? { positionedStringList(key)?.map(\.text) }

    /// A mapping of strings to strings (`headers`).
    public func stringMap(_ key: String) -> [String: String]? {
        guard let child = map(key) else { return nil }
        var result: [String: String] = [:]
        for name in child.keys {
            if let value = child.string(name) { result[name] = value }
        }
        return result
    }

    /// A nested section; `nil` when the key is absent.
    public func map(_ key: String) -> ConfigMap? {
        guard let node = node(key) else { return nil }
        let keyLine = entries.last { $0.key == key }?.keyLine
        return ConfigMap(path: childPath(key), node: node, line: keyLine, diagnostics: diagnostics)
    }

    /// The raw list items of a key (for lists of sections).
    public func sections(_ key: String) -> [ConfigMap]? {
        guard let node = node(key) else { return nil }
        guard case .sequence(let sequence) = node else {
            report(key, "expected a list")
            return nil
        }
        return sequence.enumerated().map { ConfigMap(path: "\(childPath(key))[\($0.offset)]", node: $0.element, diagnostics: diagnostics) }
    }

    /// Reports every key that no accessor asked for.
    public func finish() {
        let allowed = known
        for entry in entries where !allowed.contains(entry.key) {
            let hint = closestMatch(to: entry.key, in: allowed.sorted()).map { " (did you mean \($0)?)" } ?? ""
            diagnostics.report(line: entry.keyLine ?? line, path: childPath(entry.key), "unknown key\(hint)")
        }
    }

    /// Marks keys as known without reading them (settings handled elsewhere).
    public func accept(_ keys: String...) { known.formUnion(keys) }
}

extension Node {
    var kindName: String {
        switch self {
        case .scalar: "value"
        case .mapping: "mapping"
        case .sequence: "list"
        case .alias: "alias"
        }
    }
}

/// Parses Go's `time.ParseDuration` syntax: a sequence of decimal numbers with
/// units ns, us (µs), ms, s, m, h, e.g. `1h30m`, `1.5s`, `200ms`; `0` alone is allowed.
public func parseGoDuration(_ text: String) -> Duration? {
    var s = Substring(text.trimmingCharacters(in: .whitespaces))
    var negative = false
    if s.first == "-" || s.first == "+" { negative = s.first == "-"; s = s.dropFirst() }
    if s == "0" { return .zero }
    guard !s.isEmpty else { return nil }
    var totalNanos: Double = 0
    while !s.isEmpty {
        let number = s.prefix { $0.isNumber || $0 == "." }
        guard !number.isEmpty, let value = Double(number) else { return nil }
        s = s.dropFirst(number.count)
        let unit = s.prefix { !($0.isNumber || $0 == ".") }
        s = s.dropFirst(unit.count)
        let scale: Double
        switch unit {
        case "ns": scale = 1
        case "us", "µs", "μs": scale = 1e3
        case "ms": scale = 1e6
        case "s": scale = 1e9
        case "m": scale = 60e9
        case "h": scale = 3600e9
        default: return nil
        }
        totalNanos += value * scale
    }
    guard totalNanos < 9.2e18 else { return nil }
    let nanos = Int64(totalNanos.rounded())
    return .nanoseconds(negative ? -nanos : nanos)
}
