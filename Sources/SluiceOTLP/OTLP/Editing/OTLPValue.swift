import COTLP

/// A value to write into a batch: an attribute value, a log body, an element of
/// an array or map. The owned counterpart of `AnyValueView`.
public indirect enum OTLPValue: Sendable, Equatable {
    case string([UInt8])
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case bytes([UInt8])
    case array([OTLPValue])
    case map([OTLPKeyValue])
    /// An `AnyValue` with no value set.
    case empty

    /// A string value from Swift text.
    public static func text(_ string: String) -> OTLPValue { .string(Array(string.utf8)) }

    /// A deep copy of what `view` holds.
    public init(_ view: AnyValueView) {
        switch view.value {
        case .string(let s): self = .string(Array(s.utf8))
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .bytes(let b): self = .bytes(b.array)
        case .array(let values): self = .array(values.map(OTLPValue.init))
        case .kvlist(let list): self = .map(list.map { OTLPKeyValue(key: Array($0.key.utf8), value: $0.value.map(OTLPValue.init) ?? .empty) })
        case .empty: self = .empty
        }
    }
}

/// One key and its value, for maps and attribute lists being built.
public struct OTLPKeyValue: Sendable, Equatable {
    public var key: [UInt8]
    public var value: OTLPValue

    public init(key: [UInt8], value: OTLPValue) {
        self.key = key
        self.value = value
    }

    public init(_ key: String, _ value: OTLPValue) {
        self.init(key: Array(key.utf8), value: value)
    }
}

/// An edit could not get the memory it needed (the batch's arena is at its cap, or
/// the system is out of memory). The batch is unchanged by the failed step; a
/// processor refuses the request so the client retries.
public struct OTLPEditError: Error, Sendable, CustomStringConvertible {
    public var description: String { "out of memory editing the request" }
}

// MARK: Writing values into an arena

extension OTLPArena {
    func binary(_ bytes: UnsafeBufferPointer<UInt8>) throws(OTLPEditError) -> ProtobufCBinaryData {
        guard let data = copyBinary(bytes) else { throw OTLPEditError() }
        return data
    }

    func binary(_ bytes: [UInt8]) throws(OTLPEditError) -> ProtobufCBinaryData {
        var result: Result<ProtobufCBinaryData, OTLPEditError> = .failure(OTLPEditError())
        bytes.withUnsafeBufferPointer { buffer in
            if let data = copyBinary(buffer) { result = .success(data) }
        }
        return try result.get()
    }

    func message<M>(_ descriptor: UnsafePointer<ProtobufCMessageDescriptor>, as: M.Type) throws(OTLPEditError) -> UnsafeMutablePointer<M> {
        guard let memory = newMessage(descriptor) else { throw OTLPEditError() }
        return memory.assumingMemoryBound(to: M.self)
    }

    /// An uninitialised array of `count` message pointers (protobuf-c's `T **`).
    func pointers<M>(_ count: Int, of: M.Type) throws(OTLPEditError) -> UnsafeMutablePointer<UnsafeMutablePointer<M>?> {
        guard let memory = allocate(max(count, 1) * MemoryLayout<UnsafeMutablePointer<M>?>.stride) else { throw OTLPEditError() }
        return memory.bindMemory(to: UnsafeMutablePointer<M>?.self, capacity: max(count, 1))
    }

    func keyValue(_ key: [UInt8], _ value: OTLPValue) throws(OTLPEditError) -> UnsafeMutablePointer<CKeyValue> {
        try keyValue(binary(key), value)
    }

    func keyValue(_ key: ProtobufCBinaryData, _ value: OTLPValue) throws(OTLPEditError) -> UnsafeMutablePointer<CKeyValue> {
        let pair = try message(sluice_key_value_descriptor(), as: CKeyValue.self)
        pair.pointee.key = key
        let any = try message(sluice_any_value_descriptor(), as: CAnyValue.self)
        try write(value, into: any)
        pair.pointee.value = any
        return pair
    }

    /// A `repeated KeyValue` holding `pairs`.
    func keyValues(_ pairs: [OTLPKeyValue]) throws(OTLPEditError) -> (UnsafeMutablePointer<UnsafeMutablePointer<CKeyValue>?>?, Int) {
        if pairs.isEmpty { return (nil, 0) }
        let list = try pointers(pairs.count, of: CKeyValue.self)
        for (i, pair) in pairs.enumerated() { list[i] = try keyValue(pair.key, pair.value) }
        return (list, pairs.count)
    }

    /// Sets `target` to `value`, replacing whatever it held (the old value's memory
    /// stays in the arena until the batch goes).
    func write(_ value: OTLPValue, into target: UnsafeMutablePointer<CAnyValue>) throws(OTLPEditError) {
        switch value {
        case .string(let bytes):
            let data = try binary(bytes)
            target.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE
            target.pointee.string_value = data
        case .bool(let b):
            target.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE
            target.pointee.bool_value = b ? 1 : 0
        case .int(let i):
            target.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE
            target.pointee.int_value = i
        case .double(let d):
            target.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE
            target.pointee.double_value = d
        case .bytes(let bytes):
            let data = try binary(bytes)
            target.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE
            target.pointee.bytes_value = data
        case .array(let values):
            let array = try message(sluice_array_value_descriptor(), as: CArrayValue.self)
            if !values.isEmpty {
                let list = try pointers(values.count, of: CAnyValue.self)
                for (i, element) in values.enumerated() {
                    let any = try message(sluice_any_value_descriptor(), as: CAnyValue.self)
                    try write(element, into: any)
                    list[i] = any
                }
                array.pointee.values = list
                array.pointee.n_values = values.count
            }
            target.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE
            target.pointee.array_value = array
        case .map(let pairs):
            let map = try message(sluice_key_value_list_descriptor(), as: CKeyValueList.self)
            (map.pointee.values, map.pointee.n_values) = try keyValues(pairs)
            target.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE
            target.pointee.kvlist_value = map
        case .empty:
            target.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE__NOT_SET
        }
    }
}
