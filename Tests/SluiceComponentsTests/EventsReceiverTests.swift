// The events receiver without sockets: timestamps, the event → log record mapping,
// the body decoder, the answers, and its configuration.
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Testing
import SluiceCore
import SluiceNet
@testable import SluiceComponents

@Suite struct EventTimestampTests {
    func time(_ text: String) -> UInt64? { EventTimestamp.nanoseconds(.text(text)) }

    @Test func rfc3339WithFractionsOffsetsAndTheLowercaseForms() {
        let base: UInt64 = 1_795_255_200 * 1_000_000_000  // 2026-11-21T10:00:00Z
        #expect(time("2026-11-21T10:00:00Z") == base)
        #expect(time("2026-11-21t10:00:00z") == base)
        #expect(time("2026-11-21 10:00:00Z") == base)
        #expect(time("2026-11-21T12:00:00+02:00") == base)
        #expect(time("2026-11-21T04:30:00-05:30") == base)
        #expect(time("2026-11-21T10:00:00.5Z") == base + 500_000_000)
        #expect(time("2026-11-21T10:00:00.123456789Z") == base + 123_456_789)
        #expect(time("2026-11-21T10:00:00.123456789999Z") == base + 123_456_789)  // past nanoseconds: cut
        #expect(time("2000-02-29T23:59:59Z") == UInt64(951_868_799) * 1_000_000_000)
        #expect(time("1970-01-01T00:00:00Z") == 0)
        #expect(time("2026-12-31T23:59:60Z") == UInt64(1_798_761_599 + 1) * 1_000_000_000)  // a leap second: the next minute
    }

    @Test func malformedOrOutOfRangeTextIsRefused() {
        for text in ["2026-11-21", "2026-11-21T10:00:00", "2026-11-21T10:00Z", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z",
                     "2026-11-31T00:00:00Z", "2026-11-21T24:00:00Z", "2026-11-21T10:60:00Z", "2026-11-21T10:00:00.Z",
                     "2026-11-21T10:00:00+0200", "2026-11-21T10:00:00Z ", "1969-12-31T23:59:59Z", "2600-01-01T00:00:00Z",
                     "yesterday", "", "2026-11-21T10:00:00+24:00"] {
            #expect(time(text) == nil, "\(text)")
        }
    }

    @Test func epochNumbersAreToldApartBySize() {
        let seconds: UInt64 = 1_795_255_200
        let ns = seconds * 1_000_000_000
        #expect(EventTimestamp.nanoseconds(.int(Int64(seconds))) == ns)
        #expect(EventTimestamp.nanoseconds(.int(Int64(seconds) * 1000 + 250)) == ns + 250_000_000)
        #expect(EventTimestamp.nanoseconds(.int(Int64(seconds) * 1_000_000 + 7)) == ns + 7000)
        #expect(EventTimestamp.nanoseconds(.int(Int64(ns) + 9)) == ns + 9)
        #expect(EventTimestamp.nanoseconds(.double(1_795_255_200.25)) == ns + 250_000_000)
        #expect(EventTimestamp.nanoseconds(.double(1_795_255_200_250.5)) == ns + 250_500_000)
        #expect(time("1795255200") == ns)
        #expect(time("1795255200.5") == ns + 500_000_000)
        #expect(EventTimestamp.nanoseconds(.int(-1)) == nil)
        #expect(EventTimestamp.nanoseconds(.int(20_000_000_000)) == nil)  // seconds past 2554
        #expect(EventTimestamp.nanoseconds(.double(.infinity)) == nil)
        #expect(EventTimestamp.nanoseconds(.bool(true)) == nil)
        #expect(time("12ab") == nil)
    }
}

@Suite struct EventLogMappingTests {
    // Computed, not a stored global: OTLPValue is an indirect enum whose boxes are held
    // through tagged pointers, which LeakSanitizer cannot follow from a global.
    static var event: [OTLPKeyValue] { [
        OTLPKeyValue("event_id", .text("evt-1")),
        OTLPKeyValue("timestamp", .text("2026-11-21T10:00:00.5Z")),
        OTLPKeyValue("event_type", .text("blocked")),
        OTLPKeyValue("action", .text("block")),
        OTLPKeyValue("level", .text("warn")),
        OTLPKeyValue("severity", .text("ERROR")),
        OTLPKeyValue("trace_id", .text("0102030405060708090A0B0C0D0E0F10")),
        OTLPKeyValue("span_id", .text("0000000000000000")),
        OTLPKeyValue("risk", .map([OTLPKeyValue("score", .double(0.9))])),
    ] }

    @Test func fieldsBecomeAttributesTheEventTypeTheNameAndTheObjectTheBody() throws {
        let record = try EventLogMapping().record(Self.event, observedTimeUnixNano: 77).get()
        #expect(record.attributes == Self.event)
        #expect(record.body == .map(Self.event))
        #expect(record.eventName == Array("blocked".utf8))
        #expect(record.timeUnixNano == 1_795_255_200_500_000_000 && record.observedTimeUnixNano == 77)
        // `severity` wins over `level` wherever each stands.
        #expect(record.severityNumber == 17 && record.severityText == Array("ERROR".utf8))
        #expect(record.traceID == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])
        #expect(record.spanID.isEmpty)  // all zeros is no id
        let bare = try EventLogMapping(body: .none).record([OTLPKeyValue("level", .int(9))], observedTimeUnixNano: 1).get()
        #expect(bare.body == nil && bare.severityNumber == 9 && bare.severityText.isEmpty && bare.timeUnixNano == 0)
    }

    @Test func severityNamesFollowTheDataModelAndSyslog() {
        let cases: [(String, Int32)] = [("trace", 1), ("DEBUG", 5), ("info", 9), ("Info2", 10), ("notice", 10), ("warning", 13), ("WARN4", 16),
                                        ("err", 17), ("error3", 19), ("critical", 21), ("fatal", 21), ("alert", 23), ("emergency", 24),
                                        ("verbose", 0), ("info9", 0)]
        for (name, number) in cases { #expect(EventLogMapping.severityNumber(Array(name.utf8)) == number, "\(name)") }
    }

    @Test func aTimestampOfNoAcceptedFormIsAnErrorNamingTheField() {
        let result = EventLogMapping().record([OTLPKeyValue("timestamp", .text("21/11/2026"))], observedTimeUnixNano: 1)
        guard case .failure(let error) = result else { Issue.record("accepted"); return }
        #expect(error.field == "timestamp" && error.message.contains("RFC 3339"))
        // null is no timestamp: the record's time is unknown (0), as OTLP allows.
        #expect((try? EventLogMapping().record([OTLPKeyValue("timestamp", .empty)], observedTimeUnixNano: 1).get())?.timeUnixNano == 0)
    }
}

@Suite struct EventsDecoderTests {
    func decode(_ text: String, _ decoder: EventsDecoder = EventsDecoder()) throws(OTLPDecodeError) -> OTLPBatch? {
        var result: Result<OTLPBatch?, OTLPDecodeError> = .success(nil)
        Array(text.utf8).withUnsafeBytes { raw in
            result = Result { () throws(OTLPDecodeError) in try decoder.decode(raw, receivedAt: 5) }
        }
        return try result.get()
    }

    func failure(_ text: String, _ decoder: EventsDecoder = EventsDecoder()) -> OTLPDecodeError? {
        do { _ = try decode(text, decoder); return nil } catch { return error }
    }

    @Test func everyEventIsARecordOfOneScope() throws {
        let batch = try #require(try decode("{\"event_id\":\"e1\",\"n\":1}\n{\"event_id\":\"e2\",\"n\":2}\n"))
        #expect(batch.itemCount == 2)
        let json = String(decoding: batch.encodeJSON(), as: UTF8.self)
        #expect(json.contains(#""scope":{"name":"sluice.events""#))
        #expect(json.contains(#""observedTimeUnixNano":"5""#))
        #expect(json.contains(#"{"key":"event_id","value":{"stringValue":"e2"}},{"key":"n","value":{"intValue":"2"}}"#))
    }

    @Test func errorsNameTheEventTheOffsetAndTheLine() {
        let ndjson = failure("{\"event_id\":\"e1\"}\n{\"event_id\":\"e2\",\"timestamp\":\"soon\"}\n")
        #expect(ndjson?.kind == .malformed && ndjson?.offset == 18)
        #expect(ndjson?.message == "event 2: timestamp: expected \(EventTimestamp.expected) on line 2")
        let syntax = failure("{\"a\":1}\n{\"a\":2,}\n")
        #expect(syntax?.offset == 15 && syntax?.message.hasSuffix("on line 2") == true)
        // One line: no line number.
        #expect(failure(#"{"a":}"#)?.message.contains("line") == false)
    }

    @Test func limitsOnEventsAndValues() {
        let three = "{}\n{}\n{}\n"
        #expect(failure(three, EventsDecoder(maxEvents: 3)) == nil)
        let over = failure(three, EventsDecoder(maxEvents: 2))
        #expect(over?.kind == .tooLarge && over?.offset == 6 && over?.message.contains("max_events_per_request") == true)
        #expect(failure(#"[{"a":[1,2,3,4,5]}]"#, EventsDecoder(maxValues: 5))?.kind == .tooLarge)
        #expect(failure(#"{"a":{"b":{"c":1}}}"#, EventsDecoder(maxDepth: 2))?.kind == .tooDeep)
    }

    @Test func anEmptyArrayIsNothingToDeliverAndAnEmptyBodyAnError() throws {
        #expect(try decode(" [] ") == nil)
        #expect(failure("")?.message.contains("the body is empty") == true)
        #expect(failure(" \n ")?.message.contains("the body is empty") == true)
    }
}

@Suite struct EventsResponderTests {
    func responder(_ sink: RecordingSink, _ adjust: (inout EventsReceiverConfig) -> Void = { _ in }) -> EventsHTTPResponder {
        var config = EventsReceiverConfig()
        adjust(&config)
        let id = ComponentID(type: "events")
        return EventsHTTPResponder(id: id, config: config, sink: sink, counters: ReceiverCounters(id: id, transport: "http", metrics: MetricsRegistry()))
    }

    func post(_ body: [UInt8], contentType: String? = "application/json", path: String = "/v1/events", headers: [(String, String)] = [],
              sink: RecordingSink = RecordingSink(), _ adjust: (inout EventsReceiverConfig) -> Void = { _ in }) throws -> (HTTPServerResponse, [String: Any]) {
        let all = (contentType.map { [("content-type", $0)] } ?? []) + headers
        let request = HTTPServerRequest(method: .POST, uri: path, headers: HTTPHeaders(all), body: ByteBuffer(bytes: body))
        let response = try reply { responder(sink, adjust).handle(request, reply: $0) }
        let json = (try? JSONSerialization.jsonObject(with: Data(bytes(response.body)))) as? [String: Any] ?? [:]
        return (response, json)
    }

    static let events = Array(#"[{"event_id":"e1","action":"block"},{"event_id":"e2","action":"allow"}]"#.utf8)

    @Test func acceptedEventsAreCounted() throws {
        let sink = RecordingSink()
        let (response, json) = try post(Self.events, sink: sink)
        #expect(response.status == .ok && json["accepted"] as? Int == 2 && json["rejected"] == nil)
        #expect(sink.received.first?.itemCount == 2)
        let ndjson = try post(Array("{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n".utf8), contentType: "application/x-ndjson; charset=utf-8")
        #expect(ndjson.0.status == .ok && ndjson.1["accepted"] as? Int == 3)
    }

    @Test func droppedByProcessorsIsAPartialSuccess() throws {
        let (response, json) = try post(Self.events, sink: RecordingSink(result: .accepted(rejected: 1, message: "filtered: 1 event")))
        #expect(response.status == .ok && json["accepted"] as? Int == 1 && json["rejected"] as? Int == 1 && json["message"] as? String == "filtered: 1 event")
    }

    @Test func malformedIs400WithTheOffset() throws {
        let (response, json) = try post(Array("{\"a\":1}\n{\"a\" 2}\n".utf8))
        #expect(response.status == .badRequest && json["offset"] as? Int == 13)
        #expect((json["error"] as? String)?.contains("expected ':' after a member name, found '2' on line 2 (at byte 13)") == true)
    }

    @Test func wrongTypesEncodingsPathsAndMethods() throws {
        #expect(try post(Self.events, contentType: "text/plain").0.status == .unsupportedMediaType)
        #expect(try post(Self.events, contentType: nil).0.status == .unsupportedMediaType)
        #expect(try post(Self.events, contentType: "application/json; charset=iso-8859-1").0.status == .unsupportedMediaType)
        #expect(try post(Self.events, headers: [("content-encoding", "br")]).0.status == .unsupportedMediaType)
        #expect(try post(Self.events, path: "/v1/logs").0.status == .notFound)
        #expect(try post(Self.events, path: "/hooks") { $0.path = "/hooks" }.0.status == .ok)
        let get = HTTPServerRequest(method: .GET, uri: "/v1/events", headers: HTTPHeaders(), body: ByteBuffer())
        let answer = try reply { responder(RecordingSink()).handle(get, reply: $0) }
        #expect(answer.status == .methodNotAllowed && answer.headers.first(name: "allow") == "POST, OPTIONS")
    }

    @Test func gzipBodiesAreReadAndLimitsAre413() throws {
        let gzipped = try #require(gzip(Self.events))
        let (response, json) = try post(gzipped, headers: [("content-encoding", "gzip")])
        #expect(response.status == .ok && json["accepted"] as? Int == 2)
        let tooMany = try post(Self.events) { $0.maxEventsPerRequest = 1 }
        #expect(tooMany.0.status == .payloadTooLarge)
        // Decompressed past max_request_body_size: 413 as well.
        let bomb = try #require(gzip([UInt8](repeating: 0x20, count: 4096) + Self.events))
        #expect(try post(bomb, headers: [("content-encoding", "gzip")]) { $0.server.maxRequestBodySize = 1024 }.0.status == .payloadTooLarge)
    }

    @Test func aFullLogIs429WithRetryAfterBeforeDecoding() throws {
        let sink = RecordingSink(early: .refused(.logFull(pipeline: "logs"), retryAfter: .seconds(3)))
        let (response, json) = try post(Array("not even JSON".utf8), sink: sink)
        #expect(response.status == .tooManyRequests && response.headers.first(name: "retry-after") == "3")
        #expect((json["error"] as? String)?.contains("pipeline logs is full") == true && sink.received.isEmpty)
        let memory = try post(Self.events, sink: RecordingSink(result: .refused(.memoryLimit, retryAfter: .milliseconds(200))))
        #expect(memory.0.status == .serviceUnavailable && memory.0.headers.first(name: "retry-after") == "1")
    }

    @Test func authenticationAndCORSAreTheKitsChecks() throws {
        let auth = bearerAuth(BearerTokenAuthSettings(tokens: ["s3cret"]))
        let refused = try post(Self.events) { $0.server.auth = auth }
        #expect(refused.0.status == .unauthorized && refused.0.headers.first(name: "www-authenticate") == "Bearer")
        let allowed = try post(Self.events, headers: [("authorization", "Bearer s3cret"), ("origin", "https://app.example")]) {
            $0.server.auth = auth
            $0.server.cors = CORSSettings(allowedOrigins: ["https://*.example"])
        }
        #expect(allowed.0.status == .ok && allowed.0.headers.first(name: "access-control-allow-origin") == "https://app.example")
    }

    func gzip(_ bytes: [UInt8]) -> [UInt8]? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/gzip")
        process.arguments = ["-c"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        guard (try? process.run()) != nil else { return nil }
        input.fileHandleForWriting.write(Data(bytes))
        try? input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return [UInt8](data)
    }
}

@Suite struct EventsReceiverConfigTests {
    func check(_ yaml: String) -> (CollectorConfig, [ConfigDiagnostic]) {
        let config = CollectorConfig.load(text: yaml, file: "test.yaml")
        Service.check(config, context: ComponentContext(logger: Logger(label: "test"), metrics: MetricsRegistry()))
        return (config, config.diagnostics.all)
    }

    @Test func defaultsAndKeys() throws {
        let (_, none) = check("receivers:\n  events:\nexporters:\n  nop:\nservice:\n  pipelines:\n    logs:\n      receivers: [events]\n      exporters: [nop]\n")
        #expect(none.isEmpty, "\(none)")
        let defaults = EventsReceiverConfig()
        #expect(defaults.server.endpoint == HostPort(host: "localhost", port: 4320) && defaults.path == "/v1/events")
        #expect(defaults.maxEventsPerRequest == 10_000 && defaults.maxValuesPerRequest == 250_000 && defaults.server.maxRequestBodySize == 20 << 20 && defaults.mapping.body == .map)

        let config = CollectorConfig.load(text: """
            receivers:
              events:
                endpoint: 127.0.0.1:14320
                path: hooks/gateway
                max_events_per_request: 500
                max_values_per_request: 20000
                body: none
                read_timeout: 5s
                write_timeout: 5s
            """, file: "test.yaml")
        let section = try #require(config.receivers.first?.config)
        let read = try #require(EventsReceiverConfig(section, context: ComponentContext(logger: Logger(label: "test"), metrics: MetricsRegistry())))
        #expect(read.server.endpoint == HostPort(host: "127.0.0.1", port: 14320) && read.path == "/hooks/gateway")
        #expect(read.maxEventsPerRequest == 500 && read.maxValuesPerRequest == 20000 && read.mapping.body == .none)
        #expect(read.server.readTimeout == .seconds(5))
        #expect(config.diagnostics.warnings.contains { $0.path == "receivers.events.write_timeout" })
    }

    @Test func badKeysAndTracesPipelinesAreErrors() {
        let (_, diagnostics) = check("""
            receivers:
              events:
                body: text
                paht: /x
            exporters:
              nop:
            service:
              pipelines:
                traces:
                  receivers: [events]
                  exporters: [nop]
            """)
        let text = diagnostics.map(\.description)
        #expect(text.contains { $0.contains("receivers.events.body: 'text' is not one of map, none") }, "\(text)")
        #expect(text.contains { $0.contains("receivers.events.paht: unknown key (did you mean path?)") }, "\(text)")
        let (_, traces) = check("receivers:\n  events:\nexporters:\n  nop:\nservice:\n  pipelines:\n    traces:\n      receivers: [events]\n      exporters: [nop]\n")
        #expect(traces.map(\.description).contains { $0.contains("service.pipelines.traces.receivers: events does not receive traces (it receives logs only)") },
                "\(traces)")
    }
}
