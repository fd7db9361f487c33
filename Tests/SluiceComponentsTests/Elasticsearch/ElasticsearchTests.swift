import Foundation
import NIOCore
import Testing
import SluiceCore
@testable import SluiceComponents

/// The elasticsearch exporter without sockets: dated index names, bulk answers read
/// item by item, documents in each mapping mode, and mistakes in its section named
/// by key.
@Suite struct ElasticsearchTests {
    // MARK: Index names

    @Test func indexNamesCarryTheRecordsDateInUTC() {
        // 2026-11-21T23:59:59.5Z and one second later.
        let late: UInt64 = 1_795_305_599_500_000_000, next = late + 1_000_000_000
        #expect(IndexName("siem-events-%{+yyyy.MM.dd}").render(late) == "siem-events-2026.11.21")
        #expect(IndexName("siem-events-%{+yyyy.MM.dd}").render(next) == "siem-events-2026.11.22")
        #expect(IndexName("a-%{+yy-MM}-%{+HH}").render(late) == "a-26-11-23")
        #expect(IndexName("plain").render(late) == "plain")
        var logstash = ElasticsearchConfig.LogstashFormat()
        logstash.enabled = true
        #expect(IndexName("logs-generic-default", logstash: logstash).render(late) == "logs-generic-default-2026.11.21")
        #expect(IndexName.civil(0) == (1970, 1, 1, 0))
        #expect(IndexName.civil(951_782_400 * 1_000_000_000) == (2000, 2, 29, 0))
    }

    @Test func badIndexNamesAreRefusedWithTheReason() {
        #expect(IndexName.problem("Siem") != nil)
        #expect(IndexName.problem("siem events") != nil)
        #expect(IndexName.problem("_siem") != nil)
        #expect(IndexName.problem("siem-%{+yyyy.MM.dd") != nil)
        #expect(IndexName.problem("siem-%{[service]}")?.contains("logs_dynamic_index") == true)
        #expect(IndexName.problem("siem-%{+yyyy.MM.dd}") == nil)
    }

    // MARK: Bulk answers

    @Test func bulkAnswersAreReadItemByItem() throws {
        let answer = #"{"took":3,"errors":true,"items":[{"create":{"_index":"i","_id":"a","status":201}},{"create":{"_index":"i","_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},{"create":{"_index":"i","_id":"c","status":429,"error":{"type":"es_rejected_execution_exception","reason":"busy"}}},{"create":{"_index":"i","_id":"d","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [model]"}}},{"create":{"_index":"i","_id":"e","status":503}}]}"#
        let results = try #require(BulkResponse.results(ByteBuffer(string: answer), retryOn: [429, 500, 502, 503, 504]))
        #expect(results.count == 5)
        #expect(results[0] == .delivered && results[1] == .delivered)
        guard case .retry(let busy) = results[2], case .refused(let mapping) = results[3], case .retry = results[4] else {
            Issue.record("\(results)")
            return
        }
        #expect(busy.contains("429") && busy.contains("es_rejected_execution_exception"))
        #expect(mapping.contains("400") && mapping.contains("mapper_parsing_exception") && mapping.contains("failed to parse field [model]"))
        // Without errors the items are counted, not parsed; a page that is no bulk answer is nil.
        let ok = #"{"took":1,"errors":false,"items":[{"create":{"_id":"x}{","status":201}},{"create":{"status":201,"_shards":{"total":2}}}]}"#
        #expect(BulkResponse.results(ByteBuffer(string: ok), retryOn: [429]) == [.delivered, .delivered])
        #expect(BulkResponse.results(ByteBuffer(string: "<html>bad gateway</html>"), retryOn: [429]) == nil)
        // With the spaces other writers put after ':' and ','.
        let spaced = #"{"took": 1, "errors": false, "items": [{"create": {"_index": "i", "_id": "a", "_version": 1, "result": "created", "status": 201}}, {"create": {"_index": "i", "_id": "b", "status": 201}}]}"#
        #expect(BulkResponse.results(ByteBuffer(string: spaced), retryOn: [429]) == [.delivered, .delivered])
        // A reason that holds "status": and braces inside its string changes nothing.
        let tricky = #"{"took":1,"errors":true,"items":[{"create":{"status":400,"error":{"type":"x","reason":"bad {\"status\":201} ]"}}},{"create":{"status":201}}]}"#
        let read = try #require(BulkResponse.results(ByteBuffer(string: tricky), retryOn: [429]))
        #expect(read.count == 2 && read[1] == .delivered)
        if case .refused(let why) = read[0] { #expect(why.contains("status 400") && why.contains("bad {\"status\":201} ]")) } else { Issue.record("\(read)") }
    }

    // MARK: Documents

    @Test func eachRecordIsAnActionLineAndADocumentWithAStableID() throws {
        let config = try #require(parse("endpoint: http://es:9200\nmapping: {mode: raw}\nlogs_index: siem-%{+yyyy.MM.dd}").0)
        let batch = try OTLPBatch.decode(json: Array(Self.logs.utf8), signal: .logs)
        let out = BulkEncoder(config).encode([batch], signal: .logs)
        #expect(out.records.count == 2 && out.unencodable.isEmpty)
        let lines = String(decoding: out.records.bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 5 && lines[4].isEmpty, "two lines per record, and a final newline")
        let action = try json(lines[0])["create"] as? [String: Any]
        #expect(action?["_index"] as? String == "siem-2023.11.14")
        #expect(action?["_id"] as? String == "evt-1")
        let document = try json(lines[1])
        #expect(document["action"] as? String == "block" && document["@timestamp"] as? String == "2023-11-14T22:13:20.000Z")
        #expect(document["Resource.service.name"] as? String == "ai-gateway")
        // Without an event_id the id is the document's hash: the same each time.
        let second = try json(lines[2])["create"] as? [String: Any]
        let again = BulkEncoder(config).encode([batch], signal: .logs).records
        let id = try #require(second?["_id"] as? String)
        #expect(id.count == 32 && String(decoding: again.bytes, as: UTF8.self).contains(id))
    }

    @Test func bodymapWithoutAMapBodyIsRefusedAlone() throws {
        let config = try #require(parse("endpoint: http://es:9200\nmapping: {mode: bodymap}").0)
        let batch = try OTLPBatch.decode(json: Array(Self.logs.utf8), signal: .logs)
        let out = BulkEncoder(config).encode([batch], signal: .logs)
        #expect(out.unencodable.keys.sorted() == [0, 1])
        #expect(out.unencodable[0]?.contains("bodymap") == true)
    }

    @Test func spansInEachMode() throws {
        let spans = #"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"gw"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"POST /v1/chat","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000250000000","status":{"code":2,"message":"blocked"},"attributes":[{"key":"action","value":{"stringValue":"block"}}]}]}]}]}"#
        let batch = try OTLPBatch.decode(json: Array(spans.utf8), signal: .traces)
        for (mode, check) in [("otel", { (d: [String: Any]) in d["duration"] as? Int == 250_000_000 && (d["status"] as? [String: Any])?["code"] as? String == "Error" }),
                              ("ecs", { d in d["event.duration"] as? Int == 250_000_000 && d["event.outcome"] as? String == "failure" && d["action"] as? String == "block" }),
                              ("none", { d in d["Duration"] as? Int == 250_000 && d["Attributes.action"] as? String == "block" && d["Kind"] as? String == "Server" })] {
            let config = try #require(parse("endpoint: http://es:9200\nmapping: {mode: \(mode)}").0)
            let out = BulkEncoder(config).encode([batch], signal: .traces)
            let lines = String(decoding: out.records.bytes, as: UTF8.self).split(separator: "\n")
            #expect((try json(lines[0])["create"] as? [String: Any])?["_index"] as? String == "traces-generic-default")
            #expect(check(try json(lines[1])), "\(mode): \(lines[1])")
        }
    }

    // MARK: The section

    @Test func mistakesAreNamedByKey() {
        let cases: [(String, String)] = [
            ("logs_index: x", "endpoint"),
            ("endpoint: elasticsearch:9200", "endpoint"),
            ("endpoint: http://es:9200\nendpoints: [http://es2:9200]", "endpoints"),
            ("endpoint: http://es:9200\ncloudid: abc", "cloudid"),
            ("endpoint: http://es:9200\nmapping: {mode: flat}", "mapping.mode"),
            ("endpoint: http://es:9200\nlogs_index: Siem", "logs_index"),
            ("endpoint: http://es:9200\nretry: {retry_on_status: [200]}", "retry.retry_on_status"),
            ("endpoint: http://es:9200\napi_key: k\nuser: u", "api_key"),
            ("endpoint: http://es:9200\nauth: {authenticator: basicauth}", "auth.authenticator"),
            ("endpoint: http://es:9200\nflush: {bytes: 10}", "flush.bytes"),
            ("endpoint: http://es:9200\nsurprise: 1", "surprise"),
        ]
        for (section, key) in cases {
            let (config, diagnostics) = parse(section)
            #expect(config == nil, "\(section)")
            #expect(diagnostics.contains { $0.path.hasSuffix(key) }, "\(section): \(diagnostics.map(\.description))")
        }
    }

    @Test func keysWithoutEffectAreWarnedByName() throws {
        let (config, problems, warned) = parseWithWarnings("endpoint: http://es:9200\nnum_workers: 4\nflush: {interval: 30s}\nretry: {max_retries: 3}\nidle_conn_timeout: 5s")
        #expect(config != nil && problems.isEmpty)
        let warnings = warned.map(\.description).joined(separator: "\n")
        for key in ["num_workers", "flush.interval", "retry.max_retries", "idle_conn_timeout"] { #expect(warnings.contains(key), "\(key): \(warnings)") }
    }

    @Test func credentialsBecomeTheAuthorizationHeaderAndAreSecrets() throws {
        let basic = try #require(parse("endpoint: http://es:9200\nuser: elastic\npassword: changeme-123").0)
        #expect(basic.authorization == "Basic " + Data("elastic:changeme-123".utf8).base64EncodedString())
        #expect(SecretMask(basic.secrets)("wrong password changeme-123") == "wrong password [REDACTED]")
        let key = try #require(parse("endpoint: http://es:9200\napi_key: VnVhQ2ZHY0JDZGJrUQ==").0)
        #expect(key.authorization == "ApiKey VnVhQ2ZHY0JDZGJrUQ==")
        #expect(key.http.gzip, "gzip is the default")
    }

    // MARK: Helpers

    /// Two records of 2023-11-14T22:13:20Z: one with an event_id, one without.
    static let logs = #"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"ai-gateway"}}]},"scopeLogs":[{"logRecords":[{"timeUnixNano":"1700000000000000000","body":{"stringValue":"blocked"},"attributes":[{"key":"event_id","value":{"stringValue":"evt-1"}},{"key":"action","value":{"stringValue":"block"}}]},{"timeUnixNano":"1700000000000000000","body":{"stringValue":"no id"}}]}]}]}"#

    func json(_ line: Substring) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    func parse(_ section: String) -> (ElasticsearchConfig?, [ConfigDiagnostic]) {
        let (config, problems, _) = parseWithWarnings(section)
        return (config, problems)
    }

    func parseWithWarnings(_ section: String) -> (ElasticsearchConfig?, [ConfigDiagnostic], [ConfigDiagnostic]) {
        let (map, diagnostics) = exporterSection("elasticsearch", section)
        guard let map else { return (nil, diagnostics.all, []) }
        let config = ElasticsearchConfig(map, extensions: [:], environment: [:])
        return (config, diagnostics.all, diagnostics.warnings)
    }
}
