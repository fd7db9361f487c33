import SluiceCore
import SluiceOTLP
@testable import SluiceComponents

/// A whole configuration around one component's YAML section: an otlp receiver,
/// and a logs pipeline through the component (a processor or an exporter; `nop`
/// exports when the component is a processor), read as `sluice validate` reads it.
func configAround(_ kind: ComponentKind, _ type: String, _ section: String) -> CollectorConfig {
    let indented = section.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n    ")
    let isProcessor = kind == .processor
    let yaml = """
    receivers:
      otlp:
    \(isProcessor ? "processors" : "exporters"):
      \(type):
        \(indented)
    \(isProcessor ? "exporters:\n  nop:" : "")
    service:
      pipelines:
        logs:
          receivers: [otlp]
          \(isProcessor ? "processors: [\(type)]" : "")
          exporters: [\(isProcessor ? "nop" : type)]
    """
    return CollectorConfig.load(text: yaml, file: "test.yaml")
}

/// A processor built from its YAML section as `sluice run` builds it, with the
/// file's diagnostics (errors and warnings) to look at.
func makeProcessor(_ type: String, _ section: String, metrics: MetricsRegistry = MetricsRegistry()) -> (processor: (any Processor)?, diagnostics: ConfigDiagnostics) {
    let loaded = configAround(.processor, type, section)
    guard let (id, config) = loaded.processors.first, let factory = ComponentRegistry.builtIn.processors[id.type] else { return (nil, loaded.diagnostics) }
    var context = ComponentContext(logger: .init(label: "test"))
    context.metrics = metrics
    return (factory.make(id: id, config: config, context: context), loaded.diagnostics)
}

/// The error and warning lines of a configuration, as `sluice validate` prints them.
extension ConfigDiagnostics {
    var errorLines: [String] { all.map(\.description) }
    var warningLines: [String] { warnings.map(\.description) }
}

/// The attributes of every log record, as owned values by key.
func recordAttributes(_ batch: OTLPBatch) -> [[String: OTLPValue]] {
    batch.withLogs { logs in
        logs.records.map { _, _, record in
            Dictionary(record.attributes.map { ($0.key.string, $0.value.map(OTLPValue.init) ?? .empty) }, uniquingKeysWith: { a, _ in a })
        }
    } ?? []
}

/// The bodies of every log record.
func recordBodies(_ batch: OTLPBatch) -> [OTLPValue?] {
    batch.withLogs { logs in logs.records.map { _, _, record in record.body.map(OTLPValue.init) } } ?? []
}

/// The attributes of each resource.
func resourceAttributes(_ batch: OTLPBatch) -> [[String: OTLPValue]] {
    batch.withLogs { logs in
        logs.resourceLogs.map { resourceLogs in
            Dictionary((resourceLogs.resource?.attributes.map { ($0.key.string, $0.value.map(OTLPValue.init) ?? .empty) }) ?? [], uniquingKeysWith: { a, _ in a })
        }
    } ?? []
}

/// A log record as OTLP/JSON with string attributes and a string body.
func record(_ attributes: [String: String], body: String? = nil) -> String {
    let list = attributes.sorted { $0.key < $1.key }.map { #"{"key":"\#($0.key)","value":{"stringValue":"\#($0.value)"}}"# }.joined(separator: ",")
    let bodyJSON = body.map { #","body":{"stringValue":"\#($0)"}"# } ?? ""
    return #"{"timeUnixNano":"1700000000000000000","attributes":[\#(list)]\#(bodyJSON)}"#
}

extension OTLPValue {
    /// The string of a string value, for short assertions.
    var string: String? {
        if case .string(let bytes) = self { return String(decoding: bytes, as: UTF8.self) }
        return nil
    }
}
