import SluiceCore
import SluiceOTLP
import Testing
@testable import SluiceComponents

@Suite struct RedactionProcessorTests {
    func run(_ section: String, _ batch: OTLPBatch, metrics: MetricsRegistry = MetricsRegistry()) -> ConfigDiagnostics {
        let (processor, diagnostics) = makeProcessor("redaction", section, metrics: metrics)
        #expect(diagnostics.errorLines == [])
        guard case .pass(dropped: 0)? = processor?.process(batch) else {
            Issue.record("processor refused or missing")
            return diagnostics
        }
        return diagnostics
    }

    @Test func keysNotAllowedAreRemovedAndTheSummarySaysWhich() throws {
        let batch = try logsBatch([record(["event_id": "e-1", "prompt": "hi", "user": "ann", "note": "mail ann@example.com"])])
        _ = run("""
        allowed_keys: [event_id, note]
        ignored_keys: [user]
        summary: debug
        """, batch)
        let attributes = recordAttributes(batch)[0]
        #expect(attributes["prompt"] == nil && attributes["user"] == .text("ann") && attributes["event_id"] == .text("e-1"))
        #expect(attributes["note"] == .text("mail [REDACTED:email]"))
        #expect(attributes["redaction.redacted.keys"] == .text("prompt") && attributes["redaction.redacted.count"] == .int(1))
        #expect(attributes["redaction.masked.keys"] == .text("note") && attributes["redaction.masked.count"] == .int(1))
        #expect(attributes["redaction.ignored.count"] == .int(1))
        // The resource's service.name is not allowed either.
        #expect(resourceAttributes(batch)[0]["service.name"] == nil)
    }

    @Test func summaryInfoHasCountsAndSilentNothing() throws {
        let info = try logsBatch([record(["a": "ann@example.com"])])
        _ = run("allow_all_keys: true\nsummary: info", info)
        #expect(recordAttributes(info)[0]["redaction.masked.count"] == .int(1))
        #expect(recordAttributes(info)[0]["redaction.masked.keys"] == nil)
        let silent = try logsBatch([record(["a": "ann@example.com"])])
        _ = run("allow_all_keys: true", silent)
        #expect(recordAttributes(silent)[0].keys.sorted() == ["a"])
    }

    @Test func aSecondProcessorAddsToTheSummary() throws {
        let batch = try logsBatch([record(["a": "ann@example.com", "b": "x"])])
        _ = run("allow_all_keys: true\nsummary: debug\ndetectors: [email]", batch)
        _ = run("allow_all_keys: true\nsummary: debug\nblocked_values: [\"^x$\"]", batch)
        let attributes = recordAttributes(batch)[0]
        #expect(attributes["redaction.masked.keys"] == .text("a,b") && attributes["redaction.masked.count"] == .int(2))
    }

    @Test func blockedValuesAndKeysFollowTheCollector() throws {
        let batch = try logsBatch([record(["card": "4111111111111111", "api_token": "abc", "note": "visa 4111111111111111 ok", "safe": "support@mycompany.com"])])
        _ = run("""
        allow_all_keys: true
        blocked_values: ["4[0-9]{12}(?:[0-9]{3})?", "mycompany"]
        blocked_key_patterns: [".*token.*"]
        allowed_values: [".+@mycompany.com"]
        detectors: []
        """, batch)
        let attributes = recordAttributes(batch)[0]
        #expect(attributes["card"] == .text("****") && attributes["api_token"] == .text("****"))
        #expect(attributes["note"] == .text("visa **** ok"))
        #expect(attributes["safe"] == .text("support@mycompany.com"))
    }

    @Test func hashFunctionsHashTheMatchedPart() throws {
        let batch = try logsBatch([record(["a": "4111111111111111", "b": "secret-value", "c": "4111"])])
        _ = run("allow_all_keys: true\ndetectors: []\nblocked_values: [\"^4[0-9]{15}$\"]\nhash_function: md5", batch)
        #expect(recordAttributes(batch)[0]["a"] == .text("5910f4ea0062a0e29afd3dccc741e3ce"))
        let sha3 = try logsBatch([record(["b": "secret-value"])])
        _ = run("allow_all_keys: true\nblocked_key_patterns: [^b$]\nhash_function: sha3", sha3)
        #expect(recordAttributes(sha3)[0]["b"] == .text("27b3f672a658f46776fdc9868adfd01a7fe6c3da93c53adccf50646aa445c0c4"))
        let sha1 = try logsBatch([record(["c": "4111"])])
        _ = run("allow_all_keys: true\nblocked_values: [\"4111\"]\nhash_function: sha1", sha1)
        #expect(recordAttributes(sha1)[0]["c"] == .text("4d186afe41eb80f94cb4585aabb00a931c46b439"))
    }

    @Test func hashedDetectorsCorrelateOneValueWrittenTwoWays() throws {
        let batch = try logsBatch([record(["a": "card 4111 1111 1111 1111", "b": "4111-1111-1111-1111"])])
        let diagnostics = run("allow_all_keys: true\nhash_function: hmac-sha256\nhmac_key: \(String(repeating: "k", count: 32))", batch)
        #expect(diagnostics.warningLines == [])
        let attributes = recordAttributes(batch)[0]
        // python3: hmac.new(b'k' * 32, b'4111111111111111', hashlib.sha256).hexdigest()
        let hashed = "[REDACTED:card:68461c4333f0d6ffc13ab17a895ccb61b6a8864e96602c4e91c869cfb9ccc6f1]"
        #expect(attributes["a"] == .text("card \(hashed)") && attributes["b"] == .text(hashed))
    }

    @Test func nestedAttributeValuesAndMapBodiesAreScanned() throws {
        let json = #"{"attributes":[{"key":"request","value":{"kvlistValue":{"values":[{"key":"messages","value":{"arrayValue":{"values":[{"stringValue":"I am ann@example.com"},{"kvlistValue":{"values":[{"key":"phone","value":{"stringValue":"+1 415 555 0132"}}]}}]}}}]}}}],"body":{"kvlistValue":{"values":[{"key":"prompt","value":{"stringValue":"card 4111111111111111"}},{"key":"meta","value":{"kvlistValue":{"values":[{"key":"ip","value":{"stringValue":"10.1.2.3"}},{"key":"n","value":{"intValue":"4111111111111111"}}]}}}]}}}"#
        let batch = try logsBatch([json])
        _ = run("allow_all_keys: true\nsummary: debug", batch)
        let text = String(decoding: batch.encodeJSON(), as: UTF8.self)
        #expect(!text.contains("ann@example.com") && !text.contains("415 555") && !text.contains("10.1.2.3"))
        #expect(text.contains(#"{"stringValue":"I am [REDACTED:email]"}"#) && text.contains(#""stringValue":"[REDACTED:phone]""#))
        // A body is read the Collector's way: scalars as text, so the int card is masked too.
        #expect(text.contains(#""key":"n","value":{"stringValue":"[REDACTED:card]"}"#))
        let attributes = recordAttributes(batch)[0]
        #expect(attributes["redaction.masked.keys"] == .text("request"))
        #expect(attributes["redaction.body.masked.keys"] == .text("meta.ip,meta.n,prompt") && attributes["redaction.body.masked.count"] == .int(3))
    }

    @Test func stringBodiesAndRedactAllTypes() throws {
        let json = #"{"body":{"stringValue":"from 10.0.0.1: key sk-proj-abcdefghijklmnopqrstuvwx1234"},"attributes":[{"key":"n","value":{"intValue":"4111111111111111"}}]}"#
        let kept = try logsBatch([json])
        _ = run("allow_all_keys: true\nsummary: info", kept)
        #expect(recordBodies(kept)[0] == .text("from [REDACTED:ip]: key [REDACTED:api_key]"))
        #expect(recordAttributes(kept)[0]["n"] == .int(4111111111111111))
        #expect(recordAttributes(kept)[0]["redaction.body.masked.count"] == .int(1))
        let all = try logsBatch([json])
        _ = run("allow_all_keys: true\nredact_all_types: true", all)
        #expect(recordAttributes(all)[0]["n"] == .text("[REDACTED:card]"))
    }

    @Test func bodyMapsLoseKeysThatAreNotAllowed() throws {
        let json = #"{"attributes":[{"key":"event_id","value":{"stringValue":"e"}}],"body":{"kvlistValue":{"values":[{"key":"event_id","value":{"stringValue":"e"}},{"key":"prompt","value":{"stringValue":"secret"}}]}}}"#
        let batch = try logsBatch([json])
        _ = run("allowed_keys: [event_id]\nsummary: debug", batch)
        #expect(recordBodies(batch)[0] == .map([OTLPKeyValue("event_id", .text("e"))]))
        #expect(recordAttributes(batch)[0]["redaction.body.redacted.keys"] == .text("prompt"))
    }

    @Test func spansEventsScopesAndDataPointsAreScanned() throws {
        let traces = #"{"resourceSpans":[{"scopeSpans":[{"scope":{"name":"s","attributes":[{"key":"owner","value":{"stringValue":"ann@example.com"}}]},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"chat","attributes":[{"key":"ip","value":{"stringValue":"10.0.0.1"}}],"events":[{"name":"e","attributes":[{"key":"ssn","value":{"stringValue":"536-22-1234"}}]}]}]}]}]}"#
        let batch = try OTLPBatch.decode(json: Array(traces.utf8), signal: .traces)
        _ = run("allow_all_keys: true", batch)
        let text = String(decoding: batch.encodeJSON(), as: UTF8.self)
        #expect(!text.contains("ann@example.com") && !text.contains("10.0.0.1") && !text.contains("536-22-1234"))
        let metrics = #"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":[{"asInt":"1","attributes":[{"key":"user","value":{"stringValue":"ann@example.com"}}]}]}}]}]}]}"#
        let points = try OTLPBatch.decode(json: Array(metrics.utf8), signal: .metrics)
        _ = run("allow_all_keys: true", points)
        #expect(!String(decoding: points.encodeJSON(), as: UTF8.self).contains("ann@example.com"))
    }

    @Test func maskedValuesAreCountedByDetector() throws {
        let metrics = MetricsRegistry()
        let batch = try logsBatch([record(["a": "ann@example.com bob@example.com", "b": "4111111111111111"]), record(["c": "x"])])
        _ = run("allowed_keys: [a, b]\nblocked_values: [\"^x$\"]", batch, metrics: metrics)
        let exposition = metrics.exposition()
        #expect(exposition.contains(#"sluice_redaction_masked_values_total{processor="redaction",detector="email"} 2"#))
        #expect(exposition.contains(#"sluice_redaction_masked_values_total{processor="redaction",detector="card"} 1"#))
        // c is not allowed: removed before its value is looked at; service.name too.
        #expect(exposition.contains(#"sluice_redaction_removed_attributes_total{processor="redaction"} 2"#))
    }

    @Test func aBatchWithNothingToMaskStaysUnedited() throws {
        let batch = try logsBatch([record(["event_id": "e-1", "action": "block"], body: "request blocked by policy 7")])
        _ = run("allow_all_keys: true", batch)
        #expect(!batch.isEdited)
    }

    @Test func configurationMistakesAndWarnings() {
        let (processor, diagnostics) = makeProcessor("redaction", """
        allow_all_keys: true
        hash_function: hmac-sha256
        hmac_key: short
        detectors: [email, cards]
        url_sanitizer: {enabled: true}
        blocked_values: ["(unclosed"]
        summary: loud
        """)
        #expect(processor == nil)
        let lines = diagnostics.errorLines.joined(separator: "\n")
        for expected in ["processors.redaction.hmac_key: hmac-sha256 needs hmac_key of at least 32 bytes (5 given)",
                         "processors.redaction.detectors: 'cards' is not a detector (did you mean card?)",
                         "processors.redaction.url_sanitizer: is not supported",
                         "processors.redaction.blocked_values: item 0 '(unclosed' is not a valid regular expression",
                         "processors.redaction.summary: 'loud' is not one of debug, info, silent"] {
            #expect(lines.contains(expected), "\(expected) not in\n\(lines)")
        }
        let (_, failClosed) = makeProcessor("redaction", "hash_function: sha256\nhmac_key: x")
        let warnings = failClosed.warningLines.joined(separator: "\n")
        #expect(warnings.contains("every attribute is removed (the Collector's fail-closed default)"))
        #expect(warnings.contains("processors.redaction.hash_function: an unkeyed hash"))
        #expect(warnings.contains("processors.redaction.hmac_key: has no effect without hash_function: hmac-sha256 or hmac-sha512"))
    }
}

@Suite struct RedactionHostileInputTests {
    /// Text built to make a scanner look back or ahead again and again: every
    /// detector's work per byte is bounded, so these finish, and nothing is found
    /// where there is nothing to find.
    @Test(arguments: [
        String(repeating: "a", count: 200_000) + "@" + String(repeating: "@a", count: 50_000),
        String(repeating: "a:b", count: 70_000) + "@" + String(repeating: "x", count: 10),
        "x@" + String(repeating: "a.", count: 100_000),
        String(repeating: "1", count: 300_000),
        String(repeating: "1 ", count: 150_000),
        String(repeating: "1.", count: 150_000),
        String(repeating: "1:", count: 150_000),
        String(repeating: "+1 ", count: 100_000),
        "eyJ" + String(repeating: "A", count: 300_000) + ".x.y",
        String(repeating: "-----BEGIN ", count: 30_000),
        String(repeating: "Bearer ", count: 40_000),
        String(repeating: "sk-", count: 100_000) + "!",
        String(repeating: "DE89 ", count: 60_000),
    ])
    func pathologicalTextIsScannedInBoundedTime(_ text: String) {
        let scanner = SensitiveDataScanner()
        var text = text
        var matches = 0
        text.withUTF8 { bytes in scanner.scan(bytes) { _, _ in matches += 1 } }
        #expect(matches <= text.utf8.count)
    }
}
