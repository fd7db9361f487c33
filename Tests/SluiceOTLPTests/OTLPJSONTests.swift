import Foundation
import Testing
@testable import SluiceOTLP

@Suite struct OTLPJSONTests {
    @Test func gatewayEventDecodesIntoViews() throws {
        let batch = try OTLPBatch.decode(json: Array(Payloads.gatewayEventJSON.utf8), signal: .logs)
        #expect(batch.itemCount == 1)
        try batch.withLogs { logs in
            let rl = try #require(logs.resourceLogs.first)
            #expect(rl.schemaURL.string == "https://opentelemetry.io/schemas/1.26.0")
            #expect(rl.resource?.attributes["service.name"]?.stringValue == "ai-gateway")
            let sl = try #require(rl.scopeLogs.first)
            #expect(sl.scope?.name.string == "gateway.audit")
            #expect(sl.scope?.version.string == "2.1.0")
            let r = try #require(sl.logRecords.first)
            #expect(r.timeUnixNano == 1_763_712_000_123_456_789)
            #expect(r.observedTimeUnixNano == 1_763_712_000_223_456_789)
            #expect(r.severityNumber == 13)
            #expect(r.severityText.string == "WARN")
            #expect(r.eventName.string == "gateway.decision")
            #expect(r.body?.stringValue == "request blocked by policy pii-guard")
            #expect(r.traceID.hex == "5b8efff798038103d269b633813fc60c")
            #expect(r.spanID.hex == "eee19b7ec3c1b174")
            #expect(r.flags == 1)
            let a = r.attributes
            #expect(a.count == 15)
            for key in ["event_id", "event_type", "action", "policy_name", "model", "gateway_id", "user_id", "org_id"] {
                #expect(a[key] != nil, "missing \(key)")
            }
            #expect(a["action"]?.stringValue == "block")
            guard case .int(let tokens) = a["tokens"]?.value else { Issue.record("tokens"); return }
            #expect(tokens == Int64.min)
            guard case .double(let score) = a["score"]?.value else { Issue.record("score"); return }
            #expect(score == 0.25)
            guard case .bool(false) = a["cached"]?.value else { Issue.record("cached"); return }
            guard case .bytes(let digest) = a["digest"]?.value else { Issue.record("digest"); return }
            #expect(digest.array == [0xDE, 0xAD, 0xBE, 0xEF])
            guard case .array(let tags) = a["tags"]?.value else { Issue.record("tags"); return }
            #expect(tags.count == 3)
            guard case .empty = tags[2].value else { Issue.record("empty AnyValue"); return }
            #expect(a["metadata"]?.stringValue == #"{"région":"東京 🚀"}"#)
            #expect(a[""]?.stringValue == "")
        }
    }

    @Test func protobufJSONProtobufRoundTripIsExact() throws {
        let fromJSON = try OTLPBatch.decode(json: Array(Payloads.gatewayEventJSON.utf8), signal: .logs)
        let protobuf = fromJSON.encodeProtobuf()
        let fromProtobuf = try OTLPBatch.decode(protobuf: protobuf, signal: .logs)
        let json = fromProtobuf.encodeJSON()
        let again = try OTLPBatch.decode(json: json, signal: .logs)
        #expect(again.encodeProtobuf() == protobuf)
        #expect(again.encodeJSON() == json)
    }

    @Test func writesOTLPJSONConventions() throws {
        let batch = try OTLPBatch.decode(json: Array(Payloads.gatewayEventJSON.utf8), signal: .logs)
        let json = String(decoding: batch.encodeJSON(), as: UTF8.self)
        #expect(json.contains(#""timeUnixNano":"1763712000123456789""#))
        #expect(json.contains(#""severityNumber":13"#))
        #expect(json.contains(#""traceId":"5b8efff798038103d269b633813fc60c""#))
        #expect(json.contains(#""bytesValue":"3q2+7w==""#))
        #expect(json.contains(#""intValue":"-9223372036854775808""#))
        #expect(!json.contains("droppedAttributesCount"))
        // The whole output is JSON Foundation accepts.
        _ = try JSONSerialization.jsonObject(with: Data(json.utf8))
    }

    @Test func acceptsSnakeCaseNumbersForInt64AndEnumNamesAndNulls() throws {
        let camel = try OTLPBatch.decode(json: Array(#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"s","kind":2,"startTimeUnixNano":"5","status":{"code":2,"message":"m"}}]}]}]}"#.utf8), signal: .traces)
        let snake = try OTLPBatch.decode(json: Array(#"{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"0102030405060708090A0B0C0D0E0F10","span_id":"0102030405060708","name":"s","kind":"SPAN_KIND_SERVER","start_time_unix_nano":5,"parent_span_id":null,"unknownField":{"a":[1,2,{"b":null}]},"status":{"code":"STATUS_CODE_ERROR","message":"m"}}]}]}]}"#.utf8), signal: .traces)
        #expect(camel.encodeProtobuf() == snake.encodeProtobuf())
        try snake.withTraces { traces in
            let span = try #require(traces.spans.first { _ in true }?.record)
            #expect(span.kind == .server)
            #expect(span.status?.code == 2)
            #expect(span.parentSpanID.isEmpty)
        }
    }

    @Test func emptyObjectIsAnEmptyRequest() throws {
        let batch = try OTLPBatch.decode(json: Array("{}".utf8), signal: .logs)
        #expect(batch.itemCount == 0)
        #expect(batch.encodeProtobuf().isEmpty)
    }

    @Test(arguments: [
        (#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"12x"}]}]}]}"#, "timeUnixNano"),
        (#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}"#, "hex"),
        (#"{"resourceLogs":[{"scopeLogs":"#, "invalid JSON"),
        (#"{"resourceLogs":[1]}"#, "expected an object"),
        (#"{"resourceLogs":[]} x"#, "after the top-level"),
        (#"{"resourceLogs":[{"schemaUrl":"a\u0001b"}]} "#, ""),
        ("{\"resourceLogs\":[{\"schemaUrl\":\"a\u{01}b\"}]}", "control character"),
        (#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"flags":4294967296}]}]}]}"#, "flags"),
        (#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"99999999999999999999"}]}]}]}"#, "timeUnixNano"),
    ])
    func badJSONNamesTheProblem(input: String, expected: String) throws {
        do {
            _ = try OTLPBatch.decode(json: Array(input.utf8), signal: .logs)
            #expect(expected.isEmpty, "accepted \(input)")
        } catch {
            #expect(!expected.isEmpty, "refused \(input): \(error)")
            #expect(error.kind == .malformed)
            #expect(error.description.contains(expected), "\(error)")
            #expect(error.offset != nil)
        }
    }

    @Test func invalidUTF8InProtobufStringsBecomesReplacementCharacters() throws {
        // LogRecord { severity_text: "a\xFFb\xED\xA0\x80c" } (a stray byte and an encoded surrogate)
        let text: [UInt8] = [0x61, 0xFF, 0x62, 0xED, 0xA0, 0x80, 0x63]
        let record = [0x1A, UInt8(text.count)] + text
        let payload = Payloads.field(1, Payloads.field(2, Payloads.field(2, record)))
        let batch = try OTLPBatch.decode(protobuf: payload, signal: .logs)
        let json = batch.encodeJSON()
        let string = try #require(String(validating: json, as: UTF8.self))
        #expect(string.contains("a\u{FFFD}b\u{FFFD}\u{FFFD}\u{FFFD}c"))
    }

    @Test func jsonOutputEscapesControlCharactersAndQuotes() {
        var out = JSONOutput()
        out.appendString("q\"b\\n\n\u{01}\u{7F}é")
        #expect(String(decoding: out.bytes, as: UTF8.self) == #""q\"b\\n\n\u0001\#u{7F}é""#)
    }

    /// The word-at-a-time scan must find a byte to escape or check wherever it sits
    /// in an 8-byte word, and a flagged byte must not hide one below it: every byte
    /// value at every position of strings around the word size, against Foundation's
    /// JSON encoder (ill-formed bytes as U+FFFD, as String(decoding:) repairs them).
    @Test func escapingFindsEveryByteAtEveryPosition() throws {
        for length in [1, 7, 8, 9, 15, 16, 17, 24] {
            for position in 0..<length {
                for special: UInt8 in [0x00, 0x01, 0x1F, 0x20, 0x21, 0x22, 0x5C, 0x5B, 0x7F, 0x80, 0xC3, 0xFF] {
                    var input = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                    input[position] = special
                    if position + 1 < length, special == 0x5C { input[position + 1] = 0x22 }
                    var out = JSONOutput()
                    input.withUnsafeBufferPointer { out.appendString($0) }
                    let decoded = try JSONDecoder().decode(String.self, from: Data(out.bytes))
                    #expect(decoded == String(decoding: input, as: UTF8.self), "length \(length), byte \(special) at \(position)")
                }
            }
        }
    }

    @Test func hexIDsAreLowercaseAtAnyLength() {
        for length in [0, 8, 16, 40] {
            let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 29 &+ 3) }
            var out = JSONOutput()
            data.withUnsafeBufferPointer { out.appendHexString($0) }
            #expect(String(decoding: out.bytes, as: UTF8.self) == "\"" + data.map { String(format: "%02x", $0) }.joined() + "\"")
        }
    }

    @Test func base64AndHexHelpersRoundTrip() {
        for length in 0..<20 {
            let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            var out = JSONOutput()
            data.withUnsafeBufferPointer { out.appendBase64String($0) }
            let text = Array(out.bytes.dropFirst().dropLast())
            #expect(OTLPJSONReader.decodeBase64(text) == data)
            #expect(Data(data).base64EncodedString() == String(decoding: text, as: UTF8.self))
        }
    }
}

/// Payloads the OpenTelemetry Python SDK encoded (scripts/make-fixtures.py), checked
/// against the protobuf library's own JSON of the same messages.
@Suite struct SDKFixtureTests {
    @Test(arguments: [("logs", OTLPSignal.logs), ("traces", OTLPSignal.traces)])
    func sdkProtobufDecodesToTheSameJSONAsTheProtobufLibrary(name: String, signal: OTLPSignal) throws {
        let protobuf = try Payloads.fixture("\(name).pb")
        let expected = try JSONSerialization.jsonObject(with: Data(try Payloads.fixture("\(name).expected.json"))) as? NSDictionary
        let batch = try OTLPBatch.decode(protobuf: protobuf, signal: signal)
        let ours = try JSONSerialization.jsonObject(with: Data(batch.encodeJSON())) as? NSDictionary
        #expect(ours == expected)
        #expect(batch.encodeProtobuf() == protobuf)
    }

    @Test(arguments: [("logs", OTLPSignal.logs), ("traces", OTLPSignal.traces)])
    func sdkJSONDecodesToTheSDKProtobuf(name: String, signal: OTLPSignal) throws {
        let json = try Payloads.fixture("\(name).json")
        let protobuf = try Payloads.fixture("\(name).pb")
        let batch = try OTLPBatch.decode(json: json, signal: signal)
        #expect(batch.encodeProtobuf() == protobuf)
    }
}
