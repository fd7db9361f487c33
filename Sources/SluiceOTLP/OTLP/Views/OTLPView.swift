import COTLP
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Views read protobuf-c's structs in place. A view is a pointer and nothing else:
// it is valid only while the `OTLPBatch` that owns the arena is alive, which is why
// batches hand views out inside `withLogs { … }` / `withTraces { … }` closures.

public typealias CAnyValue = Opentelemetry__Proto__Common__V1__AnyValue
public typealias CKeyValue = Opentelemetry__Proto__Common__V1__KeyValue
public typealias CArrayValue = Opentelemetry__Proto__Common__V1__ArrayValue
public typealias CKeyValueList = Opentelemetry__Proto__Common__V1__KeyValueList
public typealias CScope = Opentelemetry__Proto__Common__V1__InstrumentationScope
public typealias CResource = Opentelemetry__Proto__Resource__V1__Resource
typealias CEntityRef = Opentelemetry__Proto__Common__V1__EntityRef
public typealias CLogsRequest = Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest
public typealias CResourceLogs = Opentelemetry__Proto__Logs__V1__ResourceLogs
public typealias CScopeLogs = Opentelemetry__Proto__Logs__V1__ScopeLogs
public typealias CLogRecord = Opentelemetry__Proto__Logs__V1__LogRecord
public typealias CTracesRequest = Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
public typealias CResourceSpans = Opentelemetry__Proto__Trace__V1__ResourceSpans
public typealias CScopeSpans = Opentelemetry__Proto__Trace__V1__ScopeSpans
public typealias CSpan = Opentelemetry__Proto__Trace__V1__Span
public typealias CSpanEvent = Opentelemetry__Proto__Trace__V1__Span__Event
public typealias CSpanLink = Opentelemetry__Proto__Trace__V1__Span__Link
public typealias CStatus = Opentelemetry__Proto__Trace__V1__Status
public typealias CMetricsRequest = Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest

/// A view over one protobuf-c message struct.
public protocol OTLPMessageView {
    associatedtype CMessage
    init(_ raw: UnsafeMutablePointer<CMessage>)
}

/// A repeated message field (`T **field; size_t n_field`) as a collection of views.
public struct RepeatedMessageView<Element: OTLPMessageView>: RandomAccessCollection {
    let base: UnsafeMutablePointer<UnsafeMutablePointer<Element.CMessage>?>?
    public let count: Int

    init(_ base: UnsafeMutablePointer<UnsafeMutablePointer<Element.CMessage>?>?, _ count: Int) {
        self.base = base
        self.count = base == nil ? 0 : count
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    public subscript(position: Int) -> Element {
        precondition(position >= 0 && position < count, "index out of range")
        return Element(base![position]!)
    }
}

/// A protobuf string: UTF-8 (not checked) in the arena, with its length. Strings
/// are generated as bytes (protobuf-c's `string_as_bytes`, scripts/generate-proto.sh),
/// so a value holding U+0000 is carried whole and nothing runs strlen.
public struct StringView: Equatable, CustomStringConvertible {
    let raw: ProtobufCBinaryData

    init(_ raw: ProtobufCBinaryData) { self.raw = raw }

    /// The bytes.
    public var utf8: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: raw.data, count: raw.len) }

    public var isEmpty: Bool { raw.len == 0 }

    /// A Swift string; ill-formed UTF-8 is repaired with U+FFFD.
    public var string: String { String(decoding: utf8, as: UTF8.self) }
    public var description: String { string }

    public static func == (lhs: StringView, rhs: StringView) -> Bool {
        let a = lhs.utf8, b = rhs.utf8
        return a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    }

    public func equals(_ other: StaticString) -> Bool {
        let a = utf8
        return a.count == other.utf8CodeUnitCount && (a.count == 0 || memcmp(a.baseAddress!, other.utf8Start, a.count) == 0)
    }

    public func equals(_ other: String) -> Bool {
        var other = other
        return other.withUTF8 { b in
            let a = utf8
            return a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
        }
    }
}

/// protobuf-c `bytes`: trace and span ids, `bytesValue`.
public struct BytesView: Equatable {
    let raw: ProtobufCBinaryData

    public var bytes: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: raw.data, count: raw.len) }
    public var isEmpty: Bool { raw.len == 0 }
    public var array: [UInt8] { Array(bytes) }

    /// Lowercase hex, as trace and span ids are written everywhere; "" when empty.
    public var hex: String {
        var out = JSONOutput(reservingCapacity: raw.len * 2)
        for b in bytes {
            out.append(JSONOutput.hexDigits[Int(b >> 4)])
            out.append(JSONOutput.hexDigits[Int(b & 0xF)])
        }
        return String(decoding: out.bytes, as: UTF8.self)
    }

    /// An id is valid when it has the right length and is not all zeros.
    public var isValidTraceID: Bool { raw.len == 16 && bytes.contains { $0 != 0 } }
    public var isValidSpanID: Bool { raw.len == 8 && bytes.contains { $0 != 0 } }

    public static func == (lhs: BytesView, rhs: BytesView) -> Bool { lhs.bytes.elementsEqual(rhs.bytes) }
}
