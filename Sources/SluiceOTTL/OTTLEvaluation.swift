#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SluiceOTLP

// Evaluation: fields are read through the views, values compared by OTTL's
// comparison rules (LANGUAGE.md, "Comparison Rules"): a missing attribute is nil;
// nil equals only nil; ints and doubles compare as doubles; strings and bytes
// compare byte by byte; false < true; values of different types are not equal
// (`!=` is true, every other operator false); maps and lists only compare as not
// equal. Nothing here throws but a key on a value that cannot take it.

extension OTTLNode {
    func evaluate(_ subject: OTTLSubject) throws(OTTLEvaluationError) -> Bool {
        switch self {
        // Short-circuit, as OTTL does: the right side is not read (nor can it fail)
        // once the left decides.
        case .or(let a, let b):
            if try a.evaluate(subject) { return true }
            return try b.evaluate(subject)
        case .and(let a, let b):
            if try !a.evaluate(subject) { return false }
            return try b.evaluate(subject)
        case .not(let a): return try !a.evaluate(subject)
        case .compare(let a, let op, let b): return OTTLNode.compare(try a.evaluate(subject), op, try b.evaluate(subject))
        case .truth(let a):
            guard case .bool(let value) = try a.evaluate(subject) else { return false }
            return value
        }
    }

    static func compare(_ a: OTTLRuntimeValue, _ op: OTTLComparison, _ b: OTTLRuntimeValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return op == .equal
        case (.null, .bytes(let x)) where x.isEmpty, (.bytes(let x), .null) where x.isEmpty: return op == .equal
        case (.int(let x), .int(let y)): return order(x, y, op)
        case (.int(let x), .double(let y)): return order(Double(x), y, op)
        case (.double(let x), .int(let y)): return order(x, Double(y), op)
        case (.double(let x), .double(let y)): return order(x, y, op)
        case (.bool(let x), .bool(let y)): return order(x ? 1 : 0, y ? 1 : 0, op)
        case (.string(let x), .string(let y)), (.bytes(let x), .bytes(let y)): return order(bytewise(x, y), 0, op)
        default: return op == .notEqual
        }
    }

    private static func order<T: Comparable>(_ x: T, _ y: T, _ op: OTTLComparison) -> Bool {
        switch op {
        case .equal: x == y
        case .notEqual: x != y
        case .less: x < y
        case .lessOrEqual: x <= y
        case .greater: x > y
        case .greaterOrEqual: x >= y
        }
    }

    /// memcmp order, the shorter first on a common prefix (Go's string order).
    private static func bytewise(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>) -> Int {
        let common = min(x.count, y.count)
        if common > 0 {
            let c = memcmp(x.baseAddress!, y.baseAddress!, common)
            if c != 0 { return c < 0 ? -1 : 1 }
        }
        return x.count == y.count ? 0 : (x.count < y.count ? -1 : 1)
    }
}

extension OTTLOperand {
    func evaluate(_ subject: OTTLSubject) throws(OTTLEvaluationError) -> OTTLRuntimeValue {
        switch self {
        case .constant(let value):
            return value
        case .field(let field, let keys):
            var value = field.read(subject)
            for key in keys { value = try value.indexed(by: key) }
            return value
        case .isMatch(let target, let regex):
            switch try target.evaluate(subject) {
            case .null: return .bool(false)
            case .string(let bytes): return .bool(regex.matches(bytes))
            case let other: return .bool(regex.matches(other.text))
            }
        }
    }
}

extension OTTLField {
    func read(_ s: OTTLSubject) -> OTTLRuntimeValue {
        switch self {
        case .logAttributes: return s.log.map { .map($0.attributes) } ?? .null
        case .body: return s.log.map { OTTLRuntimeValue($0.body) } ?? .null
        case .severityNumber: return s.log.map { .int(Int64($0.severityNumber)) } ?? .null
        case .severityText: return s.log.map { .string($0.severityText.utf8) } ?? .null
        case .eventName: return s.log.map { .string($0.eventName.utf8) } ?? .null
        case .timeUnixNano: return s.log.map { .int(Int64(bitPattern: $0.timeUnixNano)) } ?? .null
        case .observedTimeUnixNano: return s.log.map { .int(Int64(bitPattern: $0.observedTimeUnixNano)) } ?? .null
        case .logFlags: return s.log.map { .int(Int64($0.flags)) } ?? .null
        case .logDroppedAttributes: return s.log.map { .int(Int64($0.droppedAttributesCount)) } ?? .null
        case .spanAttributes: return s.span.map { .map($0.attributes) } ?? .null
        case .spanName: return s.span.map { .string($0.name.utf8) } ?? .null
        case .spanKind: return s.span.map { .int(Int64($0.kindNumber)) } ?? .null
        case .statusCode: return s.span.map { .int(Int64($0.status?.code ?? 0)) } ?? .null
        case .statusMessage: return s.span.map { span in span.status.map { .string($0.message.utf8) } ?? .string(UnsafeBufferPointer(start: nil, count: 0)) } ?? .null
        case .traceState: return s.span.map { .string($0.traceState.utf8) } ?? .null
        case .startTimeUnixNano: return s.span.map { .int(Int64(bitPattern: $0.startTimeUnixNano)) } ?? .null
        case .endTimeUnixNano: return s.span.map { .int(Int64(bitPattern: $0.endTimeUnixNano)) } ?? .null
        case .spanDroppedAttributes: return s.span.map { .int(Int64($0.droppedAttributesCount)) } ?? .null
        // A record without a resource or scope reads them as empty, as the
        // Collector's pdata does.
        case .resourceAttributes: return s.resource.map { .map($0.attributes) } ?? .map(AttributesView.empty)
        case .resourceDroppedAttributes: return .int(Int64(s.resource?.droppedAttributesCount ?? 0))
        case .scopeName: return s.scope.map { .string($0.name.utf8) } ?? .string(UnsafeBufferPointer(start: nil, count: 0))
        case .scopeVersion: return s.scope.map { .string($0.version.utf8) } ?? .string(UnsafeBufferPointer(start: nil, count: 0))
        case .scopeAttributes: return s.scope.map { .map($0.attributes) } ?? .map(AttributesView.empty)
        }
    }
}

extension OTTLRuntimeValue {
    /// `value["key"]` or `value[0]`. A missing key is nil (OTTL's way to test for
    /// presence); a key on anything but a map, or an index on anything but a list
    /// or past its end, is an error, as in the Collector.
    func indexed(by key: OTTLRuntimeKey) throws(OTTLEvaluationError) -> OTTLRuntimeValue {
        switch (self, key) {
        case (.null, _):
            return .null
        case (.map(let map), .string(let name)):
            for attribute in map {
                let k = attribute.key.utf8
                if k.count == name.count, name.isEmpty || memcmp(k.baseAddress!, name.baseAddress!, name.count) == 0 {
                    return OTTLRuntimeValue(attribute.value)
                }
            }
            return .null
        case (.list(let list), .index(let i)):
            guard i < list.count else { throw OTTLEvaluationError(message: "index \(i) out of bounds (the list has \(list.count))") }
            return OTTLRuntimeValue(list[i])
        case (_, .string(let name)):
            throw OTTLEvaluationError(message: "type \(typeName) does not support string indexing (key \"\(String(decoding: name, as: UTF8.self))\")")
        case (_, .index(let i)):
            throw OTTLEvaluationError(message: "type \(typeName) does not support int indexing (index \(i))")
        }
    }

    /// The text IsMatch matches a non-string value against (OTTL's string-like
    /// conversion): numbers and booleans as written, bytes as hex, maps and lists
    /// as JSON.
    var text: [UInt8] {
        switch self {
        case .null: return []
        case .string(let s): return Array(s)
        case .int(let i): return Array(String(i).utf8)
        case .double(let d): return Array(String(d).utf8)
        case .bool(let b): return Array((b ? "true" : "false").utf8)
        case .bytes(let b):
            var hex: [UInt8] = []
            JSONOutput.appendHex(b, to: &hex)
            return hex
        case .map(let map):
            var out = JSONOutput()
            map.writePlainJSONObject(to: &out)
            return out.bytes
        case .list(let list):
            var out = JSONOutput()
            out.append(UInt8(ascii: "["))
            for (i, element) in list.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                element.writePlainJSON(to: &out)
            }
            out.append(UInt8(ascii: "]"))
            return out.bytes
        }
    }
}
