import COTLP

/// The wire and JSON facts of one protobuf-c message type, read once from its
/// descriptor. The protobuf nesting check, the OTLP/JSON reader and the OTLP/JSON
/// writer all walk messages through these, so one table serves all three.
final class MessageSchema: @unchecked Sendable {
    // @unchecked: `fields` is filled once while `OTLPSchemas.shared` is built (the
    // message graph has cycles: AnyValue → ArrayValue → AnyValue) and never changes
    // after that global is published.
    let descriptor: UnsafePointer<ProtobufCMessageDescriptor>
    let name: String
    fileprivate(set) var fields: [FieldSchema] = []
    /// `fieldIndexByNumber[n]` is the index in `fields` of field number `n`, or -1.
    fileprivate(set) var fieldIndexByNumber: [Int16] = []

    init(_ descriptor: UnsafePointer<ProtobufCMessageDescriptor>) {
        self.descriptor = descriptor
        self.name = String(cString: descriptor.pointee.name)
    }

    var sizeofMessage: Int { descriptor.pointee.sizeof_message }

    /// This schema's row in `OTLPSchemas.shared.wireTable`.
    fileprivate(set) var index: Int = 0

    @inline(__always)
    func field(number: UInt64) -> FieldSchema? {
        guard number < UInt64(fieldIndexByNumber.count) else { return nil }
        let index = fieldIndexByNumber[Int(number)]
        return index < 0 ? nil : fields[Int(index)]
    }
}

enum FieldType: Sendable {
    case int32, sint32, sfixed32, int64, sint64, sfixed64
    case uint32, fixed32, uint64, fixed64
    case float, double, bool, enumeration, string, bytes, message

    /// Bytes one element takes in a protobuf-c struct or repeated array.
    var storageSize: Int {
        switch self {
        case .int32, .sint32, .sfixed32, .uint32, .fixed32, .float, .bool, .enumeration: 4
        case .int64, .sint64, .sfixed64, .uint64, .fixed64, .double: 8
        case .message: MemoryLayout<UnsafeRawPointer>.size
        case .string, .bytes: MemoryLayout<ProtobufCBinaryData>.size
        }
    }

    /// OTLP/JSON writes 64-bit integers as decimal strings.
    var is64BitInteger: Bool {
        switch self {
        case .int64, .sint64, .sfixed64, .uint64, .fixed64: true
        default: false
        }
    }
}

struct FieldSchema: @unchecked Sendable {
    // @unchecked: the pointers point at protoc-c's static, immutable descriptors.
    let number: UInt32
    let protoName: [UInt8]
    let jsonName: [UInt8]
    let type: FieldType
    let isRepeated: Bool
    let isOneofMember: Bool
    /// A proto2-style `has_` flag (protobuf-c's LABEL_OPTIONAL outside a oneof).
    let hasPresenceFlag: Bool
    let offset: Int
    let quantifierOffset: Int
    /// Trace and span ids are hex in OTLP/JSON, not base64.
    /// (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding)
    let isHexID: Bool
    /// The only non-empty length an id may have: 16 bytes for trace ids, 8 for span ids.
    var idLength: Int { protoName.last == UInt8(ascii: "d") && protoName.starts(with: "trace".utf8) ? 16 : 8 }
    let enumDescriptor: UnsafePointer<ProtobufCEnumDescriptor>?
    unowned(unsafe) let message: MessageSchema?
}

/// Every message type reachable from the OTLP requests and responses.
final class OTLPSchemas: @unchecked Sendable {
    // @unchecked: built once in `init`, read-only afterwards.
    static let shared = OTLPSchemas()

    private var byDescriptor: [UnsafeRawPointer: MessageSchema] = [:]

    let logsRequest: MessageSchema
    let tracesRequest: MessageSchema
    let metricsRequest: MessageSchema
    let logsResponse: MessageSchema
    let tracesResponse: MessageSchema
    let metricsResponse: MessageSchema
    let rpcStatus: MessageSchema

    private init() {
        var pending: [MessageSchema] = []
        var table: [UnsafeRawPointer: MessageSchema] = [:]
        func schema(for descriptor: UnsafePointer<ProtobufCMessageDescriptor>) -> MessageSchema {
            if let known = table[UnsafeRawPointer(descriptor)] { return known }
            let created = MessageSchema(descriptor)
            table[UnsafeRawPointer(descriptor)] = created
            pending.append(created)
            return created
        }
        logsRequest = schema(for: sluice_logs_request_descriptor())
        tracesRequest = schema(for: sluice_traces_request_descriptor())
        metricsRequest = schema(for: sluice_metrics_request_descriptor())
        logsResponse = schema(for: sluice_logs_response_descriptor())
        tracesResponse = schema(for: sluice_traces_response_descriptor())
        metricsResponse = schema(for: sluice_metrics_response_descriptor())
        rpcStatus = schema(for: sluice_rpc_status_descriptor())
        while let next = pending.popLast() {
            let d = next.descriptor.pointee
            var fields: [FieldSchema] = []
            var maxNumber: UInt32 = 0
            for i in 0..<Int(d.n_fields) {
                let f = d.fields[i]
                let name = Array(String(cString: f.name).utf8)
                var type = Self.fieldType(f.type)
                // Strings are generated as bytes (string_as_bytes, scripts/generate-proto.sh):
                // the fields the protos publish as `bytes` are the binary ones.
                if type == .bytes, !Self.binaryNames.contains(name) { type = .string }
                let child = type == .message ? schema(for: f.descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)) : nil
                let isOneof = (f.flags & UInt32(PROTOBUF_C_FIELD_FLAG_ONEOF.rawValue)) != 0
                fields.append(FieldSchema(
                    number: f.id,
                    protoName: name,
                    jsonName: Self.lowerCamelCase(name),
                    type: type,
                    isRepeated: f.label == PROTOBUF_C_LABEL_REPEATED,
                    isOneofMember: isOneof,
                    hasPresenceFlag: f.label == PROTOBUF_C_LABEL_OPTIONAL && !isOneof && type != .message && type != .string,
                    offset: Int(f.offset),
                    quantifierOffset: Int(f.quantifier_offset),
                    isHexID: type == .bytes && Self.hexIDNames.contains(name),
                    enumDescriptor: type == .enumeration ? f.descriptor.assumingMemoryBound(to: ProtobufCEnumDescriptor.self) : nil,
                    message: child
                ))
                maxNumber = max(maxNumber, f.id)
            }
            var index = [Int16](repeating: -1, count: Int(maxNumber) + 1)
            for (i, field) in fields.enumerated() { index[Int(field.number)] = Int16(i) }
            next.fields = fields
            next.fieldIndexByNumber = index
        }
        byDescriptor = table
        wireTable = WireTable(Array(table.values))
        jsonTable = JSONTable(Array(table.values))
    }

    /// The fields as the OTLP/JSON writer walks them: plain data in memory that is
    /// never freed (the schemas live as long as the process), a row per schema in
    /// `WireTable`'s order. Walking `MessageSchema.fields` instead retains each
    /// field's names and each nested schema: in issue 20's profile of the file
    /// exporter, swift_retain/release were 30 % of the process.
    struct JSONTable: @unchecked Sendable {
        // @unchecked: written once while `OTLPSchemas.shared` is built, read-only after.
        struct Field {
            let jsonName: UnsafeBufferPointer<UInt8>
            let number: UInt32
            let type: FieldType
            let isRepeated: Bool
            let isOneofMember: Bool
            let hasPresenceFlag: Bool
            let isHexID: Bool
            let offset: Int
            let quantifierOffset: Int
            /// The row of a message field's type, or -1.
            let child: Int
        }

        let rows: UnsafeBufferPointer<UnsafeBufferPointer<Field>>

        fileprivate init(_ schemas: [MessageSchema]) {
            let rows = UnsafeMutableBufferPointer<UnsafeBufferPointer<Field>>.allocate(capacity: schemas.count)
            for schema in schemas {
                let fields = UnsafeMutableBufferPointer<Field>.allocate(capacity: max(1, schema.fields.count))
                for (i, f) in schema.fields.enumerated() {
                    let name = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(1, f.jsonName.count))
                    _ = name.initialize(from: f.jsonName)
                    (fields.baseAddress! + i).initialize(to: Field(
                        jsonName: UnsafeBufferPointer(start: name.baseAddress, count: f.jsonName.count), number: f.number, type: f.type,
                        isRepeated: f.isRepeated, isOneofMember: f.isOneofMember, hasPresenceFlag: f.hasPresenceFlag, isHexID: f.isHexID,
                        offset: f.offset, quantifierOffset: f.quantifierOffset, child: f.message?.index ?? -1))
                }
                (rows.baseAddress! + schema.index).initialize(to: UnsafeBufferPointer(start: fields.baseAddress, count: schema.fields.count))
            }
            self.rows = UnsafeBufferPointer(rows)
        }
    }

    private(set) var jsonTable: JSONTable!

    /// The message graph as plain numbers, for the hot wire walk (no reference
    /// counting per field, unlike walking `MessageSchema` objects).
    struct WireTable: Sendable {
        /// Field numbers per row; fields above it are never messages.
        let stride: Int
        /// `children[row * stride + n]`: the row of field `n`'s message type, or one of
        /// the codes below for fields the walk checks without descending.
        let children: [Int16]
        static let notChecked: Int16 = -1
        /// A trace id: empty or 16 bytes.
        static let traceIDField: Int16 = -3
        /// A span id: empty or 8 bytes.
        static let spanIDField: Int16 = -4
        let names: [String]

        fileprivate init(_ schemas: [MessageSchema]) {
            let ordered = schemas.sorted { $0.name < $1.name }
            for (row, schema) in ordered.enumerated() { schema.index = row }
            stride = (ordered.map { $0.fieldIndexByNumber.count }.max() ?? 1)
            var children = [Int16](repeating: -1, count: stride * ordered.count)
            for schema in ordered {
                for field in schema.fields {
                    let slot = schema.index * stride + Int(field.number)
                    if field.type == .message {
                        children[slot] = Int16(field.message!.index)
                    } else if field.isHexID {
                        children[slot] = field.idLength == 16 ? Self.traceIDField : Self.spanIDField
                    }
                }
            }
            self.children = children
            names = ordered.map(\.name)
        }
    }

    private(set) var wireTable: WireTable!

    func schema(for descriptor: UnsafePointer<ProtobufCMessageDescriptor>) -> MessageSchema? {
        byDescriptor[UnsafeRawPointer(descriptor)]
    }

    func request(_ signal: OTLPSignal) -> MessageSchema {
        switch signal {
        case .logs: logsRequest
        case .traces: tracesRequest
        case .metrics: metricsRequest
        }
    }

    func response(_ signal: OTLPSignal) -> MessageSchema {
        switch signal {
        case .logs: logsResponse
        case .traces: tracesResponse
        case .metrics: metricsResponse
        }
    }

    private static let hexIDNames: Set<[UInt8]> = [Array("trace_id".utf8), Array("span_id".utf8), Array("parent_span_id".utf8)]
    /// The fields proto/ declares as `bytes`: ids, AnyValue's `bytes_value`, and
    /// google.rpc.Status's `details`. Every other protobuf-c BYTES field is a string.
    /// SchemaTests checks this list against proto/.
    static let binaryNames: Set<[UInt8]> = hexIDNames.union([Array("bytes_value".utf8), Array("details".utf8)])

    private static func lowerCamelCase(_ name: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var upperNext = false
        for c in name {
            if c == UInt8(ascii: "_") { upperNext = true; continue }
            if upperNext, c >= UInt8(ascii: "a"), c <= UInt8(ascii: "z") { out.append(c - 32) } else { out.append(c) }
            upperNext = false
        }
        return out
    }

    private static func fieldType(_ type: ProtobufCType) -> FieldType {
        switch type {
        case PROTOBUF_C_TYPE_INT32: .int32
        case PROTOBUF_C_TYPE_SINT32: .sint32
        case PROTOBUF_C_TYPE_SFIXED32: .sfixed32
        case PROTOBUF_C_TYPE_INT64: .int64
        case PROTOBUF_C_TYPE_SINT64: .sint64
        case PROTOBUF_C_TYPE_SFIXED64: .sfixed64
        case PROTOBUF_C_TYPE_UINT32: .uint32
        case PROTOBUF_C_TYPE_FIXED32: .fixed32
        case PROTOBUF_C_TYPE_UINT64: .uint64
        case PROTOBUF_C_TYPE_FIXED64: .fixed64
        case PROTOBUF_C_TYPE_FLOAT: .float
        case PROTOBUF_C_TYPE_DOUBLE: .double
        case PROTOBUF_C_TYPE_BOOL: .bool
        case PROTOBUF_C_TYPE_ENUM: .enumeration
        case PROTOBUF_C_TYPE_STRING: .string
        case PROTOBUF_C_TYPE_BYTES: .bytes
        default: .message
        }
    }
}
