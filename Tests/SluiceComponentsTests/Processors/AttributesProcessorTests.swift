import SluiceCore
import SluiceOTLP
import Testing
@testable import SluiceComponents

@Suite struct AttributesProcessorTests {
    func run(_ section: String, _ records: [String]) throws -> OTLPBatch {
        let (processor, diagnostics) = makeProcessor("attributes", section)
        #expect(diagnostics.errorLines == [])
        let batch = try logsBatch(records)
        guard case .pass(dropped: 0)? = processor?.process(batch) else {
            Issue.record("processor refused or missing")
            return batch
        }
        return batch
    }

    @Test func insertUpdateUpsertFollowTheCollector() throws {
        let batch = try run("""
        actions:
          - {key: tenant, value: acme, action: insert}
          - {key: user_id, value: ignored, action: insert}
          - {key: user_id, value: u-0, action: update}
          - {key: missing, value: x, action: update}
          - {key: region, value: eu, action: upsert}
          - {key: action, value: escalate, action: UPSERT}
        """, [record(["user_id": "u-42", "action": "block"]), record(["action": "allow", "tenant": "other"])])
        let first = recordAttributes(batch)[0], second = recordAttributes(batch)[1]
        #expect(first["tenant"] == .text("acme") && first["user_id"] == .text("u-0") && first["region"] == .text("eu") && first["action"] == .text("escalate"))
        #expect(first["missing"] == nil)
        #expect(second["tenant"] == .text("other") && second["user_id"] == .text("u-0") && second["action"] == .text("escalate"))
    }

    @Test func valuesAreTypedAsTheCollectorReadsYAML() throws {
        let batch = try run("""
        actions:
          - {key: n, value: 42, action: insert}
          - {key: d, value: 0.5, action: insert}
          - {key: b, value: true, action: insert}
          - {key: s, value: "42", action: insert}
          - {key: list, value: [a, 1], action: insert}
          - {key: obj, value: {x: 1}, action: insert}
        """, [record([:])])
        let attributes = recordAttributes(batch)[0]
        #expect(attributes["n"] == .int(42) && attributes["d"] == .double(0.5) && attributes["b"] == .bool(true) && attributes["s"] == .text("42"))
        #expect(attributes["list"] == .array([.text("a"), .int(1)]))
        #expect(attributes["obj"] == .map([OTLPKeyValue("x", .int(1))]))
    }

    @Test func fromAttributeCopiesAValueAndDoesNothingWithoutIt() throws {
        let batch = try run("""
        actions:
          - {key: user, from_attribute: user_id, action: insert}
          - {key: user_id, from_attribute: absent, action: upsert}
        """, [record(["user_id": "u-42"])])
        let attributes = recordAttributes(batch)[0]
        #expect(attributes["user"] == .text("u-42") && attributes["user_id"] == .text("u-42"))
    }

    @Test func deleteByKeyAndByPattern() throws {
        let batch = try run("""
        actions:
          - {key: prompt, action: delete}
          - {pattern: ^secret\\., action: delete}
        """, [record(["prompt": "hi", "secret.a": "1", "secret.b": "2", "not.secret.c": "3", "keep": "k"])])
        #expect(recordAttributes(batch)[0].keys.sorted() == ["keep", "not.secret.c"])
    }

    @Test func hashIsSHA256OfTheValueAsTheCollectorEncodesIt() throws {
        let json = #"{"attributes":[{"key":"user_id","value":{"stringValue":"u-42"}},{"key":"n","value":{"intValue":"42"}},{"key":"flag","value":{"boolValue":true}},{"key":"score","value":{"doubleValue":0.5}},{"key":"list","value":{"arrayValue":{"values":[{"stringValue":"a"}]}}}]}"#
        let batch = try run("""
        actions:
          - {key: user_id, action: hash}
          - {pattern: ^(n|flag|score|list)$, action: hash}
        """, [json])
        let attributes = recordAttributes(batch)[0]
        // python3: hashlib.sha256(b'u-42'), sha256(struct.pack('<q', 42)), sha256(b'\x01'), sha256(struct.pack('<d', 0.5))
        #expect(attributes["user_id"]?.string == "16ec525b74b75626eb93ecad8acc749885fcf4e83c95b139342769a4ab1828a3")
        #expect(attributes["n"]?.string == "ed049108bc18f2c64369e8d0ea42850bdd1a7d1dd340cfde716315579702a76c")
        #expect(attributes["flag"]?.string == "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a")
        #expect(attributes["score"]?.string == "4cfa5b42ca669328764e67cd9a34bb8f90b16ed7ca8d85e8443783d7ccce15ed")
        #expect(attributes["list"]?.string == "")
    }

    @Test func extractSetsOneAttributePerNamedGroup() throws {
        let batch = try run("""
        actions:
          - key: http.url
            pattern: ^(?P<http_protocol>.*):\\/\\/(?P<http_domain>[^/]+)(?P<http_path>\\/[^?]*)?
            action: extract
        """, [record(["http.url": "https://api.example.com/v1/chat?x=1", "http_domain": "old"]), record(["http.url": "not a url"])])
        let first = recordAttributes(batch)[0]
        #expect(first["http_protocol"] == .text("https") && first["http_domain"] == .text("api.example.com") && first["http_path"] == .text("/v1/chat"))
        #expect(recordAttributes(batch)[1]["http_protocol"] == nil)
    }

    @Test func convertChangesTypesAndLeavesWhatCannotBeConverted() throws {
        let json = #"{"attributes":[{"key":"a","value":{"stringValue":"42"}},{"key":"b","value":{"stringValue":"4x"}},{"key":"c","value":{"doubleValue":3.9}},{"key":"d","value":{"intValue":"7"}},{"key":"e","value":{"boolValue":true}},{"key":"f","value":{"stringValue":"2.5"}}]}"#
        let batch = try run("""
        actions:
          - {key: a, action: convert, converted_type: int}
          - {key: b, action: convert, converted_type: int}
          - {key: c, action: convert, converted_type: int}
          - {key: d, action: convert, converted_type: string}
          - {key: e, action: convert, converted_type: double}
          - {key: f, action: convert, converted_type: double}
        """, [json])
        let attributes = recordAttributes(batch)[0]
        #expect(attributes["a"] == .int(42) && attributes["b"] == .text("4x") && attributes["c"] == .int(3))
        #expect(attributes["d"] == .text("7") && attributes["e"] == .double(1) && attributes["f"] == .double(2.5))
    }

    @Test func includeAndExcludeSelectRecords() throws {
        let section = """
        include:
          match_type: strict
          attributes: [{key: action, value: block}]
        exclude:
          match_type: regexp
          log_bodies: ["^test "]
        actions:
          - {key: routed, value: true, action: insert}
        """
        let batch = try run(section, [record(["action": "block"], body: "blocked"), record(["action": "allow"], body: "allowed"),
                                      record(["action": "block"], body: "test traffic")])
        #expect(recordAttributes(batch).map { $0["routed"] } == [.bool(true), nil, nil])
    }

    @Test func resourcesAndServicesAreMatchedOnTheResource() throws {
        let section = """
        include:
          match_type: regexp
          services: ["^ai-"]
          resources: [{key: service.name, value: gateway$}]
        actions:
          - {key: seen, value: 1, action: insert}
        """
        let (processor, _) = makeProcessor("attributes", section)
        let matching = try logsBatch([record([:])])
        let other = try logsBatch(resource: #"{"key":"service.name","value":{"stringValue":"billing"}}"#, [record([:])])
        _ = processor?.process(matching)
        _ = processor?.process(other)
        #expect(recordAttributes(matching)[0]["seen"] == .int(1))
        #expect(recordAttributes(other)[0]["seen"] == nil)
    }

    @Test func spansAreMatchedByNameAndEdited() throws {
        let (processor, _) = makeProcessor("attributes", """
        include: {match_type: strict, span_names: [chat]}
        actions: [{key: user_id, action: delete}]
        """)
        let json = #"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"chat","attributes":[{"key":"user_id","value":{"stringValue":"u"}}]},{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","name":"embed","attributes":[{"key":"user_id","value":{"stringValue":"u"}}]}]}]}]}"#
        let batch = try OTLPBatch.decode(json: Array(json.utf8), signal: .traces)
        _ = processor?.process(batch)
        let remaining = batch.withTraces { $0.spans.map { _, _, span in span.attributes.count } }
        #expect(remaining == [0, 1])
    }

    @Test func metricDataPointsAreEdited() throws {
        let (processor, _) = makeProcessor("attributes", "include: {match_type: regexp, metric_names: [^req]}\nactions: [{key: env, value: prod, action: insert}]")
        let json = #"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"requests","sum":{"dataPoints":[{"asInt":"3","timeUnixNano":"1"}],"aggregationTemporality":2,"isMonotonic":true}},{"name":"latency","histogram":{"dataPoints":[{"count":"1","timeUnixNano":"1"}],"aggregationTemporality":2}}]}]}]}"#
        let batch = try OTLPBatch.decode(json: Array(json.utf8), signal: .metrics)
        _ = processor?.process(batch)
        var envs: [String] = []
        batch.forEachMetricPoint { point in envs.append(point.attributes["env"]?.stringValue ?? "-") }
        #expect(envs == ["prod", "-"])
    }

    @Test func aChangedBatchIsStoredEdited() throws {
        let batch = try run("actions: [{key: user_id, action: delete}]", [record(["user_id": "u-42"])])
        #expect(batch.isEdited)
        #expect(!batch.withProtobuf { Array($0) }.containsSequence(Array("u-42".utf8)))
    }

    @Test func mistakesAreErrorsNamingTheActionAndKey() {
        let (processor, diagnostics) = makeProcessor("attributes", """
        actions:
          - {key: a, action: insrt, value: 1}
          - {action: insert, value: 1}
          - {key: a, action: insert, from_context: metadata.tenant}
          - {key: a, action: extract, pattern: "^(\\\\w+)-(?P<b>x)"}
          - {key: a, action: convert, converted_type: float}
          - {key: a, action: delete, value: 1}
          - {action: hash}
          - {key: a, action: extract, pattern: "(?P<x"}
        include: {match_type: strict, span_kinds: [server]}
        """)
        #expect(processor == nil)
        let lines = diagnostics.errorLines.joined(separator: "\n")
        for expected in ["processors.attributes.actions[0].action: 'insrt' is not one of", "(did you mean insert?)",
                         "processors.attributes.actions[1].key: missing: insert needs the key",
                         "processors.attributes.actions[2].from_context: Sluice's receivers do not pass client metadata",
                         "processors.attributes.actions[3].pattern: has a group without a name",
                         "processors.attributes.actions[4].converted_type: 'float' is not one of int, double, string",
                         "processors.attributes.actions[5].value: delete does not use value",
                         "processors.attributes.actions[6].key: missing: hash needs key, pattern",
                         "processors.attributes.actions[7].pattern: '(?P<x' is not a valid regular expression",
                         "processors.attributes.include.span_kinds: is not supported"] {
            #expect(lines.contains(expected), "\(expected) not in\n\(lines)")
        }
        #expect(diagnostics.all.allSatisfy { $0.line != nil })
    }

    @Test func unknownKeysInAnActionAreNamed() {
        let (_, diagnostics) = makeProcessor("attributes", "actions: [{key: a, action: upsert, value: 1, vaule: 2}]")
        #expect(diagnostics.errorLines.contains { $0.contains("actions[0].vaule: unknown key (did you mean value?)") })
    }
}

@Suite struct ResourceProcessorTests {
    @Test func actionsRunOnEveryResource() throws {
        let (processor, diagnostics) = makeProcessor("resource", """
        attributes:
          - {key: deployment.environment, value: prod, action: upsert}
          - {key: service.name, action: hash}
          - {key: host.name, action: delete}
        """)
        #expect(diagnostics.errorLines == [])
        let batch = try logsBatch(resource: #"{"key":"service.name","value":{"stringValue":"u-42"}},{"key":"host.name","value":{"stringValue":"node-1"}}"#, [record([:])])
        #expect(processor?.process(batch) != nil)
        let resource = resourceAttributes(batch)[0]
        #expect(resource["deployment.environment"] == .text("prod"))
        #expect(resource["service.name"]?.string == "16ec525b74b75626eb93ecad8acc749885fcf4e83c95b139342769a4ab1828a3")
        #expect(resource["host.name"] == nil)
    }

    @Test func aResourcelessEntryGetsOne() throws {
        let (processor, _) = makeProcessor("resource", "attributes: [{key: k8s.pod.name, value: gw-0, action: insert}]")
        let batch = try OTLPBatch.decode(json: Array(#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}"#.utf8), signal: .logs)
        _ = processor?.process(batch)
        #expect(resourceAttributes(batch)[0]["k8s.pod.name"] == .text("gw-0"))
    }

    @Test func attributesAreRequired() {
        let (processor, diagnostics) = makeProcessor("resource", "actions: []")
        #expect(processor == nil)
        #expect(diagnostics.errorLines.contains { $0.contains("processors.resource.attributes: missing") })
        #expect(diagnostics.errorLines.contains { $0.contains("processors.resource.actions: unknown key") })
    }
}

extension Array where Element == UInt8 {
    func containsSequence(_ needle: [UInt8]) -> Bool {
        guard needle.count <= count else { return false }
        return (0...(count - needle.count)).contains { Array(self[$0..<($0 + needle.count)]) == needle }
    }
}
