import Logging
import Synchronization
import Testing
import SluiceCore
import SluiceOTLP
@testable import SluiceComponents

/// The routing connector resolved into the receiver's fanout: each record reaches
/// the logs of the pipelines its route names, through their processors, before
/// the request is answered — without sockets.
@Suite struct RoutingConnectorTests {
    static func yaml(_ routing: String, siemProcessors: String = "[]") -> String {
        """
        receivers:
          otlp:
            protocols:
              http:
                endpoint: 127.0.0.1:0
        processors:
          filter/allow:
            logs:
              log_record: ['attributes["action"] == "allow"']
        exporters:
          nop/siem: {}
          nop/rest: {}
        connectors:
          routing:
        \(routing.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        service:
          pipelines:
            logs/in:
              receivers: [otlp]
              exporters: [routing]
            logs/siem:
              receivers: [routing]
              processors: \(siemProcessors)
              exporters: [nop/siem]
            logs/rest:
              receivers: [routing]
              exporters: [nop/rest]
        """
    }

    /// Builds the service (logs opened, nothing started), sends `batch` through the
    /// receiver's fanout and returns the answer and the actions each pipeline's log got.
    static func send(_ batch: OTLPBatch, through yaml: String, metrics: MetricsRegistry = MetricsRegistry()) async throws
        -> (AcceptResult, [String: [String]]) {
        let config = CollectorConfig.load(text: yaml, file: "collector.yaml")
        let service = try #require(Service.build(config, context: ComponentContext(logger: Logger(label: "test"), metrics: metrics)),
                                   "\(config.diagnostics.all)")
        let generation = service.generation
        var cursors: [String: any LogCursor] = [:]
        for pipeline in generation.pipelines { cursors[pipeline.config.id.description] = pipeline.log.cursor(ComponentID("probe")!) }
        let result = await withCheckedContinuation { continuation in
            generation.slots[ComponentID("otlp")!]!.accept(batch) { continuation.resume(returning: $0) }
        }
        var stored: [String: [String]] = [:]
        for (name, cursor) in cursors {
            let log = generation.pipelines.first { $0.config.id.description == name }!.log
            guard log.lag(ComponentID("probe")!).entries > 0 else { stored[name] = []; continue }
            stored[name] = await cursor.read(.unbatched).flatMap { actions($0.batch) }
        }
        for pipeline in generation.pipelines { pipeline.log.close() }
        return (result, stored)
    }

    @Test func recordsGoToTheirRouteAndTheRestToTheDefault() async throws {
        let routing = """
            default_pipelines: [logs/rest]
            table:
              - context: log
                condition: attributes["action"] == "block"
                pipelines: [logs/siem]
              - statement: route() where attributes["action"] == "escalate"
                context: log
                pipelines: [logs/siem, logs/rest]
            """
        let batch = try gatewayLogs([("block", "1"), ("allow", "2"), ("escalate", "3"), ("block", "4"), ("redact", "5")])
        let (result, stored) = try await Self.send(batch, through: Self.yaml(routing))
        #expect(result == .accepted(rejected: 0, message: nil))
        #expect(stored["logs/siem"]?.sorted() == ["block", "block", "escalate"])
        #expect(stored["logs/rest"]?.sorted() == ["allow", "escalate", "redact"])
        // logs/in only feeds the connector: nothing is kept in its own log.
        #expect(stored["logs/in"] == [])
    }

    @Test func theTargetPipelinesProcessorsRunAndDropsAreReported() async throws {
        let routing = """
            default_pipelines: [logs/siem]
            table:
              - context: log
                condition: attributes["action"] == "redact"
                pipelines: [logs/rest]
            """
        let batch = try gatewayLogs([("allow", "1"), ("block", "2"), ("redact", "3"), ("allow", "4")])
        let (result, stored) = try await Self.send(batch, through: Self.yaml(routing, siemProcessors: "[filter/allow]"))
        #expect(result == .accepted(rejected: 2, message: "2 log records dropped on purpose by the pipeline (filtered, or matching no route)"))
        #expect(stored["logs/siem"] == ["block"])
        #expect(stored["logs/rest"] == ["redact"])
    }

    @Test func withoutADefaultUnroutedRecordsAreDroppedCountedAndReported() async throws {
        let metrics = MetricsRegistry()
        let routing = "table:\n  - context: log\n    condition: attributes[\"action\"] == \"block\"\n    pipelines: [logs/siem]"
        let batch = try gatewayLogs([("block", "1"), ("allow", "2"), ("allow", "3")])
        let (result, stored) = try await Self.send(batch, through: Self.yaml(routing), metrics: metrics)
        #expect(result == .accepted(rejected: 2, message: "2 log records dropped on purpose by the pipeline (filtered, or matching no route)"))
        #expect(stored["logs/siem"] == ["block"])
        #expect(stored["logs/rest"] == [])
        #expect(metrics.snapshot().first { $0.name == "sluice_connector_routing_unrouted_items_total" }?.series.first?.value == 2)
        let config = CollectorConfig.load(text: Self.yaml(routing), file: "collector.yaml")
        Service.check(config, context: ComponentContext(logger: Logger(label: "test"), metrics: MetricsRegistry()))
        #expect(config.diagnostics.warnings.map(\.message).contains { $0.hasPrefix("no default_pipelines: records that match no route are dropped") })
    }

    @Test func theResourceContextIsTheDefault() async throws {
        // As in the Collector: without context, attributes are the resource's.
        let routing = "default_pipelines: [logs/rest]\ntable:\n  - condition: attributes[\"service.name\"] == \"ai-gateway\"\n    pipelines: [logs/siem]"
        let (_, stored) = try await Self.send(try gatewayLogs([("allow", "1"), ("block", "2")]), through: Self.yaml(routing))
        #expect(stored["logs/siem"]?.count == 2)
        #expect(stored["logs/rest"] == [])
    }

    @Test func aFailingConditionRefusesOrGoesToTheDefault() async throws {
        let table = "table:\n  - context: log\n    condition: attributes[\"action\"][\"x\"] == 1\n    pipelines: [logs/siem]"
        let batch = try gatewayLogs([("block", "1")])
        let (refused, nothing) = try await Self.send(batch, through: Self.yaml("default_pipelines: [logs/rest]\n" + table))
        guard case .refused(.unprocessable(let why), _) = refused else { Issue.record("not refused: \(refused)"); return }
        #expect(why.hasPrefix("connector routing: condition attributes[\"action\"][\"x\"] == 1 failed: type Str does not support string indexing"))
        #expect(nothing["logs/siem"] == [] && nothing["logs/rest"] == [])
        let (result, stored) = try await Self.send(try gatewayLogs([("block", "1")]), through: Self.yaml("error_mode: ignore\ndefault_pipelines: [logs/rest]\n" + table))
        #expect(result == .accepted(rejected: 0, message: nil))
        #expect(stored["logs/rest"] == ["block"])
    }

    static func problems(_ yaml: String) -> [String] {
        let config = CollectorConfig.load(text: yaml, file: "collector.yaml")
        Service.check(config, context: ComponentContext(logger: Logger(label: "test"), metrics: MetricsRegistry()))
        return config.diagnostics.all.map(\.description) + config.diagnostics.warnings.map { "warning: \($0)" }
    }

    @Test func configurationMistakesAreNamed() {
        let unknown = Self.problems(Self.yaml("default_pipelines: [logs/rest]\ntable:\n  - condition: 'true'\n    pipelines: [logs/siem, logs/sime]"))
        #expect(unknown == ["collector.yaml:18 connectors.routing.table[0].pipelines: pipeline logs/sime is not defined in service.pipelines (pipelines receiving from routing: logs/rest, logs/siem)"])
        let notReceiving = Self.problems(Self.yaml("default_pipelines: [logs/in]\ntable:\n  - condition: 'true'\n    pipelines: [logs/siem]"))
        #expect(notReceiving == ["collector.yaml:15 connectors.routing.default_pipelines: pipeline logs/in does not list routing among its receivers; add it there, or route elsewhere"])
        let badCondition = Self.problems(Self.yaml("default_pipelines: [logs/rest]\ntable:\n  - statement: route() where attributes[\"a\"] === 1\n    pipelines: [logs/siem]"))
        #expect(badCondition == [#"collector.yaml:17:52 connectors.routing.table[0].statement: '=' is not an operator; compare with ==, !=, <, <=, > or >= — in: route() where attributes["a"] === 1"#])
        let matchOnce = Self.problems(Self.yaml("match_once: false\ndefault_pipelines: [logs/rest]\ntable:\n  - condition: 'true'\n    pipelines: [logs/siem]"))
        #expect(matchOnce == ["warning: collector.yaml:15 connectors.routing.match_once: false has no effect (the Collector removed it in v0.120): each record goes to the first route it matches, never to several; to send a record to several pipelines, list them in one route"])
        let onlyExported = Self.problems("""
            receivers:
              otlp:
                protocols: {http: {endpoint: "127.0.0.1:0"}}
            connectors:
              routing:
                table: [{condition: 'true', pipelines: [logs/in]}]
            service:
              pipelines:
                logs/in:
                  receivers: [otlp]
                  exporters: [routing]
            """)
        #expect(onlyExported.first == "collector.yaml:5 connectors.routing: used as an exporter in logs/in but no pipeline lists it among its receivers")
    }

    @Test func aSealerInAPipelineThatOnlyFeedsConnectorsIsRefused() {
        let yaml = Self.yaml("default_pipelines: [logs/rest]\ntable:\n  - condition: 'true'\n    pipelines: [logs/siem]")
            .replacingOccurrences(of: "processors:\n  filter/allow:", with: "processors:\n  integrity: {}\n  filter/allow:")
            .replacingOccurrences(of: "      receivers: [otlp]\n      exporters: [routing]", with: "      receivers: [otlp]\n      processors: [integrity]\n      exporters: [routing]")
        let problems = Self.problems(yaml)
        #expect(problems.contains { $0.hasSuffix("service.pipelines.logs/in.processors: integrity seals records as they enter a pipeline's log, and logs/in only feeds connectors; list integrity in the pipelines they send to") }, "\(problems)")
    }

    @Test func cyclesAreRefused() {
        let problems = Self.problems("""
            receivers:
              otlp:
                protocols: {http: {endpoint: "127.0.0.1:0"}}
            exporters:
              nop: {}
            connectors:
              routing/a:
                default_pipelines: [logs/b]
                table: [{condition: 'false', pipelines: [logs/b]}]
              routing/b:
                default_pipelines: [logs/a]
                table: [{condition: 'false', pipelines: [logs/a]}]
            service:
              pipelines:
                logs/a:
                  receivers: [otlp, routing/b]
                  exporters: [routing/a]
                logs/b:
                  receivers: [routing/a]
                  exporters: [routing/b, nop]
            """)
        #expect(problems.contains("collector.yaml:15 service.pipelines.logs/a: connectors lead this pipeline back to itself (logs/a → logs/b → logs/a); remove one of the connections"))
    }

    @Test func aReloadSaysWhichConnectorsChanged() {
        let before = CollectorConfig.load(text: Self.yaml("default_pipelines: [logs/rest]\ntable:\n  - condition: 'true'\n    pipelines: [logs/siem]"), file: "c.yaml")
        let after = CollectorConfig.load(text: Self.yaml("default_pipelines: [logs/siem]\ntable:\n  - condition: 'true'\n    pipelines: [logs/rest]"), file: "c.yaml")
        let diff = ConfigDiff(old: before, new: after)
        #expect(diff.connectors.changed == [ComponentID("routing")!])
        #expect(diff.pipelines.kept.count == 3)
    }
}
