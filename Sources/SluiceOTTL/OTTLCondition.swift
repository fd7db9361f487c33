// SluiceOTTL: the subset of the OpenTelemetry Transformation Language that the
// `filter` processor and the `routing` connector need — boolean conditions over a
// log record, a span or a resource. A condition is parsed and resolved once, when
// the configuration is read (paths to fields, enums to numbers, regular
// expressions compiled); evaluating it reads the record's views in place and
// allocates nothing unless IsMatch has to turn a non-string value into text.
// Grammar and comparison rules:
// https://github.com/open-telemetry/opentelemetry-collector-contrib/blob/main/pkg/ottl/LANGUAGE.md
import SluiceOTLP

/// A parsed OTTL condition for one context, ready to evaluate.
public final class OTTLCondition: @unchecked Sendable {
    // @unchecked: built in init, then only read; the literal bytes it points into
    // are owned here and freed in deinit.
    public let text: String
    public let context: OTTLContext
    let root: OTTLNode
    private let storage: [UnsafeMutableBufferPointer<UInt8>]

    /// Parses `text` as a condition in `context`.
    public convenience init(_ text: String, context: OTTLContext) throws(OTTLSyntaxError) {
        var parser = try OTTLParser(text)
        let expression = try parser.parseCondition()
        try self.init(text: text, source: parser.source, expression: expression, context: context)
    }

    /// Parses `route() where <condition>` (the routing connector's `statement`); a
    /// statement without `where` always routes.
    public convenience init(statement text: String, editor: String, context: OTTLContext) throws(OTTLSyntaxError) {
        var parser = try OTTLParser(text)
        let expression = try parser.parseStatement(editor: editor) ?? .value(.bool(true))
        try self.init(text: text, source: parser.source, expression: expression, context: context)
    }

    private init(text: String, source: [UInt8], expression: OTTLExpression, context: OTTLContext) throws(OTTLSyntaxError) {
        var compiler = OTTLCompiler(source: source, context: context)
        do {
            root = try compiler.compile(expression)
        } catch {
            for buffer in compiler.storage { buffer.deallocate() }
            throw error
        }
        self.text = text
        self.context = context
        storage = compiler.storage
    }

    deinit {
        for buffer in storage { buffer.deallocate() }
    }

    // MARK: Evaluation

    /// Whether a log record matches (log context; a resource condition reads the
    /// record's resource).
    public func matches(log record: LogRecordView, resource: ResourceView?, scope: ScopeView?) throws(OTTLEvaluationError) -> Bool {
        try root.evaluate(OTTLSubject(log: record, span: nil, resource: resource, scope: scope))
    }

    public func matches(span: SpanView, resource: ResourceView?, scope: ScopeView?) throws(OTTLEvaluationError) -> Bool {
        try root.evaluate(OTTLSubject(log: nil, span: span, resource: resource, scope: scope))
    }

    public func matches(resource: ResourceView?) throws(OTTLEvaluationError) -> Bool {
        try root.evaluate(OTTLSubject(log: nil, span: nil, resource: resource, scope: nil))
    }
}

/// A condition that failed on one record: a key on a value that has none, a list
/// index past the end. The processor's `error_mode` decides what happens then.
public struct OTTLEvaluationError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

// MARK: - Compiled form

/// What a record is evaluated with: its views, valid while its batch is.
struct OTTLSubject {
    let log: LogRecordView?
    let span: SpanView?
    let resource: ResourceView?
    let scope: ScopeView?
}

indirect enum OTTLNode {
    case or(OTTLNode, OTTLNode)
    case and(OTTLNode, OTTLNode)
    case not(OTTLNode)
    case compare(OTTLOperand, OTTLComparison, OTTLOperand)
    case truth(OTTLOperand)
}

indirect enum OTTLOperand {
    case constant(OTTLRuntimeValue)
    case field(OTTLField, keys: [OTTLRuntimeKey])
    case isMatch(OTTLOperand, POSIXRegex)
}

enum OTTLRuntimeKey {
    case string(UnsafeBufferPointer<UInt8>)
    case index(Int)
}

/// A value as a condition sees it: pointers into the batch's arena (or into the
/// condition's own literals), never copies.
enum OTTLRuntimeValue {
    case null
    case string(UnsafeBufferPointer<UInt8>)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case bytes(UnsafeBufferPointer<UInt8>)
    case map(AttributesView)
    case list(RepeatedMessageView<AnyValueView>)

    init(_ value: AnyValueView?) {
        guard let value else { self = .null; return }
        switch value.value {
        case .string(let s): self = .string(s.utf8)
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .bytes(let b): self = .bytes(b.bytes)
        case .array(let list): self = .list(list)
        case .kvlist(let map): self = .map(map)
        case .empty: self = .null
        }
    }

    /// OTTL's name for the type, in error messages.
    var typeName: String {
        switch self {
        case .null: "nil"
        case .string: "Str"
        case .int: "Int"
        case .double: "Double"
        case .bool: "Bool"
        case .bytes: "Bytes"
        case .map: "Map"
        case .list: "Slice"
        }
    }
}

/// Resolves a parsed expression against a context: paths to fields, enums to
/// numbers, IsMatch patterns to compiled regular expressions. Every name it does
/// not know is an error pointing at where it is written.
struct OTTLCompiler {
    let source: [UInt8]
    let context: OTTLContext
    var storage: [UnsafeMutableBufferPointer<UInt8>] = []

    private func fail(_ offset: Int?, _ message: String) -> OTTLSyntaxError {
        OTTLSyntaxError(offset: offset ?? 0, in: source, message)
    }

    mutating func compile(_ expression: OTTLExpression) throws(OTTLSyntaxError) -> OTTLNode {
        switch expression {
        case .or(let a, let b): return .or(try compile(a), try compile(b))
        case .and(let a, let b): return .and(try compile(a), try compile(b))
        case .not(let a): return .not(try compile(a))
        case .comparison(let a, let op, let b): return .compare(try operand(a), op, try operand(b))
        case .value(let value): return .truth(try operand(value))
        }
    }

    private mutating func keep(_ bytes: [UInt8]) -> UnsafeBufferPointer<UInt8> {
        let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(1, bytes.count))
        _ = buffer.initialize(from: bytes)
        storage.append(buffer)
        return UnsafeBufferPointer(rebasing: buffer[0..<bytes.count])
    }

    private mutating func operand(_ value: OTTLValueExpression) throws(OTTLSyntaxError) -> OTTLOperand {
        switch value {
        case .string(let bytes): return .constant(.string(keep(bytes)))
        case .int(let i): return .constant(.int(i))
        case .float(let d): return .constant(.double(d))
        case .bool(let b): return .constant(.bool(b))
        case .nil: return .constant(.null)
        case .bytes(let bytes): return .constant(.bytes(keep(bytes)))
        case .enumeration(let name, let offset):
            guard let number = context.enums[name] else {
                let known = context.enums.keys.sorted()
                let hint = known.isEmpty ? "the \(context.rawValue) context has no enums" : "known: \(known.joined(separator: ", "))"
                throw fail(offset, "unknown enum \(name); \(hint)")
            }
            return .constant(.int(number))
        case .path(let names, let keys, let offset):
            if context == .span, names.first == "spanevent" {
                throw fail(offset, "span events cannot be filtered by Sluice; write conditions on the span")
            }
            guard let field = context.field(names) else {
                let known = context.fields.map(\.path).filter { !$0.hasPrefix("scope.") }
                throw fail(offset, "unknown path \(names.joined(separator: ".")) in the \(context.rawValue) context; known: \(known.joined(separator: ", "))")
            }
            guard keys.isEmpty || field.indexable else {
                throw fail(offset, "\(names.joined(separator: ".")) is not a map or a list and takes no [key]")
            }
            return .field(field, keys: keys.map { key in
                switch key {
                case .string(let bytes): .string(keep(bytes))
                case .index(let i): .index(i)
                }
            })
        case .converter(let name, let arguments, let keys, let offset):
            guard name == "IsMatch" else {
                throw fail(offset, "unknown function \(name); Sluice's conditions have IsMatch(value, \"regex\")")
            }
            guard arguments.count == 2 else { throw fail(offset, "IsMatch takes two arguments, a value and a pattern in quotes, not \(arguments.count)") }
            guard keys.isEmpty else { throw fail(offset, "IsMatch returns true or false and takes no [key]") }
            guard case .string(let pattern) = arguments[1] else {
                throw fail(arguments[1].offset ?? offset, "IsMatch's pattern must be a string in quotes")
            }
            if case .converter = arguments[0] { throw fail(arguments[0].offset, "IsMatch's value must be a path or a literal") }
            let target = try operand(arguments[0])
            do {
                return .isMatch(target, try POSIXRegex(pattern))
            } catch {
                throw fail(offset, "IsMatch: \(error.message)")
            }
        }
    }
}
