import Foundation
import Logging
import Testing
import SluiceCore
@testable import SluiceComponents

/// The datadog exporter without sockets: entries as Datadog's queries read them,
/// payloads within Datadog's limits, the key refused, and its section's mistakes.
@Suite struct DatadogTests {
    @Test func entriesCarryDatadogsReservedAttributesAndTheGatewaysFields() throws {
        let batch = try logsBatch(resource: #"{"key":"service.name","value":{"stringValue":"ai-gateway"}},{"key":"host.name","value":{"stringValue":"gw-7"}},{"key":"deployment.environment.name","value":{"stringValue":"prod"}},{"key":"k8s.namespace.name","value":{"stringValue":"edge"}}"#,
                                  [gatewayRecord("evt-1", extra: #",{"key":"status","value":{"stringValue":"from the attribute"}}"#)])
        let records = DatadogLogEncoder(hostname: "fallback").encode([batch]).records
        let entry = try #require(try JSONSerialization.jsonObject(with: Data(records.bytes)) as? [String: Any])
        #expect(entry["ddsource"] as? String == "opentelemetry")
        #expect(entry["ddtags"] as? String == "env:prod,k8s.namespace.name:edge")
        #expect(entry["hostname"] as? String == "gw-7" && entry["service"] as? String == "ai-gateway")
        #expect(entry["status"] as? String == "warn", "severity 13 is warn; the record's own fields win over its attributes")
        #expect(entry["message"] as? String == "request blocked")
        #expect(entry["timestamp"] as? Int == 1_700_000_000_123)
        // 0x5b8efff798038103d269b633813fc60c: the lower 64 bits, and the span id, in decimal.
        #expect(entry["dd.trace_id"] as? String == "15161849952847513100")
        #expect(entry["dd.span_id"] as? String == "17213210219539181940")
        #expect(entry["event_id"] as? String == "evt-1" && entry["action"] as? String == "block" && entry["tokens.prompt"] as? Int == 42)
    }

    @Test func severitiesBecomeDatadogStatuses() {
        #expect([1, 5, 9, 13, 17, 21, 24].map { DatadogLogEncoder.status(Int32($0), text: "") }
            == ["trace", "debug", "info", "warn", "error", "critical", "critical"])
        #expect(DatadogLogEncoder.status(0, text: "") == "info")
        #expect(DatadogLogEncoder.status(0, text: "NOTICE") == "notice", "without a number, the text as Datadog reads it")
    }

    @Test func payloadsKeepToAThousandEntriesAndFiveMegabytesAndAreJSONArrays() async throws {
        let destination = ScriptedHTTPTransport.answering { _ in (202, "{}", []) }
        let exporter = try makeExporter(destination)
        // 2,500 entries of ~2.6 KB: 1,000 per request by count, and under 5 MB each.
        let body = String(repeating: "b", count: 2500)
        let batch = try logsBatch((0..<2500).map { gatewayRecord("e-\($0)", body: body) })
        #expect(await exporter.export([batch], signal: .logs) == .delivered)
        let sent = destination.requests
        #expect(sent.count == 3)
        var ids: [String] = []
        for request in sent {
            #expect(request.target == "/api/v2/logs")
            #expect(request.headers.first(name: "DD-API-KEY") == "0123456789abcdef0123456789abcdef")
            #expect(request.headers.first(name: "Content-Encoding") == "gzip")
            let entries = try #require(request.json as? [[String: Any]])
            #expect(entries.count <= 1000)
            ids += entries.compactMap { $0["event_id"] as? String }
        }
        #expect(ids == (0..<2500).map { "e-\($0)" })
    }

    @Test func anEntryOverOneMegabyteIsRefusedWithoutBeingSent() async throws {
        let destination = ScriptedHTTPTransport.answering { _ in (202, "{}", []) }
        let exporter = try makeExporter(destination)
        let batch = try logsBatch([gatewayRecord("small"), gatewayRecord("big", body: String(repeating: "x", count: 1_100_000))])
        guard case .partiallyDelivered(let rejected, let reason) = await exporter.export([batch], signal: .logs) else {
            Issue.record("expected a partial delivery")
            return
        }
        #expect(reason.contains("over Datadog's 1 MB per entry"))
        #expect(rejected.count == 1 && rejected[0].itemCount == 1)
        #expect(destination.requests.count == 1 && (destination.requests[0].json as? [Any])?.count == 1)
    }

    @Test func entriesOlderThanEighteenHoursAreDeadLetteredInsteadOfDroppedByDatadog() async throws {
        let destination = ScriptedHTTPTransport.answering { _ in (202, "{}", []) }
        let recent = #"{"timeUnixNano":"1700060000000000000","body":{"stringValue":"recent"},"attributes":[{"key":"event_id","value":{"stringValue":"recent"}}]}"#
        let batch = try logsBatch([gatewayRecord("old"), recent])
        // 19 hours after the gateway record, 2 hours after the recent one.
        let later = Date(timeIntervalSince1970: 1_700_000_000 + 19 * 3600)
        guard case .partiallyDelivered(let rejected, let reason) = await (try makeExporter(destination, now: later)).export([batch], signal: .logs) else {
            Issue.record("expected the old entry refused")
            return
        }
        #expect(reason == "older than logs.max_age (18 h), the oldest from 2023-11-14T22:13:20.123Z (19 h old): Datadog takes logs up to 18 hours old and would drop these after accepting them", "\(reason)")
        #expect(rejected.count == 1 && rejected[0].itemCount == 1)
        #expect(((destination.requests.first?.json as? [[String: Any]]) ?? []).map { $0["event_id"] as? String } == ["recent"])
        // logs.max_age: 0 sends whatever the age.
        let all = ScriptedHTTPTransport.answering { _ in (202, "{}", []) }
        #expect(await (try makeExporter(all, "logs: {max_age: 0s}", now: later)).export([batch], signal: .logs) == .delivered)
        #expect((all.requests.first?.json as? [Any])?.count == 2)
    }

    @Test func a403SaysTheKeyWasRefusedAndNeverShowsIt() async throws {
        let destination = ScriptedHTTPTransport.answering { _ in (403, #"{"errors":["Forbidden"]}"#, []) }
        let exporter = try makeExporter(destination)
        let outcome = await exporter.export([try logsBatch([gatewayRecord("a")])], signal: .logs)
        guard case .permanent(let reason) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect(reason.contains("Datadog refused the API key") && reason.contains("HTTP 403") && reason.contains("api.site (datadoghq.eu)"))
        #expect(exporter.redact("echo 0123456789abcdef0123456789abcdef") == "echo [REDACTED]")
    }

    @Test func aRetryAfterA503SendsOnlyWhatWasNotTaken() async throws {
        // The first 1,000 entries are taken, the next request meets a 503.
        let calls = CallCount()
        let destination = ScriptedHTTPTransport.answering { _ in calls.next() == 2 ? (503, "busy", [("Retry-After", "3")]) : (202, "{}", []) }
        let exporter = try makeExporter(destination)
        let batch = try logsBatch((0..<1500).map { gatewayRecord("r-\($0)") })
        guard case .retryable(_, let after) = await exporter.export([batch], signal: .logs) else {
            Issue.record("the 503 should make the call retryable")
            return
        }
        #expect(after == .seconds(3))
        #expect(await exporter.export([batch], signal: .logs) == .delivered)
        let retried = destination.requests.dropFirst(2).flatMap { ($0.json as? [[String: Any]]) ?? [] }.compactMap { $0["event_id"] as? String }
        #expect(retried == (1000..<1500).map { "r-\($0)" }, "the retry sends only the entries not taken")
    }

    @Test func theSectionsKeysAndMistakes() throws {
        let (map, diagnostics) = exporterSection("datadog", "api: {key: k-1234567890, site: datadoghq.eu}\nlogs: {batch_wait: 5}\nhost_metadata: {enabled: false}")
        let section = try #require(map)
        let config = try #require(DatadogConfig(section))
        #expect(diagnostics.all.isEmpty)
        #expect(config.endpoint.description == "https://http-intake.logs.datadoghq.eu" && config.logsPath == "/api/v2/logs")
        let warnings = diagnostics.warnings.map(\.description).joined(separator: "\n")
        #expect(warnings.contains("logs.batch_wait") && warnings.contains("host_metadata"), "\(warnings)")
        for (section, key) in [("logs: {endpoint: http://x}", "api"), ("api: {key: k}\nlogs: {endpoint: not a url}", "logs"),
                               ("api: {key: k}\nauth: {authenticator: bearertokenauth}", "auth"), ("api: {key: k}\nsurprise: 1", "surprise")] {
            let (map, diagnostics) = exporterSection("datadog", section)
            #expect(map.map { DatadogConfig($0) == nil } ?? true, "\(section)")
            #expect(diagnostics.all.contains { $0.path.hasSuffix(key) }, "\(section): \(diagnostics.all.map(\.description))")
        }
    }

    func makeExporter(_ destination: ScriptedHTTPTransport, _ more: String = "", now: Date = Date(timeIntervalSince1970: 1_700_000_060)) throws -> DatadogExporter {
        let (map, _) = exporterSection("datadog", "api: {key: 0123456789abcdef0123456789abcdef, site: datadoghq.eu}\n\(more)")
        let section = try #require(map)
        let config = try #require(DatadogConfig(section))
        // A minute after the records' time (2023-11-14T22:13:20Z): none is too old for Datadog.
        return DatadogExporter(id: ComponentID("datadog")!, config: config, transport: destination, logger: Logger(label: "test"),
                               now: { now })
    }
}
