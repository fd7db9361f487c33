import Foundation
import Testing
import SluiceCore
@testable import SluiceComponents

/// What the HEC encoder writes: `time`, metadata, flattened indexed fields, the
/// event in each fields_mode, spans, UTF-8 repair, and how events are cut into
/// payloads.
@Suite struct SplunkHECEncoderTests {
    // MARK: time

    @Test func timeIsSecondsWithThreeDecimals() throws {
        let cases: [(String, String)] = [
            ("1433188255500000000", "1433188255.500"),
            ("1433188255123456789", "1433188255.123"),
            ("1433188255123500000", "1433188255.124"),  // rounded to the millisecond
            ("1433188255999600000", "1433188256.000"),
            ("1000000", "0.001"),
            ("7", "0.000"),
        ]
        for (nanos, expected) in cases {
            let event = try firstEvent(logs(record: #""timeUnixNano":"\#(nanos)","body":{"stringValue":"x"}"#))
            #expect(timeText(event) == expected, "time_unix_nano \(nanos)")
        }
        // Observed time when the record has none; no time at all when neither is set.
        let observed = try firstEvent(logs(record: #""observedTimeUnixNano":"1700000000250000000","body":{"stringValue":"x"}"#))
        #expect(timeText(observed) == "1700000000.250")
        let none = try json(firstEvent(logs(record: #""body":{"stringValue":"x"}"#)))
        #expect(none["time"] == nil)
    }

    // MARK: fields

    @Test func attributesAreFlattenedIntoStringFields() throws {
        let attributes = """
        {"key":"event_id","value":{"stringValue":"evt-1"}},
        {"key":"action","value":{"stringValue":"block"}},
        {"key":"tokens","value":{"intValue":"-42"}},
        {"key":"cost","value":{"doubleValue":0.25}},
        {"key":"ratio","value":{"doubleValue":"NaN"}},
        {"key":"blocked","value":{"boolValue":true}},
        {"key":"raw","value":{"bytesValue":"AAH/"}},
        {"key":"rules","value":{"arrayValue":{"values":[{"stringValue":"email"},{"intValue":"7"},{},{"boolValue":false}]}}},
        {"key":"empty.list","value":{"arrayValue":{}}},
        {"key":"matrix","value":{"arrayValue":{"values":[{"arrayValue":{"values":[{"intValue":"1"},{"intValue":"2"}]}},{"kvlistValue":{"values":[{"key":"k","value":{"stringValue":"v"}}]}}]}}},
        {"key":"request","value":{"kvlistValue":{"values":[
          {"key":"headers","value":{"kvlistValue":{"values":[{"key":"user-agent","value":{"stringValue":"sdk/1.45"}},{"key":"x-count","value":{"intValue":"3"}}]}}},
          {"key":"path","value":{"stringValue":"/v1/chat"}}]}}},
        {"key":"no.value","value":{}},
        {"key":"quote\\"key","value":{"stringValue":"q"}}
        """
        let event = try json(firstEvent(logs(record: #""timeUnixNano":"1","body":{"stringValue":"x"},"attributes":[\#(attributes)]"#)))
        let fields = try #require(event["fields"] as? [String: Any])
        #expect(fields["event_id"] as? String == "evt-1")
        #expect(fields["action"] as? String == "block")
        #expect(fields["tokens"] as? String == "-42")
        #expect(fields["cost"] as? String == "0.25")
        #expect(fields["ratio"] as? String == "NaN")
        #expect(fields["blocked"] as? String == "true")
        #expect(fields["raw"] as? String == "AAH/")
        #expect(fields["rules"] as? [String] == ["email", "7", "false"])
        #expect(fields["empty.list"] == nil)
        #expect(fields["matrix"] as? String == #"[[1,2],{"k":"v"}]"#)
        #expect(fields["request.headers.user-agent"] as? String == "sdk/1.45")
        #expect(fields["request.headers.x-count"] as? String == "3")
        #expect(fields["request.path"] as? String == "/v1/chat")
        #expect(fields["no.value"] == nil)
        #expect(fields["quote\"key"] as? String == "q")
        // Flat: every value a string or an array of strings.
        for (key, value) in fields {
            #expect(value is String || value is [String], "\(key) is \(type(of: value))")
        }
    }

    @Test func metadataComesFromAttributesThenConfigAndIsNotRepeated() throws {
        var settings = HECEncoder.Settings()
        settings.source = "config-source"
        settings.sourcetype = "config:type"
        settings.index = "config_index"
        let resource = """
        {"key":"host.name","value":{"stringValue":"pod-7"}},
        {"key":"service.name","value":{"stringValue":"ai-gateway"}},
        {"key":"com.splunk.index","value":{"stringValue":"resource_index"}},
        {"key":"com.splunk.hec.access_token","value":{"stringValue":"secret-from-resource"}},
        {"key":"org_id","value":{"stringValue":"org_from_resource"}}
        """
        let record = """
        "timeUnixNano":"1","body":{"stringValue":"x"},"attributes":[
          {"key":"com.splunk.sourcetype","value":{"stringValue":"record:type"}},
          {"key":"org_id","value":{"stringValue":"org_from_record"}}]
        """
        let event = try json(firstEvent(logs(resource: resource, record: record), settings: settings))
        #expect(event["host"] as? String == "pod-7")
        #expect(event["source"] as? String == "config-source")
        #expect(event["sourcetype"] as? String == "record:type")
        #expect(event["index"] as? String == "resource_index")
        let fields = try #require(event["fields"] as? [String: Any])
        #expect(fields["org_id"] as? String == "org_from_record", "the record's attribute wins")
        #expect(fields["host.name"] as? String == "pod-7")
        #expect(fields["service.name"] as? String == "ai-gateway")
        for key in ["com.splunk.index", "com.splunk.sourcetype", "com.splunk.hec.access_token"] {
            #expect(fields[key] == nil, "\(key) must not be a field")
        }
        let text = String(decoding: try firstEvent(logs(resource: resource, record: record), settings: settings), as: UTF8.self)
        #expect(!text.contains("secret-from-resource"))
    }

    @Test func emptyMetadataIsLeftOut() throws {
        let event = try json(firstEvent(logs(record: #""timeUnixNano":"1","body":{"stringValue":"x"}"#)))
        #expect(Set(event.keys) == ["time", "event"])
    }

    @Test func derivedFieldsFromTheRecord() throws {
        let record = """
        "timeUnixNano":"1","severityNumber":17,"severityText":"ERROR","eventName":"ai.gateway.audit",
        "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","body":{"stringValue":"x"},
        "attributes":[{"key":"trace_id","value":{"stringValue":"from-attribute"}}]
        """
        let fields = try #require(try json(firstEvent(logs(record: record)))["fields"] as? [String: Any])
        #expect(fields["trace_id"] as? String == "5b8efff798038103d269b633813fc60c")
        #expect(fields["span_id"] as? String == "eee19b7ec3c1b174")
        #expect(fields["severity_text"] as? String == "ERROR")
        #expect(fields["severity_number"] as? String == "17")
        #expect(fields["event_name"] as? String == "ai.gateway.audit")
    }

    // MARK: event

    @Test func bodyBecomesTheEvent() throws {
        func event(_ body: String) throws -> Any? { try json(firstEvent(logs(record: #""timeUnixNano":"1"\#(body)"#)))["event"] }
        #expect(try event(#","body":{"stringValue":"request blocked"}"#) as? String == "request blocked")
        let map = try #require(try event(#","body":{"kvlistValue":{"values":[{"key":"prompt","value":{"kvlistValue":{"values":[{"key":"chars","value":{"intValue":"12"}}]}}}]}}"#) as? [String: Any])
        #expect((map["prompt"] as? [String: Any])?["chars"] as? Int == 12)
        #expect(try event(#","body":{"arrayValue":{"values":[{"stringValue":"a"},{"intValue":"1"}]}}"#) as? [Any] != nil)
        #expect(try event(#","body":{"intValue":"5"}"#) as? String == "5")
        // HEC refuses a blank event: a record without a body still gets one.
        #expect(try event("") as? String == "(no body)")
        #expect(try event(#","body":{"stringValue":"  "}"#) as? String == "(no body)")
        #expect(try event(#","eventName":"ai.gateway.audit""#) as? String == "ai.gateway.audit")
    }

    @Test func eventModePutsAttributesIntoTheEventObject() throws {
        var settings = HECEncoder.Settings()
        settings.fieldsMode = .event
        let record = """
        "timeUnixNano":"1","body":{"stringValue":"request blocked"},"severityText":"WARN","attributes":[
          {"key":"action","value":{"stringValue":"block"}},
          {"key":"request","value":{"kvlistValue":{"values":[{"key":"path","value":{"stringValue":"/v1"}}]}}},
          {"key":"tokens","value":{"intValue":"12"}}]
        """
        let event = try json(firstEvent(logs(resource: #"{"key":"service.name","value":{"stringValue":"gw"}}"#, record: record), settings: settings))
        #expect(event["fields"] == nil)
        let object = try #require(event["event"] as? [String: Any])
        #expect(object["message"] as? String == "request blocked")
        #expect(object["action"] as? String == "block")
        #expect(object["tokens"] as? Int == 12)
        #expect((object["request"] as? [String: Any])?["path"] as? String == "/v1")
        #expect(object["service.name"] as? String == "gw")
        #expect(object["severity_text"] as? String == "WARN")

        settings.fieldsMode = .both
        let both = try json(firstEvent(logs(record: record), settings: settings))
        #expect((both["event"] as? [String: Any])?["action"] as? String == "block")
        #expect((both["fields"] as? [String: Any])?["action"] as? String == "block")
        #expect((both["fields"] as? [String: Any])?["request.path"] as? String == "/v1")
    }

    // MARK: UTF-8

    @Test func illFormedUTF8IsRepaired() throws {
        // protobuf-c does not check UTF-8: a client can send any bytes as a string.
        let bad: [UInt8] = [0x61, 0xFF, 0x62, 0xC3, 0x28, 0xED, 0xA0, 0x80]
        let batch = try OTLPBatch.decode(protobuf: Self.protobufLogs(body: bad, attributeKey: [0x6B, 0xC0, 0xAF], attributeValue: bad), signal: .logs)
        let events = HECEncoder(HECEncoder.Settings()).encode([batch], signal: .logs)
        let bytes = Array(events.bytes[events.range(0)])
        #expect(String(validating: bytes, as: UTF8.self) != nil, "the event must be valid UTF-8")
        let event = try json(bytes)
        let body = try #require(event["event"] as? String)
        #expect(body.hasPrefix("a\u{FFFD}b\u{FFFD}("))
        let fields = try #require(event["fields"] as? [String: Any])
        #expect(fields["k\u{FFFD}\u{FFFD}"] as? String == body)
    }

    // MARK: spans

    @Test func spanEvent() throws {
        let json = """
        {"resourceSpans":[{"resource":{"attributes":[{"key":"host.name","value":{"stringValue":"pod-2"}},{"key":"service.name","value":{"stringValue":"gw"}}]},
          "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"0102030405060708",
            "name":"chat","kind":2,"startTimeUnixNano":"1700000000123000000","endTimeUnixNano":"1700000000500000000",
            "attributes":[{"key":"model","value":{"stringValue":"gpt"}}],
            "events":[{"timeUnixNano":"1700000000200000000","name":"policy.evaluated","attributes":[{"key":"rule","value":{"stringValue":"pii"}}]}],
            "links":[{"traceId":"5b8efff798038103d269b633813fc60d","spanId":"eee19b7ec3c1b175","attributes":[]}],
            "status":{"code":2,"message":"upstream timeout"}}]}]}]}
        """
        let batch = try OTLPBatch.decode(json: Array(json.utf8), signal: .traces)
        let events = HECEncoder(HECEncoder.Settings()).encode([batch], signal: .traces)
        let event = try self.json(Array(events.bytes[events.range(0)]))
        #expect(timeText(Array(events.bytes[events.range(0)])) == "1700000000.123")
        #expect(event["host"] as? String == "pod-2")
        let span = try #require(event["event"] as? [String: Any])
        #expect(span["trace_id"] as? String == "5b8efff798038103d269b633813fc60c")
        #expect(span["parent_span_id"] as? String == "0102030405060708")
        #expect(span["kind"] as? String == "SPAN_KIND_SERVER")
        #expect(span["name"] as? String == "chat")
        #expect((span["start_time"] as? NSNumber)?.uint64Value == 1_700_000_000_123_000_000)
        #expect((span["status"] as? [String: Any])?["code"] as? String == "STATUS_CODE_ERROR")
        #expect((span["attributes"] as? [String: Any])?["model"] as? String == "gpt")
        #expect((span["events"] as? [[String: Any]])?.first?["name"] as? String == "policy.evaluated")
        #expect((span["links"] as? [[String: Any]])?.count == 1)
        #expect((event["fields"] as? [String: Any])?["service.name"] as? String == "gw")
    }

    // MARK: payloads

    @Test func payloadsNeverExceedTheLimitUncompressed() throws {
        let events = HECEncoder(HECEncoder.Settings()).encode([manyRecords(300, bodySize: 200)], signal: .logs)
        var packer = PayloadPacker(limit: 4096, gzip: false)
        let (payloads, tooLarge) = packer.pack(events, Array(0..<events.count))
        #expect(tooLarge.isEmpty)
        #expect(payloads.count > 1)
        #expect(payloads.allSatisfy { $0.body.count <= 4096 && !$0.gzipped })
        #expect(payloads.flatMap(\.records) == Array(0..<events.count))
        // Events concatenated: no array, no commas, and back to back they are the events.
        #expect(payloads.flatMap(\.body) == events.bytes)
        // Full payloads: each but the last has no room for its successor's first event.
        for (payload, next) in zip(payloads, payloads.dropFirst()) {
            #expect(payload.body.count + events.size(next.records[0]) > 4096)
        }
    }

    @Test func compressedPayloadsNeverExceedTheLimit() throws {
        let events = HECEncoder(HECEncoder.Settings()).encode([manyRecords(2000, bodySize: 300)], signal: .logs)
        for limit in [2048, 10_000, 100_000] {
            var packer = PayloadPacker(limit: limit, gzip: true)
            let (payloads, tooLarge) = packer.pack(events, Array(0..<events.count))
            #expect(tooLarge.isEmpty)
            #expect(payloads.flatMap(\.records) == Array(0..<events.count))
            var restored: [UInt8] = []
            for payload in payloads {
                #expect(payload.gzipped)
                #expect(payload.body.count <= limit, "a payload of \(payload.body.count) bytes over \(limit)")
                restored += try Decompression.decompress(payload.body, encoding: .gzip, limit: 1 << 30)
            }
            #expect(restored == events.bytes)
            // Compression is used: far more raw bytes per payload than the limit.
            #expect(payloads.count < events.bytes.count / limit)
        }
    }

    @Test func anEventLargerThanThePayloadLimitIsSetAside() throws {
        let batch = try OTLPBatch.decode(json: Array(logsJSON(records: [
            #""timeUnixNano":"1","body":{"stringValue":"small 1"}"#,
            #""timeUnixNano":"1","body":{"stringValue":"\#(String(repeating: "x", count: 5000))"}"#,
            #""timeUnixNano":"1","body":{"stringValue":"small 2"}"#,
        ]).utf8), signal: .logs)
        let events = HECEncoder(HECEncoder.Settings()).encode([batch], signal: .logs)
        var packer = PayloadPacker(limit: 2048, gzip: false)
        let (payloads, tooLarge) = packer.pack(events, [0, 1, 2])
        #expect(tooLarge.map(\.record) == [1])
        #expect(payloads.flatMap(\.records) == [0, 2])
        // Gzipped, the same event fits: repeated bytes compress.
        var gzipPacker = PayloadPacker(limit: 2048, gzip: true)
        #expect(gzipPacker.pack(events, [0, 1, 2]).tooLarge.isEmpty)
    }

    // MARK: Refused records back to OTLP

    @Test func refusedRecordsAreCopiedExactly() throws {
        let records = (0..<5).map { i in
            #""timeUnixNano":"17000000000000000\#(i)","severityNumber":9,"body":{"stringValue":"r\#(i)"},"attributes":[{"key":"i","value":{"intValue":"9223372036854775807"}},{"key":"d","value":{"doubleValue":0.1}},{"key":"b","value":{"boolValue":true}},{"key":"raw","value":{"bytesValue":"AAH/"}},{"key":"m","value":{"kvlistValue":{"values":[{"key":"x","value":{"arrayValue":{"values":[{"intValue":"1"},{"stringValue":"é"}]}}}]}}}],"traceId":"5b8efff798038103d269b633813fc60c""#
        }
        let batch = try OTLPBatch.decode(json: Array(logsJSON(records: records).utf8), signal: .logs)
        let copy = try #require(RejectedRecords.subset(batch, signal: .logs, index: 0, keeping: [
            RecordLocator(batch: 0, resource: 0, scope: 0, record: 3)]))
        let expected = try OTLPBatch.decode(json: Array(logsJSON(records: [records[3]]).utf8), signal: .logs)
        #expect(copy.itemCount == 1)
        #expect(copy.encodeProtobuf() == expected.encodeProtobuf())
    }

    // MARK: Helpers

    func logsJSON(resource: String = "", records: [String]) -> String {
        #"{"resourceLogs":[{"resource":{"attributes":[\#(resource)]},"scopeLogs":[{"scope":{"name":"test"},"logRecords":[\#(records.map { "{\($0)}" }.joined(separator: ","))]}]}]}"#
    }

    func logs(resource: String = "", record: String) throws -> OTLPBatch {
        try OTLPBatch.decode(json: Array(logsJSON(resource: resource, records: [record]).utf8), signal: .logs)
    }

    func manyRecords(_ count: Int, bodySize: Int) -> OTLPBatch {
        let records = (0..<count).map { i in
            #""timeUnixNano":"\#(1_700_000_000_000_000_000 + i * 1_000_000)","body":{"stringValue":"event \#(i) \#(String(repeating: "abcdefghij", count: bodySize / 10))"},"attributes":[{"key":"event_id","value":{"stringValue":"evt-\#(i)"}},{"key":"action","value":{"stringValue":"block"}}]"#
        }
        return try! OTLPBatch.decode(json: Array(logsJSON(records: records).utf8), signal: .logs)
    }

    func firstEvent(_ batch: OTLPBatch, settings: HECEncoder.Settings = HECEncoder.Settings()) throws -> [UInt8] {
        let events = HECEncoder(settings).encode([batch], signal: .logs)
        try #require(events.count == 1)
        return Array(events.bytes[events.range(0)])
    }

    func json(_ bytes: [UInt8]) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    /// The `time` value exactly as written.
    func timeText(_ bytes: [UInt8]) -> String? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let range = text.range(of: #""time":"#) else { return nil }
        return String(text[range.upperBound...].prefix { $0.isNumber || $0 == "." })
    }

    /// An ExportLogsServiceRequest with one record whose body and one attribute are
    /// the given bytes (any bytes: protobuf strings are not checked).
    static func protobufLogs(body: [UInt8], attributeKey: [UInt8], attributeValue: [UInt8]) -> [UInt8] {
        func field(_ number: Int, _ payload: [UInt8]) -> [UInt8] { [UInt8(number << 3 | 2), UInt8(payload.count)] + payload }
        let anyBody = field(1, body)
        let attribute = field(1, attributeKey) + field(2, field(1, attributeValue))
        let record = field(5, anyBody) + field(6, attribute)
        let scopeLogs = field(2, record)
        let resourceLogs = field(2, scopeLogs)
        return field(1, resourceLogs)
    }
}

/// `export_raw`: bodies one per line, and where they go.
@Suite struct SplunkHECRawTests {
    @Test func rawLinesAreTheBodies() throws {
        var settings = HECEncoder.Settings()
        settings.rawLogs = true
        let json = #"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"blocked by pii-guard"}},{"body":{"kvlistValue":{"values":[{"key":"a","value":{"intValue":"1"}}]}}},{}]}]}]}"#
        let events = HECEncoder(settings).encode([try OTLPBatch.decode(json: Array(json.utf8), signal: .logs)], signal: .logs)
        #expect(String(decoding: events.bytes, as: UTF8.self) == "blocked by pii-guard\n{\"a\":1}\n\n")
        #expect(events.count == 3)
    }

    @Test func theRawEndpointIsTheEndpointsOwnOrUnderTheRoot() {
        #expect(SplunkHECConfig.paths("/services/collector/raw").event == "/services/collector/event")
        #expect(SplunkHECConfig.rawPath("/services/collector/raw", base: "/services/collector") == "/services/collector/raw")
        #expect(SplunkHECConfig.rawPath("/services/collector", base: "/services/collector") == "/services/collector/raw")
    }
}
