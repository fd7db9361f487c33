import COTLP
import Foundation
import Testing
@testable import SluiceOTLP

/// `LogsProtobufWriter` must write exactly protobuf-c's bytes for every tree it
/// accepts, and refuse the trees protobuf-c packs differently (the caller then uses
/// protobuf-c). Every comparison here is against `protobuf_c_message_pack` on the
/// same tree.
@Suite struct LogsProtobufWriterTests {
    // MARK: The schema the writer assumes is the generated one

    /// The writer hard-codes field numbers, types and the order of fields; the
    /// descriptors protobuf-c packs from are the truth. Every message reachable
    /// from ExportLogsServiceRequest, with every field it has.
    @Test func theDescriptorsHaveExactlyTheFieldsTheWriterWrites() {
        let expected: [String: [String]] = [
            "ExportLogsServiceRequest": ["1 resource_logs repeated message"],
            "ResourceLogs": ["1 resource none message", "2 scope_logs repeated message", "3 schema_url none bytes"],
            "Resource": ["1 attributes repeated message", "2 dropped_attributes_count none uint32", "3 entity_refs repeated message"],
            "EntityRef": ["1 schema_url none bytes", "2 type none bytes", "3 id_keys repeated bytes", "4 description_keys repeated bytes"],
            "ScopeLogs": ["1 scope none message", "2 log_records repeated message", "3 schema_url none bytes"],
            "InstrumentationScope": ["1 name none bytes", "2 version none bytes", "3 attributes repeated message", "4 dropped_attributes_count none uint32"],
            "LogRecord": [
                "1 time_unix_nano none fixed64", "2 severity_number none enum", "3 severity_text none bytes", "5 body none message",
                "6 attributes repeated message", "7 dropped_attributes_count none uint32", "8 flags none fixed32", "9 trace_id none bytes",
                "10 span_id none bytes", "11 observed_time_unix_nano none fixed64", "12 event_name none bytes",
            ],
            "KeyValue": ["1 key none bytes", "2 value none message", "3 key_strindex none int32"],
            "AnyValue": [
                "1 string_value none bytes oneof", "2 bool_value none bool oneof", "3 int_value none int64 oneof", "4 double_value none double oneof",
                "5 array_value none message oneof", "6 kvlist_value none message oneof", "7 bytes_value none bytes oneof",
                "8 string_value_strindex none int32 oneof",
            ],
            "ArrayValue": ["1 values repeated message"],
            "KeyValueList": ["1 values repeated message"],
        ]
        var found: [String: [String]] = [:]
        var queue = [sluice_logs_request_descriptor()!]
        while let descriptor = queue.popLast() {
            let name = String(cString: descriptor.pointee.short_name)
            guard found[name] == nil else { continue }
            var fields: [String] = []
            for i in 0..<Int(descriptor.pointee.n_fields) {
                let field = descriptor.pointee.fields[i]
                fields.append("\(field.id) \(String(cString: field.name)) \(Self.words(field))")
                if field.type == PROTOBUF_C_TYPE_MESSAGE {
                    queue.append(field.descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self))
                }
            }
            found[name] = fields
        }
        #expect(found == expected)
    }

    static func words(_ field: ProtobufCFieldDescriptor) -> String {
        let label = switch field.label {
        case PROTOBUF_C_LABEL_NONE: "none"
        case PROTOBUF_C_LABEL_REPEATED: "repeated"
        case PROTOBUF_C_LABEL_OPTIONAL: "optional"
        default: "required"
        }
        let type = switch field.type {
        case PROTOBUF_C_TYPE_MESSAGE: "message"
        case PROTOBUF_C_TYPE_BYTES: "bytes"
        case PROTOBUF_C_TYPE_STRING: "string"
        case PROTOBUF_C_TYPE_UINT32: "uint32"
        case PROTOBUF_C_TYPE_INT32: "int32"
        case PROTOBUF_C_TYPE_INT64: "int64"
        case PROTOBUF_C_TYPE_FIXED64: "fixed64"
        case PROTOBUF_C_TYPE_FIXED32: "fixed32"
        case PROTOBUF_C_TYPE_ENUM: "enum"
        case PROTOBUF_C_TYPE_BOOL: "bool"
        case PROTOBUF_C_TYPE_DOUBLE: "double"
        default: "type \(field.type.rawValue)"
        }
        var flags = ""
        if field.flags & UInt32(PROTOBUF_C_FIELD_FLAG_ONEOF.rawValue) != 0 { flags += " oneof" }
        if field.flags & UInt32(PROTOBUF_C_FIELD_FLAG_PACKED.rawValue) != 0 { flags += " packed" }
        return "\(label) \(type)\(flags)"
    }

    // MARK: Requests as OTLP/JSON decodes them

    @Test func theFixtureRequestsPackAsProtobufCPacksThem() throws {
        let fromJSON = try OTLPBatch.decode(json: Payloads.fixture("logs.json"), signal: .logs)
        try expectProtobufCBytes(fromJSON)
        let fromProtobuf = try OTLPBatch.decode(protobuf: Payloads.fixture("logs.pb"), signal: .logs)
        try expectProtobufCBytes(fromProtobuf)
        try expectProtobufCBytes(OTLPBatch.decode(json: Array(Payloads.gatewayEventJSON.utf8), signal: .logs))
    }

    @Test func everyValueKindAndEveryDefault() throws {
        let json = #"""
        {"resourceLogs":[
          {"scopeLogs":[{"logRecords":[{}]}]},
          {"resource":{},"scopeLogs":[{"scope":{},"logRecords":[{"body":{}}]}],"schemaUrl":""},
          {"resource":{"attributes":[],"droppedAttributesCount":4294967295},"schemaUrl":"https://example.com/r",
           "scopeLogs":[
             {"scope":{"name":"","version":"v","attributes":[{"key":"s","value":{"boolValue":false}}],"droppedAttributesCount":1},
              "schemaUrl":"https://example.com/s",
              "logRecords":[
                {"timeUnixNano":"18446744073709551615","observedTimeUnixNano":"1","severityNumber":24,"severityText":"FATAL4",
                 "eventName":"e","traceId":"00000000000000000000000000000001","spanId":"ffffffffffffffff","flags":4294967295,
                 "droppedAttributesCount":300,"body":{"stringValue":""},
                 "attributes":[
                   {"key":"s.empty","value":{"stringValue":""}},
                   {"key":"b.false","value":{"boolValue":false}},{"key":"b.true","value":{"boolValue":true}},
                   {"key":"i.zero","value":{"intValue":"0"}},{"key":"i.neg","value":{"intValue":"-1"}},
                   {"key":"i.min","value":{"intValue":"-9223372036854775808"}},{"key":"i.big","value":{"intValue":"300"}},
                   {"key":"d.zero","value":{"doubleValue":0}},{"key":"d.negzero","value":{"doubleValue":-0.0}},
                   {"key":"d.nan","value":{"doubleValue":"NaN"}},{"key":"d.inf","value":{"doubleValue":"-Infinity"}},
                   {"key":"bytes.empty","value":{"bytesValue":""}},{"key":"bytes","value":{"bytesValue":"AAE="}},
                   {"key":"a.empty","value":{"arrayValue":{}}},{"key":"m.empty","value":{"kvlistValue":{}}},
                   {"key":"a.nested","value":{"arrayValue":{"values":[{"arrayValue":{"values":[{"arrayValue":{}},{}]}},{"kvlistValue":{"values":[{"key":"","value":{}}]}}]}}},
                   {"key":"unset","value":{}},
                   {"key":"","value":{"stringValue":"\u0000"}}
                 ]},
                {"attributes":[]},
                {"severityNumber":1,"body":{"kvlistValue":{"values":[{"key":"k","value":{"arrayValue":{"values":[{"intValue":"7"}]}}}]}}}
              ]},
             {"logRecords":[]}
           ]}
        ]}
        """#
        let batch = try OTLPBatch.decode(json: Array(json.utf8), signal: .logs)
        try expectProtobufCBytes(batch)
        #expect(batch.itemCount == 5)
    }

    @Test func anEmptyRequestIsNoBytes() throws {
        let batch = try #require(OTLPBatch.empty(.logs))
        #expect(try #require(batch.withPackedLogs { Array($0) }).isEmpty)
        #expect(batch.encodeProtobuf().isEmpty)
    }

    // MARK: Trees only editing (or a hand-made protobuf) can make

    @Test func editedRecordsPackAsProtobufCPacksThem() throws {
        let batch = try OTLPBatch.decode(json: Payloads.fixture("logs.json"), signal: .logs)
        try batch.edit { editor in
            try editor.forEachResource { try $0.upsert("k8s.pod.name", .text("gw-0")) }
            var n = 0
            try editor.forEachLogRecord { record in
                n += 1
                let attributes = record.attributes
                try attributes.append([(key: "sluice.seq", value: .int(Int64(n))), (key: "sluice.hash", value: .bytes([]))])
                try attributes.upsert("user_id", .text("[redacted]"))
                try attributes.upsert("nested", .map([OTLPKeyValue("d", .double(-0.0)), OTLPKeyValue("n", .double(.nan)), OTLPKeyValue("a", .array([.empty, .bool(false), .int(0)]))]))
                attributes.remove("str")
                if let i = attributes.index(of: "body.index") { try attributes.value(at: i).setInt(-Int64(n)) }
                if n % 3 == 0 { try record.setBody(.array([.text(""), .map([])])) }
                if n % 4 == 0 { try record.setSeverity(number: -3, text: "") }
                if n % 5 == 0, let body = record.body { try "masked".utf8.withContiguousStorageIfAvailable { try body.setString($0) } }
            }
            editor.removeLogRecords { $0.view.eventName.equals("user.login") || $0.view.severityNumber == 17 }
        }
        #expect(batch.isEdited)
        try expectProtobufCBytes(batch)
        // And what the disk log stores reads back as the edit.
        let stored = batch.withProtobuf { Array($0) }
        let reread = try OTLPBatch.decode(protobuf: stored, signal: .logs)
        #expect(reread.encodeProtobuf() == stored)
        #expect(reread.withLogs { $0.records.allSatisfy { $0.record.attributes["sluice.seq"] != nil } } == true)
    }

    /// Pointers set directly: a oneof case whose message is NULL, a key without a
    /// value, negative `int32` fields (ten bytes), the string-index members.
    @Test func structsNoDecoderProduces() throws {
        let batch = try OTLPBatch.decode(json: Array(Payloads.gatewayEventJSON.utf8), signal: .logs)
        let record = try #require(batch.withLogs { $0.resourceLogs[0].scopeLogs[0].logRecords[0].raw })
        let attributes = try #require(record.pointee.attributes)
        attributes[0]!.pointee.value = nil
        attributes[1]!.pointee.key_strindex = -7
        attributes[2]!.pointee.key_strindex = 300
        attributes[3]!.pointee.value!.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE_STRINDEX
        attributes[3]!.pointee.value!.pointee.string_value_strindex = -1
        attributes[4]!.pointee.value!.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE
        attributes[4]!.pointee.value!.pointee.array_value = nil
        attributes[5]!.pointee.value!.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE
        attributes[5]!.pointee.value!.pointee.kvlist_value = nil
        record.pointee.severity_number = Opentelemetry__Proto__Logs__V1__SeverityNumber(rawValue: UInt32(bitPattern: Int32.min))
        record.pointee.body!.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE
        record.pointee.body!.pointee.bool_value = 2  // protobuf-c writes any non-zero int as 1
        try expectProtobufCBytes(batch)
    }

    /// A Resource with entity_refs (no JSON reader here parses them) and key
    /// string indexes, as protobuf.
    @Test func entityRefsAndStringIndexesFromProtobuf() throws {
        let entity = Payloads.field(1, Array("https://s".utf8)) + Payloads.field(2, Array("k8s.pod".utf8))
            + Payloads.field(3, Array("k8s.pod.uid".utf8)) + Payloads.field(3, []) + Payloads.field(4, Array("k8s.pod.name".utf8))
        let keyValue = Payloads.field(2, [0x40, 0x05]) + [0x18] + Payloads.varint(UInt64(bitPattern: -2))
        let resource = Payloads.field(1, Payloads.field(1, Array("a".utf8))) + [0x10, 0x02] + Payloads.field(3, entity) + Payloads.field(3, [])
        let record = Payloads.field(6, keyValue)
        let request = Payloads.field(1, Payloads.field(1, resource) + Payloads.field(2, Payloads.field(2, record)))
        let batch = try OTLPBatch.decode(protobuf: request, signal: .logs)
        try expectProtobufCBytes(batch)
        #expect(batch.encodeProtobuf() == request)
    }

    // MARK: What the writer leaves to protobuf-c

    @Test func unknownFieldsAnywhereFallBackToProtobufCAndRoundTrip() throws {
        let unknown: [UInt8] = [0xA0, 0x01, 0x05]  // field 20, varint 5
        let nestedKeyValue = Payloads.field(1, Array("k".utf8)) + unknown
        let value = Payloads.field(6, Payloads.field(1, nestedKeyValue))  // AnyValue { kvlist_value { values } }
        let inKeyValue = Payloads.field(6, Payloads.field(1, Array("m".utf8)) + Payloads.field(2, value))
        let inRecord = Payloads.field(5, Payloads.field(1, Array("x".utf8))) + unknown
        for record in [inRecord, inKeyValue] {
            let request = Payloads.field(1, Payloads.field(2, Payloads.field(2, record)))
            let batch = try OTLPBatch.decode(protobuf: request, signal: .logs)
            #expect(batch.withPackedLogs { _ in true } == nil)
            let packed = batch.encodeProtobuf()
            #expect(packed == OTLPBatch.packWithProtobufC(batch.message))
            #expect(packed == request)
            #expect(try OTLPBatch.decode(protobuf: packed, signal: .logs).encodeProtobuf() == request)
            #expect(batch.withProtobuf { Array($0) } == request)
        }
    }

    @Test func anAnyValueCaseOutsideTheSchemaFallsBack() throws {
        let batch = try OTLPBatch.decode(json: Array(Payloads.gatewayEventJSON.utf8), signal: .logs)
        let record = try #require(batch.withLogs { $0.resourceLogs[0].scopeLogs[0].logRecords[0].raw })
        record.pointee.body!.pointee.value_case = Opentelemetry__Proto__Common__V1__AnyValue__ValueCase(rawValue: 99)
        #expect(batch.withPackedLogs { _ in true } == nil)
        #expect(batch.encodeProtobuf() == OTLPBatch.packWithProtobufC(batch.message))
    }

    /// protobuf-c dereferences every element of a repeated message field, so a NULL
    /// one is refused here rather than written some other way.
    @Test func aNullElementIsRefused() throws {
        let batch = try OTLPBatch.decode(json: Array(Payloads.gatewayEventJSON.utf8), signal: .logs)
        let record = try #require(batch.withLogs { $0.resourceLogs[0].scopeLogs[0].logRecords[0].raw })
        record.pointee.attributes![2] = nil
        #expect(batch.withPackedLogs { _ in true } == nil)
        record.pointee.attributes = nil
        #expect(batch.withPackedLogs { _ in true } == nil)
    }

    // MARK: Growth and breadth

    @Test func aBufferGuessedTooSmallGrows() throws {
        let batch = try OTLPBatch.decode(json: Payloads.fixture("logs.json"), signal: .logs)
        let request = UnsafeRawPointer(batch.message).assumingMemoryBound(to: CLogsRequest.self)
        let packed = LogsProtobufWriter.withPacked(request, capacity: 1) { Array($0) }
        #expect(packed == OTLPBatch.packWithProtobufC(batch.message))
        #expect((packed?.count ?? 0) > 4096)
    }

    /// Random requests (seeded, so a failure repeats): every shape the JSON reader
    /// accepts, then random edits, each compared with protobuf-c.
    @Test func randomRequestsPackAsProtobufCPacksThem() throws {
        var random = SplitMix64(seed: 0x5EED_0F_5_1A1CE)
        for round in 0..<300 {
            let json = RandomLogsJSON.request(&random)
            let batch = try OTLPBatch.decode(json: Array(json.utf8), signal: .logs)
            try expectProtobufCBytes(batch, "round \(round): \(json)")
            try RandomLogsJSON.edit(batch, &random)
            try expectProtobufCBytes(batch, "round \(round), edited: \(json)")
        }
    }

    // MARK: Helpers

    func expectProtobufCBytes(_ batch: OTLPBatch, _ comment: String = "", sourceLocation: SourceLocation = #_sourceLocation) throws {
        let expected = OTLPBatch.packWithProtobufC(batch.message)
        let packed = try #require(batch.withPackedLogs { Array($0) }, "the writer refused the tree. \(comment)", sourceLocation: sourceLocation)
        if packed != expected {
            let at = (0..<min(packed.count, expected.count)).first { packed[$0] != expected[$0] } ?? min(packed.count, expected.count)
            Issue.record("\(packed.count) bytes against protobuf-c's \(expected.count); first difference at byte \(at). \(comment)", sourceLocation: sourceLocation)
        }
        #expect(batch.encodeProtobuf() == expected, sourceLocation: sourceLocation)
    }
}

/// Random OTLP/JSON logs requests and random edits of them.
enum RandomLogsJSON {
    static func request(_ random: inout SplitMix64) -> String {
        let resources = (0..<Int.random(in: 0...3, using: &random)).map { _ in resourceLogs(&random) }
        return #"{"resourceLogs":[\#(resources.joined(separator: ","))]}"#
    }

    static func resourceLogs(_ random: inout SplitMix64) -> String {
        var members: [String] = []
        let full = #"{"attributes":\#(attributes(&random, depth: 0))\#(dropped(&random))}"#
        if let resource = absentEmptyOrFull("resource", &random, full: full) { members.append(resource) }
        let scopes = (0..<Int.random(in: 0...3, using: &random)).map { _ in scopeLogs(&random) }
        members.append(#""scopeLogs":[\#(scopes.joined(separator: ","))]"#)
        if Bool.random(using: &random) { members.append(#""schemaUrl":\#(string(&random))"#) }
        return "{\(members.shuffled(using: &random).joined(separator: ","))}"
    }

    static func scopeLogs(_ random: inout SplitMix64) -> String {
        var members: [String] = []
        let full = #"{"name":\#(string(&random)),"version":\#(string(&random)),"attributes":\#(attributes(&random, depth: 1))\#(dropped(&random))}"#
        if let scope = absentEmptyOrFull("scope", &random, full: full) { members.append(scope) }
        let records = (0..<Int.random(in: 0...4, using: &random)).map { _ in logRecord(&random) }
        members.append(#""logRecords":[\#(records.joined(separator: ","))]"#)
        if Bool.random(using: &random) { members.append(#""schemaUrl":\#(string(&random))"#) }
        return "{\(members.joined(separator: ","))}"
    }

    /// A message member left out, present and empty, or `full`.
    static func absentEmptyOrFull(_ name: String, _ random: inout SplitMix64, full: String) -> String? {
        switch Int.random(in: 0...2, using: &random) {
        case 0: nil
        case 1: #""\#(name)":{}"#
        default: #""\#(name)":\#(full)"#
        }
    }

    static func logRecord(_ random: inout SplitMix64) -> String {
        var members: [String] = []
        func maybe(_ member: @autoclosure () -> String) { if Bool.random(using: &random) { members.append(member()) } }
        maybe(#""timeUnixNano":"\#(UInt64.random(in: 0...UInt64.max, using: &random) >> UInt64.random(in: 0...63, using: &random))""#)
        maybe(#""observedTimeUnixNano":"\#(UInt64.random(in: 0...3, using: &random))""#)
        maybe(#""severityNumber":\#(Int.random(in: 0...24, using: &random))"#)
        maybe(#""severityText":\#(string(&random))"#)
        maybe(#""body":\#(value(&random, depth: 1))"#)
        maybe(#""attributes":\#(attributes(&random, depth: 0))"#)
        maybe(#""droppedAttributesCount":\#(UInt32.random(in: 0...UInt32.max, using: &random) >> UInt32.random(in: 0...31, using: &random))"#)
        maybe(#""flags":\#(UInt32.random(in: 0...1, using: &random))"#)
        maybe(#""traceId":"\#(hex(Bool.random(using: &random) ? 16 : 0, &random))""#)
        maybe(#""spanId":"\#(hex(Bool.random(using: &random) ? 8 : 0, &random))""#)
        maybe(#""eventName":\#(string(&random))"#)
        return "{\(members.shuffled(using: &random).joined(separator: ","))}"
    }

    static func attributes(_ random: inout SplitMix64, depth: Int) -> String {
        let pairs = (0..<Int.random(in: 0...6, using: &random)).map { _ in
            Int.random(in: 0...9, using: &random) == 0 ? #"{"key":\#(string(&random))}"# : #"{"key":\#(string(&random)),"value":\#(value(&random, depth: depth))}"#
        }
        return "[\(pairs.joined(separator: ","))]"
    }

    static func value(_ random: inout SplitMix64, depth: Int) -> String {
        switch Int.random(in: 0...(depth < 3 ? 8 : 6), using: &random) {
        case 0: return "{}"
        case 1: return #"{"stringValue":\#(string(&random))}"#
        case 2: return #"{"boolValue":\#(Bool.random(using: &random))}"#
        case 3: return #"{"intValue":"\#(Int64.random(in: Int64.min...Int64.max, using: &random) >> Int64.random(in: 0...63, using: &random))"}"#
        case 4: return #"{"doubleValue":\#(["0", "-0.0", "1.5", "-2.25e-300", "\"NaN\"", "\"Infinity\"", "1e308"].randomElement(using: &random)!)}"#
        case 5:
            let bytes = (0..<Int.random(in: 0...5, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            return #"{"bytesValue":"\#(Data(bytes).base64EncodedString())"}"#
        case 6: return #"{"stringValue":""}"#
        case 7:
            let values = (0..<Int.random(in: 0...3, using: &random)).map { _ in value(&random, depth: depth + 1) }
            return Bool.random(using: &random) && values.isEmpty ? #"{"arrayValue":{}}"# : #"{"arrayValue":{"values":[\#(values.joined(separator: ","))]}}"#
        default:
            return #"{"kvlistValue":{"values":\#(attributes(&random, depth: depth + 1))}}"#
        }
    }

    static func string(_ random: inout SplitMix64) -> String {
        let pieces = ["a", "key", "é", "東京", "🚀", "\\u0000", "\\n", " ", "user@example.com", String(repeating: "x", count: 130)]
        return "\"" + (0..<Int.random(in: 0...3, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined() + "\""
    }

    static func dropped(_ random: inout SplitMix64) -> String {
        Bool.random(using: &random) ? #","droppedAttributesCount":\#(Int.random(in: 0...200, using: &random))"# : ""
    }

    static func hex(_ count: Int, _ random: inout SplitMix64) -> String {
        (0..<count).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &random)) }.joined()
    }

    /// Edits a processor could make: values replaced (string, int, double, nested),
    /// attributes added and removed, bodies set, records removed.
    static func edit(_ batch: OTLPBatch, _ random: inout SplitMix64) throws {
        var choices = random
        defer { random = choices }
        try batch.edit { editor in
            try editor.forEachResource { resource in
                if Bool.random(using: &choices) { try resource.upsert("host.name", .text("h")) }
            }
            try editor.forEachLogRecord { record in
                let attributes = record.attributes
                switch Int.random(in: 0...6, using: &choices) {
                case 0: try attributes.append(Array("added".utf8), .double(Bool.random(using: &choices) ? -0.0 : .nan))
                case 1: if attributes.count > 0 { try attributes.value(at: 0).set(.map([OTLPKeyValue("x", .array([.empty, .int(-1)]))])) }
                case 2: if attributes.count > 0 { attributes.remove(at: attributes.count - 1) }
                case 3: try record.setBody(.bytes([]))
                case 4: try record.setSeverity(number: Int32.random(in: -2...30, using: &choices), text: Bool.random(using: &choices) ? "" : "W")
                case 5: if attributes.count > 0 { try attributes.value(at: attributes.count / 2).setInt(0) }
                default: break
                }
            }
            editor.removeLogRecords { _ in Int.random(in: 0...4, using: &choices) == 0 }
        }
    }
}
