import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import Testing
import SluiceCore
@testable import SluiceNet
@testable import SluiceComponents

/// The exporter's handling of HEC's answers, against an in-process fake HEC and a
/// fake clock: 413 splitting, per-event 400s, a revoked token, retries that resend
/// only the rest, indexer acknowledgements. (Tests/e2e/test_splunk_hec.py does the
/// same end to end against hec_server.py.)
@Suite struct SplunkHECExporterTests {
    static let token = "11111111-2222-3333-4444-555555555555"

    @Test func splitsOn413UntilEverythingFits() async throws {
        let hec = FakeHEC()
        hec.maxBody = 3000
        let exporter = makeExporter(hec) { $0.compress = false }
        let first = batch(count: 200, prefix: "a")
        #expect(await exporter.export([first], signal: .logs) == .delivered)
        #expect(hec.eventIDs == Set((0..<200).map { "a-\($0)" }))
        #expect(hec.duplicates.isEmpty)
        #expect(hec.accepted.allSatisfy { $0.body.count <= 3000 })
        let firstRefusals = hec.statuses[413] ?? 0
        #expect(firstRefusals > 0)
        // The limit Splunk showed is remembered: the next batch meets fewer 413s.
        hec.reset()
        #expect(await exporter.export([batch(count: 200, prefix: "b")], signal: .logs) == .delivered)
        #expect(hec.eventIDs.count == 200)
        #expect((hec.statuses[413] ?? 0) < firstRefusals)
    }

    @Test func aSingleEventRefusedWith413GoesToTheDeadLetterFileAlone() async throws {
        let hec = FakeHEC()
        hec.maxBody = 3000
        let exporter = makeExporter(hec) { $0.compress = false }
        let records = (0..<10).map { i in record(id: "e-\(i)", body: i == 4 ? String(repeating: "x", count: 4000) : "ok \(i)") }
        let input = try logs(records)
        guard case .partiallyDelivered(let rejected, let reason) = await exporter.export([input], signal: .logs) else {
            Issue.record("expected a partial delivery")
            return
        }
        #expect(reason.contains("413"))
        #expect(rejected.count == 1 && rejected[0].itemCount == 1)
        #expect(try eventIDs(of: rejected[0]) == ["e-4"])
        #expect(hec.eventIDs == Set((0..<10).filter { $0 != 4 }.map { "e-\($0)" }))
        // Splunk refused about 4000 bytes: an event of 2800 (over half of that, under
        // HEC's real 3000) is still tried alone, and taken.
        let second = try logs([record(id: "f-0", body: String(repeating: "z", count: 2600)), record(id: "f-1", body: "small")])
        #expect(await exporter.export([second], signal: .logs) == .delivered)
        #expect(hec.eventIDs.isSuperset(of: ["f-0", "f-1"]))
    }

    @Test func anEventOverMaxEventSizeIsRefusedAloneWithoutBeingSent() async throws {
        let hec = FakeHEC()
        let exporter = makeExporter(hec) { $0.maxEventSize = 1024 }
        let input = try logs((0..<5).map { i in record(id: "e-\(i)", body: i == 2 ? String(repeating: "y", count: 2000) : "ok") })
        guard case .partiallyDelivered(let rejected, let reason) = await exporter.export([input], signal: .logs) else {
            Issue.record("expected a partial delivery")
            return
        }
        #expect(reason.contains("max_event_size"))
        #expect(try eventIDs(of: rejected[0]) == ["e-2"])
        #expect(hec.eventIDs == ["e-0", "e-1", "e-3", "e-4"])
        #expect(hec.requests.count == 1)
    }

    @Test func anEventHECCannotReadIsRefusedAloneWithItsCode() async throws {
        let hec = FakeHEC()
        hec.badEventIDs = ["e-13"]
        let exporter = makeExporter(hec)
        let input = try logs((0..<40).map { record(id: "e-\($0)", body: "ok") })
        guard case .partiallyDelivered(let rejected, let reason) = await exporter.export([input], signal: .logs) else {
            Issue.record("expected a partial delivery")
            return
        }
        #expect(reason.contains("HTTP 400") && reason.contains("code 6"), "\(reason)")
        #expect(try eventIDs(of: rejected[0]) == ["e-13"])
        #expect(hec.eventIDs == Set((0..<40).filter { $0 != 13 }.map { "e-\($0)" }))
        #expect(hec.duplicates.isEmpty)
    }

    @Test func refusalsForDifferentReasonsAreDeadLetteredTogether() async throws {
        let hec = FakeHEC()
        hec.badEventIDs = ["e-7"]
        let exporter = makeExporter(hec) { $0.maxEventSize = 1024 }
        let input = try logs((0..<12).map { record(id: "e-\($0)", body: $0 == 3 ? String(repeating: "w", count: 1500) : "ok") })
        guard case .partiallyDelivered(let rejected, let reason) = await exporter.export([input], signal: .logs) else {
            Issue.record("expected a partial delivery")
            return
        }
        #expect(reason.hasPrefix("2 events refused: 1× "), "\(reason)")
        #expect(reason.contains("max_event_size") && reason.contains("code 6"))
        #expect(rejected.count == 1)
        #expect(try eventIDs(of: rejected[0]) == ["e-3", "e-7"])
        #expect(hec.eventIDs.count == 10)
    }

    @Test func aRefusedSpanIsCopiedBackAsASpan() async throws {
        let hec = FakeHEC()
        let exporter = makeExporter(hec) { $0.maxEventSize = 2048 }
        let spans = (0..<3).map { i in
            #"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"00000000000000\#(10 + i)","name":"s\#(i)","startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{"key":"blob","value":{"stringValue":"\#(String(repeating: "b", count: i == 1 ? 3000 : 1))"}}]}"#
        }
        let json = #"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"gw"}}]},"scopeSpans":[{"spans":[\#(spans.joined(separator: ","))]}]}]}"#
        let batch = try OTLPBatch.decode(json: Array(json.utf8), signal: .traces)
        guard case .partiallyDelivered(let rejected, _) = await exporter.export([batch], signal: .traces) else {
            Issue.record("expected a partial delivery")
            return
        }
        let names = try #require(rejected.first?.withTraces { request in
            request.resourceSpans.flatMap { $0.scopeSpans.flatMap { $0.spans.map(\.name.string) } }
        })
        #expect(names == ["s1"])
        #expect(hec.received.count == 2)
    }

    @Test func aRevokedTokenIsPermanentAndNeverShown() async throws {
        let hec = FakeHEC()
        hec.revoked = true
        let exporter = makeExporter(hec)
        let outcome = await exporter.export([batch(count: 3, prefix: "r")], signal: .logs)
        guard case .permanent(let reason) = outcome else {
            Issue.record("expected a permanent failure, got \(outcome)")
            return
        }
        #expect(reason.contains("401"))
        #expect(!reason.contains(Self.token))
        // Every request carried the token exactly as HEC wants it.
        #expect(hec.requests.allSatisfy { $0.headers.first(name: "Authorization") == "Splunk \(Self.token)" })
    }

    @Test func maskingTheTokenLeavesSplunksWordsReadable() async throws {
        // Issue 21: with the token `tok`, a 401 read "Invalid [REDACTED]en".
        for token in ["tok", "oken", "Invalid"] {
            let exporter = makeExporter(FakeHEC()) { $0.token = .init(value: token) }
            let outcome = await exporter.export([batch(count: 1, prefix: "t")], signal: .logs)
            guard case .permanent(let reason) = outcome else {
                Issue.record("expected a permanent failure, got \(outcome)")
                continue
            }
            let expected = token == "Invalid" ? "[REDACTED] token (code 4)" : "Invalid token (code 4)"
            #expect(reason.contains(expected), "token \(token): \(reason)")
            #expect(reason.contains("check the HEC token"))
        }
    }

    @Test func aRetryResendsOnlyWhatWasNotDelivered() async throws {
        let hec = FakeHEC()
        hec.busyAfter = 2  // two payloads are taken, then 503
        let exporter = makeExporter(hec) {
            $0.compress = false
            $0.maxContentLengthLogs = 2048
        }
        let input = batch(count: 100, prefix: "p")
        let outcome = await exporter.export([input], signal: .logs)
        #expect(outcome == .retryable(reason: "HTTP 503 from Splunk HEC http://hec.test:8088/services/collector/event: Server is busy (code 9)", after: .seconds(3)))
        let delivered = hec.eventIDs.count
        #expect(delivered > 0 && delivered < 100)
        hec.busyAfter = nil
        #expect(await exporter.export([input], signal: .logs) == .delivered)
        #expect(hec.eventIDs.count == 100)
        #expect(hec.duplicates.isEmpty, "\(hec.duplicates)")
    }

    @Test func acknowledgedBatchesAreDelivered() async throws {
        let hec = FakeHEC()
        hec.acks = true
        hec.pollsBeforeAck = 2
        let clock = HECTestClock()
        let exporter = makeExporter(hec, clock: clock) {
            $0.indexerAck.enabled = true
            $0.compress = false
            $0.maxContentLengthLogs = 4096
        }
        #expect(await exporter.export([batch(count: 60, prefix: "k")], signal: .logs) == .delivered)
        #expect(hec.eventIDs.count == 60)
        #expect(hec.ackPolls >= 2)
        let channels = Set(hec.requests.map { $0.headers.first(name: "X-Splunk-Request-Channel") })
        #expect(channels.count == 1)
        let channel = try #require(channels.first ?? nil)
        #expect(UUID(uuidString: channel) != nil)
    }

    @Test func unacknowledgedPayloadsAreSentAgain() async throws {
        let hec = FakeHEC()
        hec.acks = true
        hec.neverAck = true
        let clock = HECTestClock()
        let exporter = makeExporter(hec, clock: clock) {
            $0.indexerAck.enabled = true
            $0.indexerAck.timeout = .seconds(5)
        }
        let input = batch(count: 10, prefix: "u")
        let outcome = await exporter.export([input], signal: .logs)
        guard case .retryable(let reason, _) = outcome else {
            Issue.record("expected a retry, got \(outcome)")
            return
        }
        #expect(reason.contains("not acknowledged"))
        #expect(clock.elapsed >= .seconds(5))
        hec.neverAck = false
        #expect(await exporter.export([input], signal: .logs) == .delivered)
        // Sent twice: a duplicate in Splunk, never a loss.
        #expect(hec.received.count == 20)
    }

    @Test func overlongRetryAfterAndNetworkErrorsAreRetryable() async throws {
        let hec = FakeHEC()
        hec.failConnections = true
        let exporter = makeExporter(hec)
        guard case .retryable(let reason, nil) = await exporter.export([batch(count: 2, prefix: "n")], signal: .logs) else {
            Issue.record("expected a retry")
            return
        }
        #expect(reason.contains("cannot send"))
    }

    // MARK: Configuration

    @Test func collectorConfigurationIsAccepted() throws {
        let (config, diagnostics) = parse("""
        token: "00000000-0000-0000-0000-0000000000000"
        endpoint: "https://splunk:8088/services/collector"
        source: "otel"
        sourcetype: "otel"
        index: "metrics"
        max_connections: 200
        disable_compression: false
        timeout: 10s
        tls:
          insecure_skip_verify: false
        splunk_app_name: "OpenTelemetry-Collector Splunk Exporter"
        splunk_app_version: "v0.0.1"
        max_content_length_logs: 1048576
        max_event_size: 1000000
        otel_attrs_to_hec_metadata:
          source: my.source
          index: my.index
        otel_to_hec_fields:
          severity_text: otel.log.severity.text
        health_check_enabled: true
        heartbeat:
          interval: 30s
        log_data_enabled: true
        retry_on_failure:
          max_elapsed_time: 60s
        sending_queue:
          queue_size: 100
        """)
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let c = try #require(config)
        #expect(c.eventPath == "/services/collector/event")
        #expect(c.ackPath == "/services/collector/ack")
        #expect(c.healthPath == "/services/collector/health")
        #expect(c.maxContentLengthLogs == 1_048_576 && c.maxContentLengthTraces == 2 << 20)
        #expect(c.maxEventSize == 1_000_000)
        #expect(c.metadataAttributes.source == "my.source" && c.metadataAttributes.sourcetype == "com.splunk.sourcetype")
        #expect(c.severityTextField == "otel.log.severity.text")
        #expect(c.timeout == .seconds(10))
        #expect(c.heartbeat.interval == .seconds(30))
        #expect(c.appName == "OpenTelemetry-Collector Splunk Exporter")
    }

    @Test func defaultsAndEndpointPaths() throws {
        let c = try #require(parse("endpoint: http://splunk:8088\ntoken: t").0)
        #expect(c.eventPath == "/services/collector/event")
        #expect(c.compress && !c.indexerAck.enabled && c.fieldsMode == .indexed)
        #expect(c.maxContentLengthLogs == 2 << 20 && c.maxEventSize == 5 << 20)
        #expect(c.indexerAck.timeout == .seconds(60) && c.indexerAck.pollInterval == .seconds(1))
        #expect(c.appName == "Sluice")
        #expect(try #require(parse("endpoint: http://splunk:8088/services/collector/event\ntoken: t").0).eventPath == "/services/collector/event")
        let proxied = try #require(parse("endpoint: http://proxy/splunk/services/collector\ntoken: t").0)
        #expect(proxied.eventPath == "/splunk/services/collector/event" && proxied.ackPath == "/splunk/services/collector/ack")
        let acked = try #require(parse("endpoint: http://s:8088\ntoken: t\nindexer_ack:\n  enabled: true\n  timeout: 2m\n  poll_interval: 250ms\nfields_mode: both").0)
        #expect(acked.indexerAck == .init(enabled: true, timeout: .seconds(120), pollInterval: .milliseconds(250)))
        #expect(acked.fieldsMode == .both)
    }

    @Test func problemsAreReportedWithoutTheToken() {
        let secret = "very-secret-token-value"
        let (config, diagnostics) = parse("""
        endpoint: splunk:8088
        token: \(secret)
        max_content_lenght_logs: 10
        fields_mode: raw
        indexer_ack:
          enabled: yes
          timout: 5s
        """)
        #expect(config == nil)
        let text = diagnostics.map(\.description).joined(separator: "\n")
        #expect(text.contains("endpoint"))
        #expect(text.contains("max_content_lenght_logs: unknown key (did you mean max_content_length_logs?)"), "\(text)")
        #expect(text.contains("fields_mode"))
        #expect(text.contains("indexer_ack.timout: unknown key"))
        #expect(!text.contains(secret))
        let missing = parse("endpoint: http://s:8088").1.map(\.description).joined()
        #expect(missing.contains("token: missing"))
    }

    @Test func theTokenNeverPrints() throws {
        let c = try #require(parse("endpoint: http://s:8088\ntoken: abc-secret").0)
        #expect("\(c.token)" == "[REDACTED]")
        #expect(!"\(c)".contains("abc-secret"))
    }

    // MARK: Helpers

    func parse(_ section: String) -> (SplunkHECConfig?, [ConfigDiagnostic]) {
        let (map, diagnostics) = exporterSection("splunk_hec", section)
        guard let map else { return (nil, diagnostics.all) }
        let config = SplunkHECConfig(map)
        return (config, diagnostics.all)
    }

    func makeExporter(_ hec: FakeHEC, clock: HECTestClock = HECTestClock(), _ adjust: (inout SplunkHECConfig) -> Void = { _ in }) -> SplunkHECExporter {
        var config = SplunkHECConfig(endpoint: HTTPEndpoint("http://hec.test:8088")!, token: Self.token)
        adjust(&config)
        return SplunkHECExporter(id: ComponentID(type: "splunk_hec"), config: config, transport: hec, logger: Logger(label: "test"),
                                 metrics: MetricsRegistry(), sleep: { clock.advance($0) }, now: { clock.now })
    }

    func record(id: String, body: String) -> String {
        #"{"timeUnixNano":"1700000000000000000","body":{"stringValue":"\#(body)"},"attributes":[{"key":"event_id","value":{"stringValue":"\#(id)"}},{"key":"action","value":{"stringValue":"block"}}]}"#
    }

    func logs(_ records: [String]) throws -> OTLPBatch {
        let json = #"{"resourceLogs":[{"resource":{},"scopeLogs":[{"logRecords":[\#(records.joined(separator: ","))]}]}]}"#
        return try OTLPBatch.decode(json: Array(json.utf8), signal: .logs)
    }

    func batch(count: Int, prefix: String) -> OTLPBatch {
        try! logs((0..<count).map { record(id: "\(prefix)-\($0)", body: "policy decision \($0) for the request") })
    }

    func eventIDs(of batch: OTLPBatch) throws -> [String] {
        try #require(batch.withLogs { request in
            request.resourceLogs.flatMap { $0.scopeLogs.flatMap { $0.logRecords.map { $0.attributes["event_id"]?.stringValue ?? "" } } }
        })
    }
}

/// Time that passes only when the code under test sleeps.
final class HECTestClock: Sendable {
    private let offset = Mutex<Duration>(.zero)
    private let start = ContinuousClock.now
    var now: ContinuousClock.Instant { start + offset.withLock { $0 } }
    var elapsed: Duration { offset.withLock { $0 } }
    func advance(_ duration: Duration) { offset.withLock { $0 += duration } }
}

/// An in-process HEC: reads payloads as HEC does and answers as told.
final class FakeHEC: HTTPTransport, @unchecked Sendable {
    // @unchecked: every stored property is read and written under `lock`.
    struct Request {
        var target: String
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    private let lock = NSLock()
    private var _requests: [Request] = []
    private var _accepted: [Request] = []
    private var _received: [[String: Any]] = []
    private var _statuses: [Int: Int] = [:]
    private var _nextAck: UInt64 = 0
    private var _pendingAcks: [UInt64: Int] = [:]
    private var _ackPolls = 0
    private var _taken = 0
    var maxBody: Int? { get { locked { _maxBody } } set { locked { _maxBody = newValue } } }
    var badEventIDs: Set<String> { get { locked { _badEventIDs } } set { locked { _badEventIDs = newValue } } }
    var revoked: Bool { get { locked { _revoked } } set { locked { _revoked = newValue } } }
    var busyAfter: Int? { get { locked { _busyAfter } } set { locked { _busyAfter = newValue } } }
    var acks: Bool { get { locked { _acks } } set { locked { _acks = newValue } } }
    var pollsBeforeAck: Int { get { locked { _pollsBeforeAck } } set { locked { _pollsBeforeAck = newValue } } }
    var neverAck: Bool { get { locked { _neverAck } } set { locked { _neverAck = newValue } } }
    var failConnections: Bool { get { locked { _failConnections } } set { locked { _failConnections = newValue } } }
    private var _maxBody: Int?
    private var _badEventIDs: Set<String> = []
    private var _revoked = false
    private var _busyAfter: Int?
    private var _acks = false
    private var _pollsBeforeAck = 0
    private var _neverAck = false
    private var _failConnections = false

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    var requests: [Request] { locked { _requests } }
    var accepted: [Request] { locked { _accepted } }
    var received: [[String: Any]] { locked { _received } }
    var statuses: [Int: Int] { locked { _statuses } }
    var ackPolls: Int { locked { _ackPolls } }
    var eventIDs: Set<String> { Set(received.compactMap { ($0["fields"] as? [String: Any])?["event_id"] as? String }) }
    var duplicates: [String: Int] {
        var counts: [String: Int] = [:]
        for event in received { if let id = (event["fields"] as? [String: Any])?["event_id"] as? String { counts[id, default: 0] += 1 } }
        return counts.filter { $0.value > 1 }
    }

    func reset() {
        locked {
            _requests = []
            _accepted = []
            _received = []
            _statuses = [:]
        }
    }

    func close() async {}

    func send(_ request: HTTPClientRequest) async throws -> HTTPClientResponse {
        var body = request.body.map { Array($0.readableBytesView) } ?? []
        let (status, answer, headers): (Int, [String: Any], [(String, String)]) = try locked {
            if _failConnections { throw HTTPClientError.connect("hec.test:8088: connection refused") }
            _requests.append(Request(target: request.target, headers: request.headers, body: body))
            if request.headers.first(name: "Authorization") != "Splunk \(SplunkHECExporterTests.token)" || _revoked {
                return (401, ["text": "Invalid token", "code": 4], [])
            }
            if request.target.hasSuffix("/ack") { return ackAnswer(body) }
            if let busyAfter = _busyAfter, _taken >= busyAfter { return (503, ["text": "Server is busy", "code": 9], [("Retry-After", "3")]) }
            if let maxBody = _maxBody, body.count > maxBody { return (413, ["text": "Content too large", "code": 27], []) }
            return (0, [:], [])
        }
        if status != 0 { return response(status, answer, headers) }
        if request.headers.first(name: "Content-Encoding") == "gzip" {
            body = try Decompression.decompress(body, encoding: .gzip, limit: 1 << 30)
        }
        let events = try Self.split(body)
        return locked {
            for (n, event) in events.enumerated() {
                if let id = (event["fields"] as? [String: Any])?["event_id"] as? String, _badEventIDs.contains(id) {
                    return response(400, ["text": "Invalid data format", "code": 6, "invalid-event-number": n], [])
                }
            }
            _taken += 1
            _accepted.append(Request(target: request.target, headers: request.headers, body: Array(request.body!.readableBytesView)))
            _received += events
            var answer: [String: Any] = ["text": "Success", "code": 0]
            if _acks {
                answer["ackId"] = Int(_nextAck)
                _pendingAcks[_nextAck] = 0
                _nextAck += 1
            }
            return response(200, answer, [])
        }
    }

    private func ackAnswer(_ body: [UInt8]) -> (Int, [String: Any], [(String, String)]) {
        _ackPolls += 1
        let ids = ((try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any])?["acks"] as? [Int] ?? []
        var acks: [String: Bool] = [:]
        for id in ids.map(UInt64.init) {
            guard let polls = _pendingAcks[id] else {
                acks[String(id)] = false
                continue
            }
            let done = !_neverAck && polls + 1 >= _pollsBeforeAck
            _pendingAcks[id] = polls + 1
            if done { _pendingAcks[id] = nil }
            acks[String(id)] = done
        }
        return (200, ["acks": acks], [])
    }

    private func response(_ status: Int, _ answer: [String: Any], _ headers: [(String, String)]) -> HTTPClientResponse {
        _statuses[status, default: 0] += 1
        let data = try! JSONSerialization.data(withJSONObject: answer)
        return HTTPClientResponse(status: HTTPResponseStatus(statusCode: status), headers: HTTPHeaders(headers), body: ByteBuffer(bytes: data))
    }

    /// HEC's body: JSON objects back to back.
    static func split(_ body: [UInt8]) throws -> [[String: Any]] {
        var events: [[String: Any]] = []
        var depth = 0, start = 0, inString = false, escaped = false
        for (i, byte) in body.enumerated() {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"):
                if depth == 0 { start = i }
                depth += 1
            case UInt8(ascii: "}"):
                depth -= 1
                if depth == 0 {
                    let object = try JSONSerialization.jsonObject(with: Data(body[start...i]))
                    events.append(try #require(object as? [String: Any]))
                }
            default: break
            }
        }
        try #require(depth == 0 && !inString)
        return events
    }
}
