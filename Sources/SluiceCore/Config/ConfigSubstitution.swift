import Foundation

/// Expands the Collector's references inside configuration values:
/// `${env:VAR}`, `${VAR}`, `${env:VAR:-default}` and `${file:/path}` (for Kubernetes
/// secrets mounted as files; one trailing newline is dropped). `$$` is a literal `$`.
///
/// Expansion happens on values after YAML parsing, as in the Collector, so a
/// variable can never inject YAML structure.
/// (https://opentelemetry.io/docs/collector/configuration/#environment-variables)
public struct ConfigSubstitution: Sendable {
    public var environment: [String: String]
    public var readFile: @Sendable (String) -> String?

    public init(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        readFile: @escaping @Sendable (String) -> String? = { path in
            guard let data = FileManager.default.contents(atPath: path) else { return nil }
            return String(decoding: data, as: UTF8.self)
        }
    ) {
        self.environment = environment
        self.readFile = readFile
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case unterminated(String)
        case unknownScheme(String)
        case unreadableFile(String)

        public var description: String {
            switch self {
            case .unterminated(let text): "unterminated ${ in '\(text)'"
            case .unknownScheme(let scheme): "unknown reference scheme '\(scheme):' (use env: or file:)"
            case .unreadableFile(let path): "cannot read \(path) for ${file:…}; check the path and that the secret is mounted"
            }
        }
    }

    public func expand(_ text: String) throws(Failure) -> String {
        var unset: [String] = []
        return try expand(text, unset: &unset)
    }

    /// Also names the variables that were not set and had no default: they become
    /// empty, as in the Collector, which is rarely what was meant
    /// (`${env:MY_POD_IP}:4317` becomes `:4317`, every interface).
    public func expand(_ text: String, unset: inout [String]) throws(Failure) -> String {
        guard text.contains("$") else { return text }
        var out = ""
        var i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            guard c == "$" else { out.append(c); i = text.index(after: i); continue }
            let next = text.index(after: i)
            if next < text.endIndex, text[next] == "$" {
                out.append("$")
                i = text.index(after: next)
                continue
            }
            guard next < text.endIndex, text[next] == "{" else { out.append(c); i = next; continue }
            guard let close = text[next...].firstIndex(of: "}") else { throw .unterminated(text) }
            let reference = String(text[text.index(after: next)..<close])
            out += try resolve(reference, unset: &unset)
            i = text.index(after: close)
        }
        return out
    }

    private func resolve(_ reference: String, unset: inout [String]) throws(Failure) -> String {
        var scheme = "env"
        var body = reference
        // `${VAR:-default}` has no scheme; `${env:VAR}` and `${file:/p}` do.
        if let colon = reference.firstIndex(of: ":"), reference[reference.index(after: colon)...].first != "-" {
            scheme = String(reference[..<colon])
            body = String(reference[reference.index(after: colon)...])
        }
        switch scheme {
        case "env":
            var name = body
            var fallback: String?
            if let range = body.range(of: ":-") {
                name = String(body[..<range.lowerBound])
                fallback = String(body[range.upperBound...])
            }
            if let value = environment[name], !(value.isEmpty && fallback != nil) { return value }
            if fallback == nil { unset.append(name) }
            return fallback ?? ""
        case "file":
            guard var contents = readFile(body) else { throw .unreadableFile(body) }
            if contents.hasSuffix("\n") { contents.removeLast() }
            if contents.hasSuffix("\r") { contents.removeLast() }
            return contents
        default:
            throw .unknownScheme(scheme)
        }
    }
}
