import Yams

/// A string value of the configuration that knows where each of its characters is
/// written in the file, so a problem inside it (a bad token in an OTTL condition)
/// is reported at its own line and column, whatever the YAML quoting or folding.
public struct ConfigString: Sendable {
    public let text: String
    /// Where the value is in the configuration: `processors.filter.logs.log_record[0]`.
    public let path: String
    /// The line of the value's first character (its opening quote, or the `|` of a block).
    public let line: Int?
    let column: Int?
    let style: Style
    let diagnostics: ConfigDiagnostics

    /// How the value is written in the file (YAML's scalar styles).
    enum Style: Sendable {
        case plain, singleQuoted, doubleQuoted, literal, folded

        init(_ style: Node.Scalar.Style) {
            switch style {
            case .singleQuoted: self = .singleQuoted
            case .doubleQuoted: self = .doubleQuoted
            case .literal: self = .literal
            case .folded: self = .folded
            default: self = .plain
            }
        }
    }

    /// Reports a problem at character `offset` (Unicode scalars from 0) of the value.
    public func report(at offset: Int, _ message: String) {
        let position = position(ofCharacter: offset)
        diagnostics.report(line: position?.line ?? line, column: position?.column, path: path, message)
    }

    /// Reports a problem about the value as a whole, at its line.
    public func report(_ message: String) { diagnostics.report(line: line, path: path, message) }

    /// Where character `n` of the value is written (line and column from 1).
    /// Follows YAML's rules for the value's style: quotes and escapes take room
    /// in the file but not in the value; a line break folds into one character.
    /// `nil` when the file's text is not at hand (a value from `--set`).
    func position(ofCharacter n: Int) -> (line: Int, column: Int)? {
        guard let line, let column, line >= 1, line <= diagnostics.sourceLines.count else { return nil }
        // The file from the value's first character on, each character with its position.
        var source: [(scalar: Unicode.Scalar, line: Int, column: Int)] = []
        for index in (line - 1)..<diagnostics.sourceLines.count {
            var col = 1
            for scalar in diagnostics.sourceLines[index].unicodeScalars {
                if index > line - 1 || col >= column { source.append((scalar, index + 1, col)) }
                col += 1
            }
            source.append(("\n", index + 1, col))
            if source.count > 1 << 16 { break }
        }
        switch style {
        case .literal, .folded: return blockPosition(n, source)
        default: return flowPosition(n, source)
        }
    }

    private func flowPosition(_ n: Int, _ source: [(scalar: Unicode.Scalar, line: Int, column: Int)]) -> (line: Int, column: Int)? {
        let quote: Unicode.Scalar? = style == .singleQuoted ? "'" : style == .doubleQuoted ? "\"" : nil
        var i = quote == nil ? 0 : 1
        var produced = 0
        while i < source.count {
            if produced == n { return (source[i].line, source[i].column) }
            let c = source[i].scalar
            if c == "\n" {
                // A line break and the next line's indentation fold into one character.
                i += 1
                while i < source.count, source[i].scalar == " " || source[i].scalar == "\t" { i += 1 }
                produced += 1
                continue
            }
            if let quote, c == quote {
                // '' is one quote in a single-quoted value; otherwise the closing quote.
                guard quote == "'", i + 1 < source.count, source[i + 1].scalar == "'" else { return (source[i].line, source[i].column) }
                i += 2
                produced += 1
                continue
            }
            if quote == "\"", c == "\\", i + 1 < source.count {
                switch source[i + 1].scalar {
                case "x": i += 4
                case "u": i += 6
                case "U": i += 10
                default: i += 2
                }
                produced += 1
                continue
            }
            i += 1
            produced += 1
        }
        return source.last.map { ($0.line, $0.column) }
    }

    private func blockPosition(_ n: Int, _ source: [(scalar: Unicode.Scalar, line: Int, column: Int)]) -> (line: Int, column: Int)? {
        // The content starts on the line after the indicator, indented as its first
        // non-empty line is.
        guard let first = source.firstIndex(where: { $0.scalar == "\n" }) else { return nil }
        var lines: [[(scalar: Unicode.Scalar, line: Int, column: Int)]] = [[]]
        for entry in source[(first + 1)...] {
            if entry.scalar == "\n" { lines.append([]) } else { lines[lines.count - 1].append(entry) }
        }
        guard let indent = lines.first(where: { $0.contains { $0.scalar != " " } })?.prefix(while: { $0.scalar == " " }).count else { return nil }
        var produced = 0
        for content in lines {
            let blank = content.allSatisfy { $0.scalar == " " }
            if !blank, content.prefix(while: { $0.scalar == " " }).count < indent { break }
            for entry in content.dropFirst(min(indent, content.count)) {
                if produced == n { return (entry.line, entry.column) }
                produced += 1
            }
            if produced == n, let last = content.last { return (last.line, last.column + 1) }
            produced += 1
        }
        return nil
    }
}

extension ConfigMap {
    /// A string value with its position, for values whose inside is checked.
    public func positionedString(_ key: String) -> ConfigString? {
        guard let node = node(key) else { return nil }
        guard case .scalar(let scalar) = node else {
            report(key, "expected a single value, not a \(node.kindName)")
            return nil
        }
        return ConfigString(text: scalar.string, path: childPath(key), line: scalar.mark?.line, column: scalar.mark?.column,
                            style: ConfigString.Style(scalar.style), diagnostics: diagnostics)
    }

    /// A list of string values with their positions (`log_record: [conditions…]`).
    public func positionedStringList(_ key: String) -> [ConfigString]? {
        guard let node = node(key) else { return nil }
        switch node {
        case .sequence(let sequence):
            var values: [ConfigString] = []
            for (i, item) in sequence.enumerated() {
                guard case .scalar(let scalar) = item else {
                    report(key, "expected a list of values; item \(i) is a \(item.kindName)")
                    return nil
                }
                values.append(ConfigString(text: scalar.string, path: "\(childPath(key))[\(i)]", line: scalar.mark?.line,
                                           column: scalar.mark?.column, style: ConfigString.Style(scalar.style), diagnostics: diagnostics))
            }
            return values
        case .scalar(let scalar) where scalar.string.isEmpty:
            return []
        default:
            report(key, "expected a list, like [a, b]")
            return nil
        }
    }
}
