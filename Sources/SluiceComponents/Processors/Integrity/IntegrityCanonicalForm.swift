import SluiceCore
import SluiceNet
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
/// - `integrity_*` (the seal itself: the hash and the chain attributes) and
///   `com.splunk.*` (HEC routing metadata, never a field) are left out.
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

    /// Plain data (no reference counting per entry): owned bytes are ranges of
    /// `ownedValues`.
    enum Value {
        case any(AnyValueView)
        case text(UnsafeBufferPointer<UInt8>)
        case owned(Range<Int>)
        case number(UInt64)
        case hex(UnsafeBufferPointer<UInt8>)
        case rawJSON(Range<Int>)
    }

    struct Entry {
        /// A key in the batch's arena (stable while the batch lives)…
        var key: UnsafeBufferPointer<UInt8>
        /// …or, when `ownedOffset >= 0`, `ownedLength` bytes of `ownedKeys` (dotted
        /// keys of nested maps, keys read from a document).
        var ownedOffset: Int
        var ownedLength: Int
        var value: Value
    }

    private var entries: [Entry] = []
    /// Every owned key back to back: one buffer, no array per key.
    private var ownedKeys: [UInt8] = []
    /// Every owned value (a map body's JSON, text read from a document) likewise.
    private var ownedValues: [UInt8] = []
    /// Scratch for `serialise`: each entry's key, and the entries in key order.
    private var keys: [UnsafeBufferPointer<UInt8>] = []
    /// Each key's first eight bytes as a big-endian number: most comparisons end there.
    private var prefixes: [UInt64] = []
    private var sorted: [Int] = []
    /// The canonical bytes of the last `serialise`.
    private var writer = CanonicalWriter()
    /// For what the writer hands to JSONOutput (strings that need escaping, doubles,
    /// bytes, nested values), copied over after.
    private var slow = JSONOutput()

    public init() {}

    /// Starts a new record.
    public mutating func reset() {
        entries.removeAll(keepingCapacity: true)
        ownedKeys.removeAll(keepingCapacity: true)
        ownedValues.removeAll(keepingCapacity: true)
    }

    private mutating func own(_ bytes: some Collection<UInt8>) -> Range<Int> {
        let start = ownedValues.count
        ownedValues.append(contentsOf: bytes)
        return start..<ownedValues.count
    }

    /// The canonical bytes of a log record.
    public mutating func encode(_ record: LogRecordView, resource: ResourceView?) -> [UInt8] {
        encodeInPlace(record, resource: resource)
        return Array(canonicalBytes)
    }

    /// Builds the canonical bytes in place: `canonicalBytes` until the next call.
    mutating func encodeInPlace(_ record: LogRecordView, resource: ResourceView?) {
        reset()
        if let resource { addAttributes(resource.attributes, prefix: 0..<0) }
        addAttributes(record.attributes, prefix: nil)
        addRecordFields(record)
        serialiseInPlace()
    }

    /// What the last `encodeInPlace` or `serialise` wrote (valid until the next).
    var canonicalBytes: UnsafeRawBufferPointer { writer.bytes }

    /// Adds flattened attributes (later additions win a clash). `prefix` is the
    /// dotted path so far, as a range of `ownedKeys`; nil (or empty) at the top.
    mutating func addAttributes(_ attributes: AttributesView, prefix: Range<Int>?) {
        let prefix = prefix ?? 0..<0
        for attribute in attributes {
            guard let value = attribute.value else { continue }
            let key = attribute.key.utf8
            if key.isEmpty, prefix.isEmpty { continue }
            switch value.value {
            case .empty:
                continue
            case .kvlist(let nested):
                let start = ownedKeys.count
                ownedKeys.append(contentsOf: ownedKeys[prefix])
                ownedKeys.append(contentsOf: key)
                ownedKeys.append(UInt8(ascii: "."))
                addAttributes(nested, prefix: start..<ownedKeys.count)
            case .array(let items) where !Self.hasContent(items):
                // An array of unset values is no field at all (as HEC leaves it out).
                continue
            default:
                if prefix.isEmpty {
                    entries.append(Entry(key: key, ownedOffset: -1, ownedLength: 0, value: .any(value)))
                } else {
                    let start = ownedKeys.count
                    ownedKeys.append(contentsOf: ownedKeys[prefix])
                    ownedKeys.append(contentsOf: key)
                    entries.append(Entry(key: UnsafeBufferPointer(start: nil, count: 0), ownedOffset: start, ownedLength: ownedKeys.count - start, value: .any(value)))
                }
            }
        }
    }

    /// Adds a field given as text (what a delivered document holds).
    mutating func addText(_ key: [UInt8], _ value: [UInt8]) { addOwned(key, .owned(own(value))) }

    /// Adds a field whose value is already JSON (an array of strings).
    mutating func addJSON(_ key: [UInt8], _ json: [UInt8]) { addOwned(key, .rawJSON(own(json))) }

    private mutating func addOwned(_ key: [UInt8], _ value: Value) {
        let start = ownedKeys.count
        ownedKeys.append(contentsOf: key)
        entries.append(Entry(key: UnsafeBufferPointer(start: nil, count: 0), ownedOffset: start, ownedLength: key.count, value: value))
    }

    private mutating func addStatic(_ key: StaticString, _ value: Value) {
        entries.append(Entry(key: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount), ownedOffset: -1, ownedLength: 0, value: value))
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
                addStatic("@body", .owned(own(json.bytes)))
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
        serialiseInPlace()
        return Array(canonicalBytes)
    }

    /// A key's first eight bytes as a big-endian number (zero-padded).
    @inline(__always)
    static func sortPrefix(_ key: UnsafeBufferPointer<UInt8>) -> UInt64 {
        if key.count >= 8 { return UInt64(bigEndian: UnsafeRawPointer(key.baseAddress!).loadUnaligned(as: UInt64.self)) }
        var prefix: UInt64 = 0
        for i in 0..<8 { prefix = prefix << 8 | UInt64(i < key.count ? key[i] : 0) }
        return prefix
    }

    private mutating func serialiseInPlace() {
        writer.reset()
        writer.byte(UInt8(ascii: "{"))
        let owned = ownedKeys
        owned.withUnsafeBufferPointer { store in
            keys.removeAll(keepingCapacity: true)
            prefixes.removeAll(keepingCapacity: true)
            for entry in entries {
                let key = entry.ownedOffset < 0 ? entry.key : UnsafeBufferPointer(rebasing: store[entry.ownedOffset..<(entry.ownedOffset + entry.ownedLength)])
                keys.append(key)
                prefixes.append(Self.sortPrefix(key))
            }
            // Insertion sort, from the last record's order when this one has as
            // many fields: records of one source mostly share their layout, and
            // then the sort is one pass of comparisons. (Which of equal keys wins
            // is decided below, so the starting order does not matter.)
            if sorted.count != entries.count {
                sorted.removeAll(keepingCapacity: true)
                sorted.append(contentsOf: 0..<entries.count)
            }
            keys.withUnsafeBufferPointer { keys in
                prefixes.withUnsafeBufferPointer { prefixes in
                sorted.withUnsafeMutableBufferPointer { order in
                    @inline(__always) func greater(_ a: Int, _ b: Int) -> Bool {
                        if prefixes[a] != prefixes[b] { return prefixes[a] > prefixes[b] }
                        return Self.compare(keys[a], keys[b]) > 0
                    }
                    for i in 1..<max(order.count, 1) {
                        let moving = order[i]
                        var j = i
                        while j > 0, greater(order[j - 1], moving) {
                            order[j] = order[j - 1]
                            j -= 1
                        }
                        order[j] = moving
                    }
                }
                }
            }
            var first = true
            var position = 0
            while position < sorted.count {
                // Of equal keys the last added wins.
                var last = position
                var index = sorted[position]
                while last + 1 < sorted.count, prefixes[sorted[last + 1]] == prefixes[sorted[position]],
                      Self.compare(keys[sorted[last + 1]], keys[sorted[position]]) == 0 {
                    last += 1
                    index = max(index, sorted[last])
                }
                position = last + 1
                let key = keys[index]
                if Self.isExcluded(key) { continue }
                if !first { writer.byte(UInt8(ascii: ",")) }
                first = false
                writer.string(key, slow: &slow)
                writer.byte(UInt8(ascii: ":"))
                write(entries[index].value)
            }
        }
        writer.byte(UInt8(ascii: "}"))
    }

    @inline(__always)
    static func compare(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Int {
        let common = min(a.count, b.count)
        let c = common == 0 ? 0 : memcmp(a.baseAddress!, b.baseAddress!, common)
        return c != 0 ? Int(c) : a.count - b.count
    }

    static func isExcluded(_ key: UnsafeBufferPointer<UInt8>) -> Bool {
        let seal: StaticString = "integrity_", splunk: StaticString = "com.splunk."
        if key.count >= seal.utf8CodeUnitCount, memcmp(key.baseAddress!, seal.utf8Start, seal.utf8CodeUnitCount) == 0 { return true }
        return key.count >= splunk.utf8CodeUnitCount && memcmp(key.baseAddress!, splunk.utf8Start, splunk.utf8CodeUnitCount) == 0
    }

    private mutating func write(_ value: Value) {
        switch value {
        case .text(let bytes): writer.string(bytes, slow: &slow)
        case .owned(let range):
            let values = ownedValues
            values.withUnsafeBufferPointer { writer.string(UnsafeBufferPointer(rebasing: $0[range]), slow: &slow) }
        case .rawJSON(let range):
            let values = ownedValues
            values.withUnsafeBufferPointer { writer.raw(UnsafeBufferPointer(rebasing: $0[range])) }
        case .number(let n): writer.quoted(n)
        case .hex(let bytes):
            slow.bytes.removeAll(keepingCapacity: true)
            slow.appendHexString(bytes)
            writer.raw(slow.bytes)
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
        writer.byte(UInt8(ascii: "["))
        var first = true
        for item in items {
            if case .empty = item.value { continue }
            if !first { writer.byte(UInt8(ascii: ",")) }
            first = false
            writeScalar(item)
        }
        writer.byte(UInt8(ascii: "]"))
    }

    /// A scalar as its string (AnyValueView.writeScalarString), with strings and
    /// integers, the common kinds, written straight into the buffer.
    private mutating func writeScalar(_ value: AnyValueView) {
        switch value.value {
        case .string(let s): writer.string(s.utf8, slow: &slow)
        case .int(let i) where i >= 0: writer.quoted(UInt64(i))
        default:
            slow.bytes.removeAll(keepingCapacity: true)
            value.writeScalarString(to: &slow)
            writer.raw(slow.bytes)
        }
    }

    // MARK: The chain's link

    /// A record's place in its chain: the chain attributes, as the link form holds them.
    public struct ChainLink {
        public var stream: [UInt8]
        public var seq: Int64
        public var prev: [UInt8]
        /// On a chain's first record when it continues the last run's chain.
        public var previousRun: (stream: [UInt8], seq: Int64)?

        public init(stream: [UInt8], seq: Int64, prev: [UInt8], previousRun: (stream: [UInt8], seq: Int64)? = nil) {
            self.stream = stream
            self.seq = seq
            self.prev = prev
            self.previousRun = previousRun
        }
    }

    /// The link form (docs/processors.md, "The chain"): with `chain: true` the hash
    /// covers the record through it. It is the canonical form of the chain
    /// attributes, as strings, beside `@content`: the SHA-256 (hex) of the record's
    /// own canonical form. Keeping the record's form apart from its place in the
    /// chain lets every request hash its records at once; only this short form waits
    /// for the record before it.
    public static func writeLink(content: UnsafeBufferPointer<UInt8>, _ link: ChainLink, into output: inout JSONOutput) {
        output.bytes.removeAll(keepingCapacity: true)
        output.append(ascii: "{\"@content\":")
        output.appendHexString(content)
        output.append(ascii: ",\"integrity_prev\":")
        link.prev.withUnsafeBufferPointer { output.appendString($0) }
        if let run = link.previousRun {
            output.append(ascii: ",\"integrity_prev_seq\":\"")
            output.appendInt(run.seq)
            output.append(ascii: "\",\"integrity_prev_stream\":")
            run.stream.withUnsafeBufferPointer { output.appendString($0) }
        }
        output.append(ascii: ",\"integrity_seq\":\"")
        output.appendInt(link.seq)
        output.append(ascii: "\",\"integrity_stream\":")
        link.stream.withUnsafeBufferPointer { output.appendString($0) }
        output.append(UInt8(ascii: "}"))
    }

    /// What `integrity_hash` should be for a record whose canonical form is
    /// `canonical`: over the form itself, or with `link` over the link form.
    public static func sealHash(_ canonical: [UInt8], link: ChainLink?, key: [UInt8]?) -> String {
        guard let link else { return hash(canonical, key: key) }
        var content = [UInt8](repeating: 0, count: 32)
        canonical.withUnsafeBytes { data in content.withUnsafeMutableBufferPointer { Digest.sha256(data, key: nil, into: $0.baseAddress!) } }
        var output = JSONOutput()
        content.withUnsafeBufferPointer { writeLink(content: $0, link, into: &output) }
        return hash(output.bytes, key: key)
    }

    /// The same over bytes in place; `hasher`, when given, does the unkeyed SHA-256
    /// (a context reused record after record).
    public static func hash(_ canonical: UnsafeRawBufferPointer, key: [UInt8]?, using hasher: SHA256Hasher? = nil, into out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { digest in
            if let key {
                key.withUnsafeBytes { Digest.sha256(canonical, key: $0, into: digest.baseAddress!) }
            } else if let hasher {
                hasher.digest(canonical, into: digest.baseAddress!)
            } else {
                Digest.sha256(canonical, key: nil, into: digest.baseAddress!)
            }
            writeHash(UnsafeBufferPointer(digest), keyed: key != nil, into: &out)
        }
    }

    /// `sha256:<hex>` (`hmac-sha256:<hex>` when keyed) of a 32-byte digest into `out`.
    static func writeHash(_ digest: UnsafeBufferPointer<UInt8>, keyed: Bool, into out: inout [UInt8]) {
        let prefix: StaticString = "sha256:", keyedPrefix: StaticString = "hmac-sha256:"
        let head = keyed ? keyedPrefix : prefix
        out.removeAll(keepingCapacity: true)
        out.append(contentsOf: UnsafeBufferPointer(start: head.utf8Start, count: head.utf8CodeUnitCount))
        JSONOutput.appendHex(digest, to: &out)
    }

    /// `sha256:<hex>`, or `hmac-sha256:<hex>` under `key`.
    public static func hash(_ canonical: [UInt8], key: [UInt8]?) -> String {
        var out: [UInt8] = []
        hash(canonical, key: key, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// The same into `out` (replacing what it held), without a String.
    public static func hash(_ canonical: [UInt8], key: [UInt8]?, into out: inout [UInt8]) {
        canonical.withUnsafeBytes { hash($0, key: key, into: &out) }
    }
}

/// The canonical form's output buffer: written byte by byte and run by run without
/// an Array's bookkeeping on every append (which cost a third of the canonical
/// form's time). A value type over storage it owns: `reset` gives a copy of an
/// encoder its own buffer before writing (copy on write, once per record).
struct CanonicalWriter {
    private final class Storage {
        var base: UnsafeMutablePointer<UInt8>
        init(capacity: Int) { base = .allocate(capacity: capacity) }
        deinit { base.deallocate() }
    }

    private var storage: Storage
    /// `storage.base`, kept here so that writing touches no reference.
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private(set) var count = 0

    init() {
        capacity = 1024
        storage = Storage(capacity: capacity)
        base = storage.base
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    mutating func reset() {
        if !isKnownUniquelyReferenced(&storage) {
            storage = Storage(capacity: capacity)
            base = storage.base
        }
        count = 0
    }

    @inline(__always)
    private mutating func reserve(_ more: Int) {
        guard count + more > capacity else { return }
        let grown = max(capacity * 2, count + more)
        let next = UnsafeMutablePointer<UInt8>.allocate(capacity: grown)
        next.update(from: base, count: count)
        storage.base.deallocate()
        storage.base = next
        base = next
        capacity = grown
    }

    @inline(__always)
    mutating func byte(_ b: UInt8) {
        reserve(1)
        base[count] = b
        count += 1
    }

    mutating func raw(_ run: UnsafeBufferPointer<UInt8>) {
        guard let start = run.baseAddress, !run.isEmpty else { return }
        reserve(run.count)
        (base + count).update(from: start, count: run.count)
        count += run.count
    }

    mutating func raw(_ run: [UInt8]) { run.withUnsafeBufferPointer { raw($0) } }

    /// A quoted JSON string: copied as it is when nothing in it needs escaping or a
    /// UTF-8 check (the common case), else through JSONOutput's escaping.
    mutating func string(_ text: UnsafeBufferPointer<UInt8>, slow: inout JSONOutput) {
        if let start = text.baseAddress, JSONOutput.nextSpecial(start, from: 0, count: text.count) < text.count {
            slow.bytes.removeAll(keepingCapacity: true)
            slow.appendString(text)
            return raw(slow.bytes)
        }
        reserve(text.count + 2)
        base[count] = UInt8(ascii: "\"")
        if let start = text.baseAddress { (base + count + 1).update(from: start, count: text.count) }
        base[count + 1 + text.count] = UInt8(ascii: "\"")
        count += text.count + 2
    }

    /// A number as a quoted decimal string: the digits written backwards at the end
    /// of the room reserved, then moved up behind the opening quote.
    mutating func quoted(_ n: UInt64) {
        reserve(22)
        base[count] = UInt8(ascii: "\"")
        let digits = JSONOutput.writeDecimal(n, endingAt: base + count + 21)
        (base + count + 1).update(from: base + count + 21 - digits, count: digits)
        base[count + digits + 1] = UInt8(ascii: "\"")
        count += digits + 2
    }
}
