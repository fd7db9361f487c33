/// OTTL's boolean expressions as parsed, before paths are resolved against a
/// context. `not` binds tightest, then `and`, then `or`; parentheses group.
indirect enum OTTLExpression: Equatable {
    case or(OTTLExpression, OTTLExpression)
    case and(OTTLExpression, OTTLExpression)
    case not(OTTLExpression)
    case comparison(OTTLValueExpression, OTTLComparison, OTTLValueExpression)
    /// A value standing alone as a boolean: `true`, or a converter such as IsMatch.
    case value(OTTLValueExpression)
}

/// A Value of the grammar: literal, path, enum or converter call.
indirect enum OTTLValueExpression: Equatable {
    case string([UInt8])
    case int(Int64)
    case float(Double)
    case bool(Bool)
    case `nil`
    case bytes([UInt8])
    /// `resource.attributes["k"][0]`: dotted names, then keys. `offset` is where it starts.
    case path(names: [String], keys: [OTTLKey], offset: Int)
    case enumeration(String, offset: Int)
    case converter(String, arguments: [OTTLValueExpression], keys: [OTTLKey], offset: Int)

    var offset: Int? {
        switch self {
        case .path(_, _, let offset), .enumeration(_, let offset), .converter(_, _, _, let offset): offset
        default: nil
        }
    }
}

/// An index into a map (`["key"]`) or a list (`[0]`).
enum OTTLKey: Equatable {
    case string([UInt8])
    case index(Int)
}

/// A recursive-descent parser over the lexer's tokens, for conditions
/// (`attributes["action"] == "block" and not IsMatch(body, "^health")`) and for the
/// routing connector's statements (`route() where <condition>`).
struct OTTLParser {
    let source: [UInt8]
    let tokens: [OTTLToken]
    private var index = 0

    init(_ text: String) throws(OTTLSyntaxError) {
        var lexer = OTTLLexer(text)
        tokens = try lexer.tokens()
        source = lexer.source
    }

    private var current: OTTLToken { tokens[index] }

    private func text(_ token: OTTLToken) -> String { String(decoding: source[token.start..<token.end], as: UTF8.self) }

    /// What a message calls the token it stopped at.
    private func found(_ token: OTTLToken) -> String {
        token.kind == .end ? "the end of the condition" : OTTLSyntaxError.quote(source, token.start..<token.end)
    }

    private func error(_ expected: String, at token: OTTLToken? = nil) -> OTTLSyntaxError {
        let token = token ?? current
        return OTTLSyntaxError(offset: token.start, in: source, "expected \(expected), found \(found(token))")
    }

    private mutating func advance() -> OTTLToken {
        defer { if tokens[index].kind != .end { index += 1 } }
        return tokens[index]
    }

    private mutating func expect(_ kind: OTTLToken.Kind, _ what: String) throws(OTTLSyntaxError) -> OTTLToken {
        guard current.kind == kind else { throw error(what) }
        return advance()
    }

    // MARK: Entry points

    /// A whole condition.
    mutating func parseCondition() throws(OTTLSyntaxError) -> OTTLExpression {
        guard current.kind != .end else { throw error("a condition") }
        let expression = try parseOr()
        guard current.kind == .end else { throw error("and, or, or the end of the condition") }
        return expression
    }

    /// `editor() [where <condition>]`; returns the condition, `nil` for a statement
    /// that always applies. Only `editor` with no arguments is accepted.
    mutating func parseStatement(editor: String) throws(OTTLSyntaxError) -> OTTLExpression? {
        let name = current
        guard name.kind == .identifier, text(name) == editor else { throw error("\(editor)()") }
        _ = advance()
        _ = try expect(.leftParen, "( after \(editor)")
        _ = try expect(.rightParen, ") (\(editor) takes no arguments)")
        if current.kind == .end { return nil }
        _ = try expect(.where, "where or the end of the statement")
        return try parseCondition()
    }

    // MARK: Boolean expressions

    private mutating func parseOr() throws(OTTLSyntaxError) -> OTTLExpression {
        var left = try parseAnd()
        while current.kind == .or {
            _ = advance()
            left = .or(left, try parseAnd())
        }
        return left
    }

    private mutating func parseAnd() throws(OTTLSyntaxError) -> OTTLExpression {
        var left = try parseNot()
        while current.kind == .and {
            _ = advance()
            left = .and(left, try parseNot())
        }
        return left
    }

    private mutating func parseNot() throws(OTTLSyntaxError) -> OTTLExpression {
        if current.kind == .not {
            _ = advance()
            return .not(try parseNot())
        }
        return try parseTerm()
    }

    private mutating func parseTerm() throws(OTTLSyntaxError) -> OTTLExpression {
        if current.kind == .leftParen {
            _ = advance()
            let inner = try parseOr()
            _ = try expect(.rightParen, ") to close the (, or and/or")
            return inner
        }
        let start = current
        let left = try parseValue(what: "a condition: a comparison, true, false or IsMatch(…)")
        if case .comparison(let op) = current.kind {
            _ = advance()
            let right = try parseValue(what: "a value after \(op.rawValue)")
            return .comparison(left, op, right)
        }
        switch left {
        case .bool, .converter:
            return .value(left)
        case .path:
            let path = String(decoding: source[start.start..<tokens[index - 1].end], as: UTF8.self)
            throw error("a comparison operator (==, !=, <, <=, >, >=) after \(path)", at: current)
        default:
            throw error("a comparison operator (==, !=, <, <=, >, >=)")
        }
    }

    // MARK: Values

    private mutating func parseValue(what: String) throws(OTTLSyntaxError) -> OTTLValueExpression {
        let token = current
        switch token.kind {
        case .string:
            _ = advance()
            return .string(OTTLLexer.unescape(source[token.start..<token.end]))
        case .int:
            _ = advance()
            let digits = text(token)
            guard let value = Int64(digits.hasPrefix("+") ? String(digits.dropFirst()) : digits) else {
                throw OTTLSyntaxError(offset: token.start, in: source, "\(digits) does not fit a 64-bit integer")
            }
            return .int(value)
        case .float:
            _ = advance()
            var digits = text(token)
            if digits.hasPrefix("+") { digits.removeFirst() }
            if digits.hasPrefix(".") { digits = "0" + digits } else if digits.hasPrefix("-.") { digits = "-0" + digits.dropFirst() }
            guard let value = Double(digits) else { throw OTTLSyntaxError(offset: token.start, in: source, "'\(text(token))' is not a number") }
            return .float(value)
        case .bytes:
            _ = advance()
            var bytes: [UInt8] = []
            var i = token.start + 2
            while i + 1 < token.end {
                bytes.append(UInt8(String(decoding: source[i..<i + 2], as: UTF8.self), radix: 16)!)
                i += 2
            }
            return .bytes(bytes)
        case .true, .false:
            _ = advance()
            return .bool(token.kind == .true)
        case .nil:
            _ = advance()
            return .nil
        case .upperIdentifier:
            _ = advance()
            let name = text(token)
            guard current.kind == .leftParen else { return .enumeration(name, offset: token.start) }
            _ = advance()
            var arguments: [OTTLValueExpression] = []
            if current.kind != .rightParen {
                while true {
                    arguments.append(try parseValue(what: "an argument of \(name)"))
                    guard current.kind == .comma else { break }
                    _ = advance()
                }
            }
            _ = try expect(.rightParen, ", or ) in the arguments of \(name)")
            return .converter(name, arguments: arguments, keys: try parseKeys(), offset: token.start)
        case .identifier:
            var names = [text(advance())]
            while current.kind == .dot {
                _ = advance()
                let segment = current
                guard segment.kind == .identifier else { throw error("a field name after the dot") }
                names.append(text(advance()))
            }
            return .path(names: names, keys: try parseKeys(), offset: token.start)
        case .leftParen:
            throw error("\(what) (parentheses group conditions, not values)")
        default:
            throw error(what)
        }
    }

    private mutating func parseKeys() throws(OTTLSyntaxError) -> [OTTLKey] {
        var keys: [OTTLKey] = []
        while current.kind == .leftBracket {
            _ = advance()
            let token = current
            switch token.kind {
            case .string:
                _ = advance()
                keys.append(.string(OTTLLexer.unescape(source[token.start..<token.end])))
            case .int:
                _ = advance()
                guard let i = Int(text(token)), i >= 0 else {
                    throw OTTLSyntaxError(offset: token.start, in: source, "a list index is a whole number from 0")
                }
                keys.append(.index(i))
            default:
                throw error("a key in quotes (\"name\") or a list index (0)")
            }
            _ = try expect(.rightBracket, "] to close the key")
        }
        return keys
    }
}
