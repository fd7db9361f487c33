import COTLP
#if canImport(Glibc)
import Glibc
#endif

/// Changes one attribute list (`repeated KeyValue`) of a batch being edited: a
/// record's, a span's, a resource's, or a map value's.
///
/// An editor is two pointers into the batch's arena and the batch itself, valid
/// only inside `OTLPBatch.edit { … }`. Every change marks the batch edited, which
/// is what makes pipeline logs store the edited message instead of the request's
/// original protobuf (`OTLPBatch.protobufSource`).
public struct AttributesEditor {
    let batch: OTLPBatch
    let countSlot: UnsafeMutablePointer<Int>
    let listSlot: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CKeyValue>?>?>

    /// The list at `countOffset` / `listOffset` bytes into `message`.
    init<M>(_ batch: OTLPBatch, _ message: UnsafeMutablePointer<M>, count: WritableKeyPath<M, Int>, list: WritableKeyPath<M, UnsafeMutablePointer<UnsafeMutablePointer<CKeyValue>?>?>) {
        let base = UnsafeMutableRawPointer(message)
        self.batch = batch
        self.countSlot = (base + MemoryLayout<M>.offset(of: count)!).assumingMemoryBound(to: Int.self)
        self.listSlot = (base + MemoryLayout<M>.offset(of: list)!).assumingMemoryBound(to: UnsafeMutablePointer<UnsafeMutablePointer<CKeyValue>?>?.self)
    }

    /// The list as it is now.
    public var view: AttributesView { AttributesView(listSlot.pointee, countSlot.pointee) }
    /// How many attributes the list holds now.
    public var count: Int { listSlot.pointee == nil ? 0 : countSlot.pointee }

    /// Index of the first attribute named `key`.
    public func index(of key: String) -> Int? {
        var key = key
        return key.withUTF8 { index(of: $0) }
    }

    public func index(of key: UnsafeBufferPointer<UInt8>) -> Int? {
        let attributes = view
        for i in attributes.indices where Self.equal(attributes[i].key.utf8, key) { return i }
        return nil
    }

    /// The value of attribute `i` for editing in place (an attribute without a
    /// value gets an empty one).
    public func value(at i: Int) throws(OTLPEditError) -> AnyValueEditor {
        let pair = listSlot.pointee![i]!
        if let value = pair.pointee.value { return AnyValueEditor(batch: batch, raw: value) }
        batch.markEdited()
        let any = try batch.arena.message(sluice_any_value_descriptor(), as: CAnyValue.self)
        pair.pointee.value = any
        return AnyValueEditor(batch: batch, raw: any)
    }

    /// Sets `key` to `value`, adding the attribute when it is not there (`upsert`).
    public func upsert(_ key: String, _ value: OTLPValue) throws(OTLPEditError) {
        if let i = index(of: key) { return try self.value(at: i).set(value) }
        try append(Array(key.utf8), value)
    }

    /// Adds `key` only when it is not there (`insert`); true when added.
    @discardableResult
    public func insert(_ key: String, _ value: OTLPValue) throws(OTLPEditError) -> Bool {
        guard index(of: key) == nil else { return false }
        try append(Array(key.utf8), value)
        return true
    }

    /// Changes `key` only when it is there (`update`); true when changed.
    @discardableResult
    public func update(_ key: String, _ value: OTLPValue) throws(OTLPEditError) -> Bool {
        guard let i = index(of: key) else { return false }
        try self.value(at: i).set(value)
        return true
    }

    /// Adds an attribute at the end, without looking for an existing one.
    public func append(_ key: [UInt8], _ value: OTLPValue) throws(OTLPEditError) {
        let pair = try batch.arena.keyValue(key, value)
        try append(pair)
    }

    /// Adds attributes at the end with one growth of the list, keys from static
    /// text (a processor's own attribute names), without looking for existing ones.
    public func append(_ pairs: [(key: StaticString, value: OTLPValue)]) throws(OTLPEditError) {
        let n = count
        let grown = try batch.arena.pointers(n + pairs.count, of: CKeyValue.self)
        for (i, pair) in pairs.enumerated() {
            // Static text lives as long as the process: the key can point at it.
            let key = ProtobufCBinaryData(len: pair.key.utf8CodeUnitCount, data: UnsafeMutablePointer(mutating: pair.key.utf8Start))
            grown[n + i] = try batch.arena.keyValue(key, pair.value)
        }
        if n > 0 { grown.update(from: listSlot.pointee!, count: n) }
        batch.markEdited()
        listSlot.pointee = grown
        countSlot.pointee = n + pairs.count
    }

    func append(_ pair: UnsafeMutablePointer<CKeyValue>) throws(OTLPEditError) {
        let n = count
        // protobuf-c sizes repeated fields exactly, so growing means a new pointer
        // array; attribute lists are short and edits rare per list.
        let grown = try batch.arena.pointers(n + 1, of: CKeyValue.self)
        if n > 0 { grown.update(from: listSlot.pointee!, count: n) }
        grown[n] = pair
        batch.markEdited()
        listSlot.pointee = grown
        countSlot.pointee = n + 1
    }

    /// Removes attribute `i`, keeping the order of the rest.
    public func remove(at i: Int) {
        let n = count
        precondition(i >= 0 && i < n, "attribute index out of range")
        batch.markEdited()
        let base = listSlot.pointee!
        (base + i).update(from: base + i + 1, count: n - i - 1)
        countSlot.pointee = n - 1
    }

    /// Removes the attribute named `key`; true when there was one.
    @discardableResult
    public func remove(_ key: String) -> Bool {
        guard let i = index(of: key) else { return false }
        remove(at: i)
        return true
    }

    /// Removes every attribute `shouldRemove` picks; returns how many.
    @discardableResult
    public func removeAll(where shouldRemove: (KeyValueView) throws -> Bool) rethrows -> Int {
        let n = count
        guard n > 0 else { return 0 }
        let base = listSlot.pointee!
        var kept = 0
        for i in 0..<n {
            if try shouldRemove(KeyValueView(base[i]!)) { continue }
            base[kept] = base[i]
            kept += 1
        }
        if kept != n {
            batch.markEdited()
            countSlot.pointee = kept
        }
        return n - kept
    }

    /// Renames attribute `i` (the `extract`/`convert` helpers keep values, move keys).
    public func rename(at i: Int, to key: String) throws(OTLPEditError) {
        let pair = listSlot.pointee![i]!
        let data = try batch.arena.binary(Array(key.utf8))
        batch.markEdited()
        pair.pointee.key = data
    }

    static func equal(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    }
}

/// One value (`AnyValue`) of a batch being edited: an attribute's value, a log body,
/// an element of an array or map, changed in place.
public struct AnyValueEditor {
    let batch: OTLPBatch
    let raw: UnsafeMutablePointer<CAnyValue>

    public var view: AnyValueView { AnyValueView(raw) }

    /// Replaces the value.
    public func set(_ value: OTLPValue) throws(OTLPEditError) {
        // Written into a scratch value first: a failure half-way leaves the old one.
        let scratch = try batch.arena.message(sluice_any_value_descriptor(), as: CAnyValue.self)
        try batch.arena.write(value, into: scratch)
        batch.markEdited()
        raw.pointee = scratch.pointee
    }

    /// Makes the value the string `bytes` (the redaction and hashing fast path: no
    /// Swift array on the way).
    public func setString(_ bytes: UnsafeBufferPointer<UInt8>) throws(OTLPEditError) {
        let data = try batch.arena.binary(bytes)
        batch.markEdited()
        raw.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE
        raw.pointee.string_value = data
    }

    /// Makes the value the integer `value` (the integrity chain's sequence number).
    public func setInt(_ value: Int64) {
        batch.markEdited()
        raw.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE
        raw.pointee.int_value = value
    }

    /// The elements of an array value, each editable (empty for other kinds).
    public var elements: [AnyValueEditor] {
        guard raw.pointee.value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE,
              let array = raw.pointee.array_value, let values = array.pointee.values else { return [] }
        return (0..<array.pointee.n_values).compactMap { values[$0].map { AnyValueEditor(batch: batch, raw: $0) } }
    }

    /// The entries of a map value as an attribute list (nil for other kinds).
    public var map: AttributesEditor? {
        guard raw.pointee.value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE,
              let list = raw.pointee.kvlist_value else { return nil }
        return AttributesEditor(batch, list, count: \.n_values, list: \.values)
    }
}
