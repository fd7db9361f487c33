import Logging
import Testing
import SluiceCore
import SluiceOTLP
@testable import SluiceComponents

/// A logs batch of gateway events: each record's `action` attribute and body.
func gatewayLogs(_ records: [(action: String, body: String)]) throws -> OTLPBatch {
    try OTLPBatch.makeLogs(resource: [OTLPKeyValue(key: Array("service.name".utf8), value: .text("ai-gateway"))], scopeName: "gateway.audit",
                           records: records.map { action, body in
                               var record = NewLogRecord()
                               record.attributes = [OTLPKeyValue(key: Array("action".utf8), value: .text(action))]
                               record.body = .text(body)
                               return record
                           })
}

/// The `action` attribute of every record left in a logs batch, in order.
func actions(_ batch: OTLPBatch) -> [String] {
    batch.withLogs { request in request.records.map { $0.record.attributes["action"]?.stringValue ?? "-" } } ?? []
}

@Suite struct FilterProcessorTests {
    let metrics = MetricsRegistry()

    /// `section` is the filter's settings, indented under `processors.filter`.
    func make(_ section: String) -> (FilterProcessor?, [ConfigDiagnostic], [ConfigDiagnostic]) {
        let indented = section.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n    ")
        let yaml = "processors:\n  filter:\n    \(indented)\nservice:\n  pipelines: {}\n"
        let loaded = CollectorConfig.load(text: yaml, file: "collector.yaml")
        guard let config = loaded.processors.first?.config else { return (nil, loaded.diagnostics.all, []) }
        let made = FilterProcessorFactory().make(id: ComponentID("filter")!, config: config,
                                                 context: ComponentContext(logger: Logger(label: "test"), metrics: metrics))
        return (made as? FilterProcessor, loaded.diagnostics.all, loaded.diagnostics.warnings)
    }

    func counter(_ name: String) -> Double? {
        metrics.snapshot().first { $0.name == name }?.series.first?.value
    }

    @Test func aRecordMatchingAnyConditionIsDroppedAndCounted() throws {
        let (filter, problems, _) = make("""
            error_mode: ignore
            logs:
              log_record:
                - 'attributes["action"] == "allow"'
                - IsMatch(body, "^health check")
            """)
        let processor = try #require(filter, "\(problems)")
        let batch = try gatewayLogs([("allow", "ok"), ("block", "prompt injection"), ("escalate", "health check passed"), ("redact", "pii")])
        guard case .pass(let dropped) = processor.process(batch) else { Issue.record("refused"); return }
        #expect(dropped == 2)
        #expect(actions(batch) == ["block", "redact"])
        #expect(batch.itemCount == 2)
        #expect(counter("sluice_processor_filter_logs_filtered_total") == 2)
        // Spans pass a logs-only filter untouched.
        let spans = try OTLPBatch.decode(json: Array(#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"x"}]}]}]}"#.utf8), signal: .traces)
        guard case .pass(0) = processor.process(spans) else { Issue.record("spans were filtered"); return }
    }

    @Test func spansAreFilteredByTheirOwnConditions() throws {
        let (filter, problems, _) = make("""
            traces:
              span:
                - name == "GET /healthz" and kind == SPAN_KIND_SERVER
            """)
        let processor = try #require(filter, "\(problems)")
        let json = #"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"GET /healthz","kind":2},{"name":"POST /v1/chat","kind":2},{"name":"GET /healthz","kind":3}]}]}]}"#
        let batch = try OTLPBatch.decode(json: Array(json.utf8), signal: .traces)
        guard case .pass(let dropped) = processor.process(batch) else { Issue.record("refused"); return }
        #expect(dropped == 1)
        #expect(batch.withTraces { $0.spans.map(\.record.name.string) } == ["POST /v1/chat", "GET /healthz"])
        #expect(counter("sluice_processor_filter_spans_filtered_total") == 1)
    }

    @Test func everyRecordDroppedLeavesAnEmptyRequest() throws {
        let (filter, _, _) = make("logs:\n  log_record: ['true']")
        let batch = try gatewayLogs([("allow", "a"), ("allow", "b")])
        guard case .pass(2) = try #require(filter).process(batch) else { Issue.record("not all dropped"); return }
        #expect(batch.itemCount == 0)
        #expect(batch.withLogs { $0.resourceLogs.count } == 0)
    }

    @Test func errorModes() throws {
        // attributes["action"]["x"]: a key on a string fails on every record.
        let condition = #"'attributes["action"]["x"] == "y" or attributes["action"] == "allow"'"#
        let (propagating, _, _) = make("logs:\n  log_record: [\(condition)]")
        let batch = try gatewayLogs([("allow", "a"), ("block", "b")])
        guard case .refuse(.unprocessable(let why), _) = try #require(propagating).process(batch) else {
            Issue.record("propagate did not refuse")
            return
        }
        #expect(why == #"processor filter: condition attributes["action"]["x"] == "y" or attributes["action"] == "allow" failed: type Str does not support string indexing (key "x")"#)
        #expect(RefusalReason.unprocessable(why).httpStatus == 400)

        for mode in ["ignore", "silent"] {
            let (ignoring, _, _) = make("error_mode: \(mode)\nlogs:\n  log_record: [\(condition), 'attributes[\"action\"] == \"block\"']")
            let again = try gatewayLogs([("allow", "a"), ("block", "b"), ("redact", "c")])
            // The failing condition counts as not met; the next one still drops "block".
            guard case .pass(1) = try #require(ignoring).process(again) else { Issue.record("\(mode) did not pass"); return }
            #expect(actions(again) == ["allow", "redact"])
        }
        #expect(counter("sluice_processor_filter_condition_failures_total") == Double(1 + 3 + 3))
    }

    /// A bad condition is reported at the file's line and at the column of the bad
    /// token, however the YAML writes the string.
    @Test(arguments: [
        // plain: `        - attributes["action"] = "allow"` on line 5
        ("logs:\n  log_record:\n    - attributes[\"action\"] = \"allow\"", "collector.yaml:5:32 processors.filter.logs.log_record[0]: '=' is not an operator; compare with ==, !=, <, <=, > or >= — in: attributes[\"action\"] = \"allow\""),
        // single-quoted: the quote takes a column
        ("logs:\n  log_record:\n    - 'attributes[\"action\"] == nope'", "collector.yaml:5:36 processors.filter.logs.log_record[0]: unknown path nope in the log context; known: attributes, body, severity_number, severity_text, event_name, time_unix_nano, observed_time_unix_nano, flags, dropped_attributes_count, resource.attributes, resource.dropped_attributes_count, instrumentation_scope.name, instrumentation_scope.version, instrumentation_scope.attributes — in: attributes[\"action\"] == nope"),
        // double-quoted: each \" is two columns in the file, one character in the value
        ("logs:\n  log_record: [\"attributes[\\\"action\\\"] == \\\"allow\\\" andd true\"]", "collector.yaml:4:57 processors.filter.logs.log_record[0]: expected and, or, or the end of the condition, found 'andd' — in: attributes[\"action\"] == \"allow\" andd true"),
        // a folded block: the second line of the condition
        ("traces:\n  span:\n    - >\n      name == \"GET /healthz\"\n      and kind == SPAN_KIND_SERVERR", "collector.yaml:7:23 processors.filter.traces.span[0]: unknown enum SPAN_KIND_SERVERR; known: SPAN_KIND_CLIENT, SPAN_KIND_CONSUMER, SPAN_KIND_INTERNAL, SPAN_KIND_PRODUCER, SPAN_KIND_SERVER, SPAN_KIND_UNSPECIFIED, STATUS_CODE_ERROR, STATUS_CODE_OK, STATUS_CODE_UNSET — in: name == \"GET /healthz\" and kind == SPAN_KIND_SERVERR"),
    ])
    func badConditionsPointAtTheirLineAndColumn(_ section: String, _ expected: String) {
        let (filter, problems, _) = make(section)
        #expect(filter == nil)
        #expect(problems.map(\.description) == [expected])
    }

    @Test func keysSluiceDoesNotImplementAreRefusedByName() {
        let (filter, problems, _) = make("""
            logs:
              include:
                match_type: strict
                bodies: [noise]
            traces:
              span: ['name == "x"']
              spanevent: ['name == "y"']
            metrics:
              metric: ['name == "z"']
            """)
        #expect(filter == nil)
        #expect(problems.map(\.path) == ["processors.filter.logs.include", "processors.filter.traces.spanevent", "processors.filter.metrics"])
        #expect(problems[0].message.hasPrefix("the filter processor's include/exclude (match_type) settings are not supported by Sluice; write OTTL conditions instead"))
        #expect(problems[1].message.hasPrefix("span events cannot be filtered by Sluice"))
        #expect(problems[2].message.hasPrefix("Sluice's filter processor does not filter metrics"))
    }

    @Test func contextInferredConditions() throws {
        let (filter, problems, warnings) = make("""
            log_conditions:
              - log.attributes["action"] == "allow"
              - resource.attributes["service.name"] == "noisy"
            """)
        let processor = try #require(filter, "\(problems)")
        #expect(warnings.isEmpty)
        let batch = try gatewayLogs([("allow", "a"), ("block", "b")])
        guard case .pass(1) = processor.process(batch) else { Issue.record("not filtered"); return }
        #expect(actions(batch) == ["block"])
        let (empty, _, emptyWarnings) = make("error_mode: ignore")
        #expect(empty != nil)
        #expect(emptyWarnings.map(\.message) == ["no conditions: every record passes; add logs.log_record or traces.span conditions"])
    }
}
