import SluiceCore
#if canImport(Glibc)
import Glibc
#endif

/// The bytes an integrity hash is computed over (docs/processors.md, "integrity"):
/// one log record as a flat JSON object with sorted keys, built so that it can be
/// recomputed from what every destination keeps of the record — an OTLP/JSON line,
/// a Splunk HEC event (whose indexed `fields` are flat strings), a document.
///
/// - Resource attributes, then the record's (the record's win a clash), flattened
///   the way HEC flattens indexed fields: nested maps to dotted keys, numbers,
///   booleans and bytes (base64) to strings, arrays of scalars to arrays of
///   strings, arrays holding arrays or maps to one JSON string; values that are not
///   set are left out, and so is an empty top-level key.
/// - `integrity_hash` itself and `com.splunk.*` (HEC routing metadata, never a
///   field) are left out.
/// - `@time`: the time in milliseconds since the epoch, rounded (the observed time
///   when the record has none; left out with neither). `@body`: a string body as is,
///   a map or array body as compact JSON, other scalars as strings; left out when
///   the record has no body or a blank one. `@severity_text`, `@severity_number`,
///   `@event_name`, `@trace_id`, `@span_id` (lowercase hex) when set.
/// - Serialised as compact JSON, keys in UTF-8 byte order, strings escaped only
///   where JSON requires it (`"`, `\`, controls), other characters as UTF-8: what
///   Python's `json.dumps(fields, sort_keys=True, separators=(",", ":"),
///   ensure_ascii=False)` writes.
///
/// One encoder is reused record after record: its buffers keep their capacity.
public struct IntegrityCanonicalForm {
    /// The attribute holding the hash; never part of what it covers.
    public static let hashKey = "integrity_hash"

    enum Value {
        case any(AnyValueView)
        case text(UnsafeBufferPointer<UInt8>)
        case owned([UInt8])
        case number(UInt64)
        case hex(UnsafeBufferPointer<UInt8>)
        case rawJSON([UInt8])
    }

    struct Entry {
        var key: UnsafeBufferPointer<UInt8>
        /// Index into `ownedKeys` for dotted keys (then `key` is unused).
        var ownedKey: Int
        var order: Int
        var value: Value
    }

    private var entries: [Entry] = []
    private var ownedKeys: [[UInt8]] = []
    private var order = 0
    public private(set) var output = JSONOutput()

    public init() {}

    /// Starts a new record.
    public mutating func reset() {
        entries.removeAll(keepingCapacity: true)
        ownedKeys.removeAll(keepingCapacity: true)
        order = 0
    }

    /// The canonical bytes of a log record (valid until the next call).
    public mutating func encode(_ record: LogRecordView, resource: ResourceView?) -> [UInt8] {
        reset()
        if let resource { addAttributes(resource.attributes, prefix: nil) }
        addAttributes(record.attributes, prefix: nil)
        addRecordFields(record)
        return serialise()
    }

    /// Adds flattened attributes (later additions win a clash).
    mutating func addAttributes(_ attributes: AttributesView, prefix: [UInt8]?) {
        for attribute in attributes {
            guard let value = attribute.value else { continue }
            let key = attribute.key.utf8
            if key.isEmpty, prefix == nil { continue }
            switch value.value {
            case .empty:
                continue
            case .kvlist(let nested):
                var dotted = prefix ?? []
                dotted.append(contentsOf: key)
                dotted.append(UInt8(ascii: "."))
                addAttributes(nested, prefix: dotted)
            case .array(let items) where !Self.hasContent(items):
                // An array of unset values is no field at all (as HEC leaves it out).
                continue
            default:
                if let prefix {
                    ownedKeys.append(prefix + Array(key))
                    add(Entry(key: UnsafeBufferPointer(start: nil, count: 0), ownedKey: ownedKeys.count - 1, order: 0, value: .any(value)))
                } else {
                    add(Entry(key: key, ownedKey: -1, order: 0, value: .any(value)))
                }
            }
        }
    }

    /// Adds a field given as text (what a delivered document holds).
    mutating func addText(_ key: [UInt8], _ value: [UInt8]) {
        ownedKeys.append(key)
        add(Entry(key: UnsafeBufferPointer(start: nil, count: 0), ownedKey: ownedKeys.count - 1, order: 0, value: .owned(value)))
    }

    /// Adds a field whose value is already JSON (an array of strings).
    mutating func addJSON(_ key: [UInt8], _ json: [UInt8]) {
        ownedKeys.append(key)
        add(Entry(key: UnsafeBufferPointer(start: nil, count: 0), ownedKey: ownedKeys.count - 1, order: 0, value: .rawJSON(json)))
    }

    private mutating func add(_ entry: Entry) {
        var entry = entry
        entry.order = order
        order += 1
        entries.append(entry)
    }

    private mutating func addStatic(_ key: StaticString, _ value: Value) {
        add(Entry(key: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount), ownedKey: -1, order: 0, value: value))
    }

    mutating func addRecordFields(_ record: LogRecordView) {
        let time = record.effectiveTimeUnixNano
        if time != 0 { addStatic("@time", .number(time / 1_000_000 + (time % 1_000_000 >= 500_000 ? 1 : 0))) }
        if let body = record.body, !body.isBlank {
            switch body.value {
            case .string(let s): addStatic("@body", .text(s.utf8))
            case .array, .kvlist:
                var json = JSONOutput()
                body.writePlainJSON(to: &json)
                addStatic("@body", .owned(json.bytes))
            default: addStatic("@body", .any(body))
            }
        }
        if !record.severityText.isEmpty { addStatic("@severity_text", .text(record.severityText.utf8)) }
        if record.severityNumber != 0 { addStatic("@severity_number", .number(UInt64(record.severityNumber))) }
        if !record.eventName.isEmpty { addStatic("@event_name", .text(record.eventName.utf8)) }
        if record.traceID.bytes.contains(where: { $0 != 0 }) { addStatic("@trace_id", .hex(record.traceID.bytes)) }
        if record.spanID.bytes.contains(where: { $0 != 0 }) { addStatic("@span_id", .hex(record.spanID.bytes)) }
    }

    /// Whether an array holds a set value or a nested one.
    static func hasContent(_ items: RepeatedMessageView<AnyValueView>) -> Bool {
        items.contains { if case .empty = $0.value { false } else { true } }
    }

    /// The entries as canonical JSON.
    mutating func serialise() -> [UInt8] {
        // Owned keys live in `ownedKeys` for the whole call; their buffers are read
        // through withUnsafeBufferPointer below only while nothing appends.
        let keys = ownedKeys
        func bytes(_ e: Entry, _ body: (UnsafeBufferPointer<UInt8>) -> Bool) -> Bool {
            e.ownedKey < 0 ? body(e.key) : keys[e.ownedKey].withUnsafeBufferPointer(body)
        }
        func compare(_ a: Entry, _ b: Entry) -> Int {
            var result = 0
            _ = bytes(a) { ka in bytes(b) { kb in
                let common = min(ka.count, kb.count)
                let c = common == 0 ? 0 : memcmp(ka.baseAddress!, kb.baseAddress!, common)
                result = c != 0 ? Int(c) : ka.count - kb.count
                return true
            } }
            return result
        }
        entries.sort { a, b in
            let c = compare(a, b)
            return c != 0 ? c < 0 : a.order < b.order
        }
        output.bytes.removeAll(keepingCapacity: true)
        output.append(UInt8(ascii: "{"))
        var first = true
        var i = 0
        while i < entries.count {
            // Of equal keys the last added wins.
            var last = i
            while last + 1 < entries.count, compare(entries[last + 1], entries[i]) == 0 { last += 1 }
            let entry = entries[last]
            i = last + 1
            let skip = bytes(entry) { key in Self.isExcluded(key) }
            if skip { continue }
            if !first { output.append(UInt8(ascii: ",")) }
            first = false
            _ = bytes(entry) { key in output.appendString(key); return true }
            output.append(UInt8(ascii: ":"))
            write(entry.value)
        }
        output.append(UInt8(ascii: "}"))
        return output.bytes
    }

    static func isExcluded(_ key: UnsafeBufferPointer<UInt8>) -> Bool {
        if key.elementsEqual(IntegrityCanonicalForm.hashKey.utf8) { return true }
        let splunk = "com.splunk."
        return key.count >= splunk.utf8.count && key.prefix(splunk.utf8.count).elementsEqual(splunk.utf8)
    }

    private mutating func write(_ value: Value) {
        switch value {
        case .text(let bytes): output.appendString(bytes)
        case .owned(let bytes): bytes.withUnsafeBufferPointer { output.appendString($0) }
        case .rawJSON(let bytes): output.bytes.append(contentsOf: bytes)
        case .number(let n):
            output.append(UInt8(ascii: "\""))
            output.appendUInt(n)
            output.append(UInt8(ascii: "\""))
        case .hex(let bytes): output.appendHexString(bytes)
        case .any(let any): writeFlat(any)
        }
    }

    /// A flattened attribute value: a string, or an array of strings.
    private mutating func writeFlat(_ value: AnyValueView) {
        guard case .array(let items) = value.value else { return writeScalar(value) }
        var nested = false
        for item in items {
            switch item.value {
            case .array, .kvlist: nested = true
            default: break
            }
        }
        if nested { return writeScalar(value) }
        output.append(UInt8(ascii: "["))
        var first = true
        for item in items {
            if case .empty = item.value { continue }
            if !first { output.append(UInt8(ascii: ",")) }
            first = false
            writeScalar(item)
        }
        output.append(UInt8(ascii: "]"))
    }

    private mutating func writeScalar(_ value: AnyValueView) { value.writeScalarString(to: &output) }
}
