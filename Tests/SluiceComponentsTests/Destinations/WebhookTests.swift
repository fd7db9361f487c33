import Foundation
import Logging
import Testing
import SluiceCore
@testable import SluiceComponents

/// The webhook exporter without sockets: Standard Webhooks signatures (the
/// specification's own example), ids stable across retries, batch and single
/// modes, event_types patterns, and its section's mistakes.
@Suite struct WebhookTests {
    static let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    @Test func theSignatureIsTheSpecificationsExample() throws {
        // The example in the Standard Webhooks specification and its reference libraries.
        let signature = try WebhookSignature(secret: Self.secret)
        #expect(signature.sign(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: Array(#"{"test": 2432232314}"#.utf8))
            == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        // The same key without the prefix.
        let bare = try WebhookSignature(secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        #expect(bare.key == signature.key)
    }

    @Test func secretsThatAreNotKeysAreRefusedWithHowToMakeOne() {
        #expect(throws: WebhookSignature.SecretProblem.notBase64) { try WebhookSignature(secret: "whsec_not base64!") }
        #expect(throws: WebhookSignature.SecretProblem.length(3)) { try WebhookSignature(secret: "whsec_YWJj") }
        #expect(WebhookSignature.SecretProblem.length(3).description.contains("openssl rand -base64 32"))
    }

    @Test func eventTypePatterns() {
        let filter = EventTypeFilter(["policy.*", "blocked", "esc?lated"])
        #expect(filter.matches("policy.block") && filter.matches("policy.") && filter.matches("blocked") && filter.matches("escalated"))
        #expect(!filter.matches("policy") && !filter.matches("blocked2") && !filter.matches("request") && !filter.matches("escaalated"))
        #expect(EventTypeFilter([]).matches("anything"))
        #expect(EventTypeFilter(["*"]).matches(""))
        // Many stars against a long near-miss: linear, not exponential.
        #expect(!EventTypeFilter([String(repeating: "*a", count: 30) + "b"]).matches(String(repeating: "a", count: 5000)))
    }

    @Test func batchesAreSignedArraysOfEventsAndARetryReusesTheID() async throws {
        let calls = CallCount()
        let destination = ScriptedHTTPTransport.answering { _ in calls.next() == 1 ? (503, "", []) : (204, "", []) }
        let clock = WallClock(1_800_000_000)
        let exporter = try makeExporter(destination, "max_batch_size: 2", now: clock)
        let batch = try logsBatch((0..<3).map { gatewayRecord("w-\($0)", type: $0 == 1 ? "escalated" : "blocked") })
        guard case .retryable = await exporter.export([batch], signal: .logs) else {
            Issue.record("the 503 should make the call retryable")
            return
        }
        clock.advance(30)
        #expect(await exporter.export([batch], signal: .logs) == .delivered)
        let sent = destination.requests
        #expect(sent.count == 3, "a first attempt, then both payloads")
        // The retried payload: the same id and body, a new timestamp, a valid signature.
        #expect(sent[0].headers.first(name: "webhook-id") == sent[1].headers.first(name: "webhook-id"))
        #expect(sent[0].bytes == sent[1].bytes)
        #expect(sent[0].headers.first(name: "webhook-timestamp") == "1800000000" && sent[1].headers.first(name: "webhook-timestamp") == "1800000030")
        #expect(sent[1].headers.first(name: "webhook-id") != sent[2].headers.first(name: "webhook-id"))
        let signature = try WebhookSignature(secret: Self.secret)
        for request in sent {
            let id = try #require(request.headers.first(name: "webhook-id")), timestamp = try #require(request.headers.first(name: "webhook-timestamp"))
            #expect(request.headers.first(name: "webhook-signature") == signature.sign(id: id, timestamp: Int64(timestamp)!, body: request.bytes))
            #expect(id.hasPrefix("msg_") && request.target == "/hooks")
        }
        let events = try #require(sent[1].json as? [[String: Any]])
        #expect(events.count == 2)
        #expect(events[1]["type"] as? String == "escalated" && events[0]["timestamp"] as? String == "2023-11-14T22:13:20.123Z")
        let data = try #require(events[0]["data"] as? [String: Any])
        #expect(data["event_id"] as? String == "w-0" && data["action"] as? String == "block" && data["message"] as? String == "request blocked")
        #expect((data["resource"] as? [String: Any])?["service.name"] as? String == "ai-gateway")
    }

    @Test func singleModeSendsOneEventObjectPerRequestAndFiltersByType() async throws {
        let destination = ScriptedHTTPTransport.answering { _ in (200, "", []) }
        let exporter = try makeExporter(destination, "mode: single\nevent_types: [block*]")
        let batch = try logsBatch((0..<4).map { gatewayRecord("s-\($0)", type: $0 % 2 == 0 ? "blocked" : "request") })
        #expect(await exporter.export([batch], signal: .logs) == .delivered)
        let ids = destination.requests.map { (($0.json as? [String: Any])?["data"] as? [String: Any])?["event_id"] as? String }
        #expect(ids == ["s-0", "s-2"])
        #expect(exporter.encode([batch]).skipped == 2)
    }

    @Test func aRefusalSaysWhenTheReceiversClockIsOff() async throws {
        let clock = WallClock(1_800_000_000)
        let receiverTime = HTTPDate.format(Date(timeIntervalSince1970: 1_800_000_000 + 600))
        let destination = ScriptedHTTPTransport.answering { _ in (401, #"{"error":"message timestamp too old"}"#, [("Date", receiverTime)]) }
        let exporter = try makeExporter(destination, now: clock)
        guard case .permanent(let reason) = await exporter.export([try logsBatch([gatewayRecord("k")])], signal: .logs) else {
            Issue.record("a 401 is a refusal")
            return
        }
        #expect(reason.contains("HTTP 401") && reason.contains("600 s ahead of this host's") && reason.contains("5 minutes"), "\(reason)")
        // In step: no word about clocks.
        let inStep = ScriptedHTTPTransport.answering { _ in (401, "bad signature", [("Date", HTTPDate.format(Date(timeIntervalSince1970: 1_800_000_010)))]) }
        guard case .permanent(let plain) = await (try makeExporter(inStep, now: clock)).export([try logsBatch([gatewayRecord("k")])], signal: .logs) else {
            Issue.record("a 401 is a refusal")
            return
        }
        #expect(!plain.contains("clock"))
    }

    @Test func theSectionsMistakesAreNamedByKey() {
        for (section, key) in [("secret: whsec_YWJj", "secret"), ("endpoint: ftp://x", "endpoint"), ("endpoint: http://x\nmode: both", "mode"),
                               ("endpoint: http://x\nevent_types: ['']", "event_types"), ("endpoint: http://x\nmax_payload_bytes: 10", "max_payload_bytes"),
                               ("endpoint: http://x\nheaders: {Webhook-Signature: v1,abc}", "headers")] {
            let (map, diagnostics) = exporterSection("webhook", section)
            #expect(map.map { WebhookConfig($0, extensions: [:]) == nil } ?? true, "\(section)")
            #expect(diagnostics.all.contains { $0.path.hasSuffix(key) }, "\(section): \(diagnostics.all.map(\.description))")
        }
    }

    func makeExporter(_ destination: ScriptedHTTPTransport, _ more: String = "", now: WallClock = WallClock(1_800_000_000)) throws -> WebhookExporter {
        let (map, diagnostics) = exporterSection("webhook", "endpoint: http://receiver:8080/hooks\nsecret: \(Self.secret)\n\(more)")
        let section = try #require(map)
        let config = try #require(WebhookConfig(section, extensions: [:]), "\(diagnostics.all.map(\.description))")
        return WebhookExporter(id: ComponentID("webhook")!, config: config, transport: destination, logger: Logger(label: "test"),
                               now: { now.now })
    }
}
