import COTLP

/// An attribute value or log body (`AnyValue`): one of the OTLP value kinds.
public struct AnyValueView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CAnyValue>
    public init(_ raw: UnsafeMutablePointer<CAnyValue>) { self.raw = raw }

    public enum Value {
        case string(StringView)
        case bool(Bool)
        case int(Int64)
        case double(Double)
        case bytes(BytesView)
        case array(RepeatedMessageView<AnyValueView>)
        case kvlist(AttributesView)
        /// No value set (an empty `AnyValue`), or a profiles-only string index.
        case empty
    }

    public var value: Value {
        let v = raw.pointee
        switch v.value_case {
        case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE: return .string(StringView(v.string_value))
        case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE: return .bool(v.bool_value != 0)
        case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE: return .int(v.int_value)
        case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE: return .double(v.double_value)
        case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE: return .bytes(BytesView(raw: v.bytes_value))
        case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE:
            guard let array = v.array_value else { return .array(RepeatedMessageView(nil, 0)) }
            return .array(RepeatedMessageView(array.pointee.values, array.pointee.n_values))
        case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE:
            guard let list = v.kvlist_value else { return .kvlist(AttributesView(nil, 0)) }
            return .kvlist(AttributesView(list.pointee.values, list.pointee.n_values))
        default: return .empty
        }
    }

    /// The value as a string: strings as they are, other scalars in their usual
    /// text form, bytes in base64, arrays and maps as JSON.
    public var stringValue: String {
        switch value {
        case .string(let s): return s.string
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d):
            var out = JSONOutput()
            out.appendDouble(d)
            return String(decoding: out.bytes.filter { $0 != UInt8(ascii: "\"") }, as: UTF8.self)
        case .bytes(let b):
            var out = JSONOutput()
            out.appendBase64String(b.bytes)
            return String(decoding: out.bytes.dropFirst().dropLast(), as: UTF8.self)
        case .array, .kvlist:
            var out = JSONOutput()
            writePlainJSON(to: &out)
            return String(decoding: out.bytes, as: UTF8.self)
        case .empty: return ""
        }
    }

    /// The value as one JSON string, the way flat SIEM fields carry it (HEC's
    /// indexed fields, the integrity processor's canonical form): strings as they
    /// are, numbers and booleans in their usual text, bytes in base64, arrays and
    /// maps as their plain JSON in a string.
    public func writeScalarString(to out: inout JSONOutput) {
        switch value {
        case .string(let s): out.appendString(s.utf8)
        case .bool(let b): out.append(ascii: b ? "\"true\"" : "\"false\"")
        case .int(let i):
            out.append(UInt8(ascii: "\""))
            out.appendInt(i)
            out.append(UInt8(ascii: "\""))
        case .double(let d):
            // NaN and the infinities come out of appendDouble quoted already.
            if d.isFinite { out.append(UInt8(ascii: "\"")) }
            out.appendDouble(d)
            if d.isFinite { out.append(UInt8(ascii: "\"")) }
        case .bytes(let b): out.appendBase64String(b.bytes)
        case .array, .kvlist:
            var nested = JSONOutput()
            writePlainJSON(to: &nested)
            nested.bytes.withUnsafeBufferPointer { out.appendString($0) }
        case .empty: out.append(ascii: "\"\"")
        }
    }

    /// Whether the value says nothing: unset, only whitespace, an empty array or map.
    public var isBlank: Bool {
        switch value {
        case .empty: true
        case .string(let s): s.utf8.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        case .array(let items): items.isEmpty
        case .kvlist(let list): list.isEmpty
        default: false
        }
    }

    /// The value as plain JSON, the way SIEM payloads carry it: strings, numbers,
    /// booleans, arrays and objects (not OTLP/JSON's tagged `{"stringValue":…}`).
    /// Bytes become base64 strings; integers stay exact JSON numbers.
    public func writePlainJSON(to out: inout JSONOutput) {
        switch value {
        case .string(let s): out.appendString(s.utf8)
        case .bool(let b): out.appendBool(b)
        case .int(let i): out.appendInt(i)
        case .double(let d): out.appendDouble(d)
        case .bytes(let b): out.appendBase64String(b.bytes)
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (i, element) in values.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                element.writePlainJSON(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .kvlist(let attributes):
            attributes.writePlainJSONObject(to: &out)
        case .empty: out.appendNull()
        }
    }
}

/// `KeyValue`: one attribute.
public struct KeyValueView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CKeyValue>
    public init(_ raw: UnsafeMutablePointer<CKeyValue>) { self.raw = raw }

    public var key: StringView { StringView(raw.pointee.key) }
    /// `nil` when the attribute has no value at all.
    public var value: AnyValueView? { raw.pointee.value.map(AnyValueView.init) }
}

/// A list of attributes (`repeated KeyValue`), with lookup by key.
public struct AttributesView: RandomAccessCollection {
    let list: RepeatedMessageView<KeyValueView>

    init(_ base: UnsafeMutablePointer<UnsafeMutablePointer<CKeyValue>?>?, _ count: Int) {
        list = RepeatedMessageView(base, count)
    }

    /// No attributes: what a record without a resource or scope has.
    public static var empty: AttributesView { AttributesView(nil, 0) }

    public var startIndex: Int { 0 }
    public var endIndex: Int { list.count }
    public subscript(position: Int) -> KeyValueView { list[position] }

    /// The value of the first attribute named `key` (OTLP requires keys to be unique).
    public subscript(key: StaticString) -> AnyValueView? {
        for attribute in list where attribute.key.equals(key) { return attribute.value }
        return nil
    }

    public subscript(key: String) -> AnyValueView? {
        for attribute in list where attribute.key.equals(key) { return attribute.value }
        return nil
    }

    /// `{"key": value, …}` with plain JSON values.
    public func writePlainJSONObject(to out: inout JSONOutput) {
        out.append(UInt8(ascii: "{"))
        for (i, attribute) in list.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.appendString(attribute.key.utf8)
            out.append(UInt8(ascii: ":"))
            if let value = attribute.value { value.writePlainJSON(to: &out) } else { out.appendNull() }
        }
        out.append(UInt8(ascii: "}"))
    }
}
