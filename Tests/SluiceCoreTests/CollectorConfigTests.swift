import Testing
@testable import SluiceCore

@Suite struct CollectorConfigTests {
    static let base = """
    receivers:
      otlp:
        protocols:
          http:
            endpoint: ${env:HOST:-0.0.0.0}:4318
    exporters:
      debug:
        verbosity: ${VERBOSITY}
      file/audit:
        path: ${file:/secrets/path}
    service:
      shutdown_timeout: 10s
      pipelines:
        logs/audit:
          receivers: [otlp]
          exporters: [debug, file/audit]
    """

    func load(_ text: String, overrides: [String] = [], env: [String: String] = ["VERBOSITY": "normal"]) -> CollectorConfig {
        CollectorConfig.load(text: text, file: "collector.yaml", overrides: overrides,
                             substitution: ConfigSubstitution(environment: env, readFile: { $0 == "/secrets/path" ? "/data/audit.jsonl\n" : nil }))
    }

    @Test func readsPipelinesAndSubstitutes() throws {
        let config = load(Self.base)
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics.all)")
        let pipeline = try #require(config.pipelines.first)
        #expect(pipeline.id.description == "logs/audit")
        #expect(pipeline.signal == .logs)
        #expect(pipeline.exporters.map(\.description) == ["debug", "file/audit"])
        #expect(config.shutdownTimeout == .seconds(10))
        let receiver = try #require(config.receivers.first?.config)
        #expect(receiver.map("protocols")?.map("http")?.string("endpoint") == "0.0.0.0:4318")
        let debug = try #require(config.exporters.first { $0.id.type == "debug" }?.config)
        #expect(debug.string("verbosity") == "normal")
        let file = try #require(config.exporters.first { $0.id.type == "file" }?.config)
        #expect(file.string("path") == "/data/audit.jsonl")
    }

    @Test func setOverridesWithDotsAndDoubleColons() throws {
        let config = load(Self.base, overrides: ["exporters.debug.verbosity=detailed", "exporters::file/audit::path=/tmp/x"])
        #expect(config.exporters.first { $0.id.type == "debug" }?.config.string("verbosity") == "detailed")
        #expect(config.exporters.first { $0.id.type == "file" }?.config.string("path") == "/tmp/x")
    }

    @Test func unknownKeyNamesLineAndSuggestion() {
        let config = load(Self.base.replacingOccurrences(of: "shutdown_timeout", with: "shutdown_timout"))
        #expect(config.diagnostics.all.map(\.description).contains("collector.yaml:12 service.shutdown_timout: unknown key (did you mean shutdown_timeout?)"),
                "\(config.diagnostics.all)")
    }

    @Test func undefinedComponentAndBadPipelineAreReported() {
        let text = Self.base.replacingOccurrences(of: "exporters: [debug, file/audit]", with: "exporters: [debug, fille/audit]")
            .replacingOccurrences(of: "logs/audit:", with: "events:")
        let messages = load(text).diagnostics.all.map(\.description)
        #expect(messages.contains { $0.contains("'events' is not a pipeline id") }, "\(messages)")
        let withBadExporter = load(Self.base.replacingOccurrences(of: "exporters: [debug, file/audit]", with: "exporters: [debug, fille/audit]"))
        #expect(withBadExporter.diagnostics.all.contains { $0.description.contains("fille/audit is not defined under exporters (did you mean file/audit?)") })
    }

    @Test func unreadableFileReferenceIsAnError() {
        let config = CollectorConfig.load(text: Self.base, file: "c.yaml", substitution: ConfigSubstitution(environment: [:], readFile: { _ in nil }))
        #expect(config.diagnostics.all.contains { $0.description.contains("cannot read /secrets/path") && $0.line == 10 })
    }

    @Test func invalidYAMLHasALine() {
        let config = load("receivers:\n  otlp: [\n")
        #expect(config.diagnostics.all.first?.message.hasPrefix("not valid YAML") == true)
        #expect(config.diagnostics.all.first?.line != nil)
    }

    @Test(arguments: [("200ms", Duration.milliseconds(200)), ("1h30m", .seconds(5400)), ("1.5s", .milliseconds(1500)), ("0", .zero), ("24h", .seconds(86400))])
    func goDurations(text: String, expected: Duration) {
        #expect(parseGoDuration(text) == expected)
    }

    @Test func durationsWithoutUnitsAreRefused() {
        #expect(parseGoDuration("5") == nil)
        #expect(parseGoDuration("5 parsecs") == nil)
    }

    @Test func substitutionRules() throws {
        let s = ConfigSubstitution(environment: ["A": "x", "EMPTY": ""], readFile: { _ in nil })
        #expect(try s.expand("${A}-${env:A}-${env:MISSING:-d}-${EMPTY:-e}-$$A") == "x-x-d-e-$A")
        #expect(throws: ConfigSubstitution.Failure.self) { try s.expand("${vault:secret}") }
        #expect(throws: ConfigSubstitution.Failure.self) { try s.expand("${A") }
    }

    /// A key written twice names both lines and never prints the file, which may
    /// hold a token (issue 16).
    @Test func aDuplicatedKeyNamesBothLinesAndNotTheFile() {
        let text = """
        receivers:
          otlp:
            protocols:
              http:
        exporters:
          splunk_hec:
            token: "00000000-SECRET-TOKEN-0000"
            endpoint: https://splunk:8088/services/collector

            # the second one
            token: "11111111-SECRET-TOKEN-1111"
        service:
          pipelines:
            logs:
              receivers: [otlp]
              exporters: [splunk_hec]
        """
        let config = load(text)
        #expect(config.diagnostics.all.map(\.description) == ["collector.yaml:11 exporters.splunk_hec.token: duplicated (first at line 7); keep one"])
        let top = load("a: 1\nb: 2\na: 3\n")
        #expect(top.diagnostics.all.map(\.description) == ["collector.yaml:3 a: duplicated (first at line 1); keep one"])
        let flow = load("exporters: {debug: {}, debug: {}}\n")
        #expect(flow.diagnostics.all.count == 1 && !flow.diagnostics.all[0].description.contains("{"))
    }

    @Test func problemsAreInLineOrder() {
        let diagnostics = ConfigDiagnostics(file: "c.yaml")
        diagnostics.report(line: 9, path: "b", "second")
        diagnostics.report(line: 3, path: "a", "first")
        diagnostics.report(line: 9, path: "c", "third")
        diagnostics.report(line: nil, path: "", "whole file")
        #expect(diagnostics.all.map(\.message) == ["whole file", "first", "second", "third"])
        diagnostics.warn(line: 2, path: "w", "once")
        diagnostics.warn(line: 2, path: "w", "once")
        #expect(diagnostics.warnings.count == 1)
    }

    /// Values read as the Collector reads them (issue 16, item 4).
    @Test func valuesAreReadTheCollectorsWay() throws {
        let config = load("""
        exporters:
          debug:
            timeout: 5_000_000_000
            limit: 1_000
            ratio: 0.000_5
            size: 64_MiB
            tls:
              ca_file: ""
              cert_file: ""
              key_file: ""
        """)
        let section = try #require(config.exporters.first?.config)
        #expect(section.duration("timeout") == .seconds(5))
        #expect(section.int("limit") == 1000)
        #expect(section.double("ratio") == 0.0005)
        #expect(section.byteSize("size") == 64 << 20)
        let tls = TLSSettings(section.map("tls"))
        #expect(tls.caFile == nil && tls.certFile == nil && tls.keyFile == nil)
        #expect(config.diagnostics.all.filter { $0.path != "service" }.isEmpty, "\(config.diagnostics.all)")
        #expect(config.diagnostics.warnings.map(\.description) == [
            "collector.yaml:3 exporters.debug.timeout: 5_000_000_000 has no unit: read as 5s (nanoseconds, as the Collector reads a bare number); write 5s if that is meant, or the value with its unit",
        ])
    }

    /// sending_queue: `batch` is read, the keys that change nothing are named.
    @Test func sendingQueueBatchIsReadAndOtherKeysAreNamed() throws {
        let config = load("""
        exporters:
          debug:
            sending_queue:
              enabled: false
              num_consumers: 10
              block_on_overflow: true
              wait_for_result: true
              batch:
                flush_timeout: 1s
                min_size: 1000
                max_size: 2000
        """)
        let queue = QueueSettings(try #require(config.exporters.first?.config.map("sending_queue")))
        #expect(queue.batch == BatchShape(sendBatchSize: 1000, timeout: .seconds(1), sendBatchMaxSize: 2000))
        let warned = config.diagnostics.warnings.map(\.path)
        #expect(warned == ["exporters.debug.sending_queue.enabled", "exporters.debug.sending_queue.num_consumers",
                           "exporters.debug.sending_queue.block_on_overflow", "exporters.debug.sending_queue.wait_for_result"], "\(warned)")
        let bytes = load("exporters:\n  debug:\n    sending_queue:\n      batch: {sizer: bytes}\n")
        _ = QueueSettings(try #require(bytes.exporters.first?.config.map("sending_queue")))
        #expect(bytes.diagnostics.all.contains { $0.path.hasSuffix("batch.sizer") })
    }

    /// An unset variable without a default becomes empty, as in the Collector, with
    /// a warning: `${env:MY_POD_IP}:4317` would otherwise bind every interface quietly.
    @Test func anUnsetVariableIsNamed() {
        let config = load("""
        receivers:
          otlp:
            protocols:
              grpc:
                endpoint: ${env:MY_POD_IP}:4317
              http:
                endpoint: ${env:MY_POD_IP:-127.0.0.1}:4318
        """, env: [:])
        #expect(config.diagnostics.warnings.map(\.description) == [
            "collector.yaml:5 receivers.otlp.protocols.grpc.endpoint: ${MY_POD_IP} is not set in the environment and becomes empty; set it, or give a default with ${env:MY_POD_IP:-value}",
        ])
    }
}
