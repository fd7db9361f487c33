import Foundation
import Yams

/// A component's identity, as the Collector writes it: `type` or `type/name`
/// (`splunk_hec/security`).
public struct ComponentID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let type: String
    public let name: String?

    public init(type: String, name: String? = nil) {
        self.type = type
        self.name = name
    }

    /// `nil` when the text is not a valid id (empty type, empty name, spaces).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let type = String(parts[0])
        guard !type.isEmpty, type.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." }) else { return nil }
        if parts.count == 2 {
            guard !parts[1].isEmpty, !parts[1].contains(where: \.isWhitespace) else { return nil }
            self.init(type: type, name: String(parts[1]))
        } else {
            self.init(type: type)
        }
    }

    public var description: String { name.map { "\(type)/\($0)" } ?? type }
    /// A form safe in file names and metric labels' file paths.
    public var fileSafe: String { description.replacingOccurrences(of: "/", with: "_") }

    public static func < (a: ComponentID, b: ComponentID) -> Bool { a.description < b.description }
}

/// A pipeline: `logs`, `traces`, `metrics`, or a named one such as `logs/audit`.
public struct PipelineConfig: Sendable {
    public var id: ComponentID
    public var signal: OTLPSignal
    public var receivers: [ComponentID]
    public var processors: [ComponentID]
    public var exporters: [ComponentID]
    public var line: Int?
    /// Connectors this pipeline receives from (listed under its receivers).
    public var connectorReceivers: [ComponentID] = []
    /// Connectors this pipeline exports to (listed under its exporters).
    public var connectorExporters: [ComponentID] = []
}

public struct TelemetryConfig: Sendable {
    /// Where Prometheus metrics and `/status` are served; `nil` turns them off.
    public var metricsAddress: String? = "localhost:8888"
    public var logLevel: String = "info"
    /// `json` (default) or `console` (text).
    public var logEncoding: String? = nil
    /// `resource`: attributes describing this Sluice, on `/metrics` as `target_info`'s
    /// labels (the OpenTelemetry → Prometheus convention).
    public var resource: [(String, String)] = []
    /// `views` with `aggregation: drop`: metric names (`*` a wildcard) left out of `/metrics`.
    public var droppedMetrics: [String] = []
    /// `readers[].periodic` with an OTLP/HTTP exporter: Sluice pushes its own metrics.
    public var push: MetricsPush?

    /// Where and how often Sluice sends its own metrics over OTLP (protobuf, over
    /// HTTP or gRPC).
    public struct MetricsPush: Sendable {
        /// HTTP: the full URL, `…/v1/metrics` (as OpenTelemetry's declarative config
        /// writes it); gRPC: the server's URL.
        public var endpoint: String
        /// `protocol: grpc` (or `grpc/protobuf`): OTLP/gRPC `MetricsService/Export`.
        public var grpc = false
        public var headers: [(String, String)] = []
        public var interval: Duration = .seconds(60)
        public var timeout: Duration = .seconds(30)
    }

    public init() {}

    /// Whether `views` drop this metric.
    public func drops(_ name: String) -> Bool {
        droppedMetrics.contains { pattern in
            guard pattern.contains("*") else { return pattern == name }
            let parts = pattern.split(separator: "*", omittingEmptySubsequences: false).map(String.init)
            var rest = Substring(name)
            guard rest.hasPrefix(parts[0]) else { return false }
            rest = rest.dropFirst(parts[0].count)
            for (i, part) in parts.enumerated().dropFirst() {
                if i == parts.count - 1 { return part.isEmpty || rest.hasSuffix(part) }
                guard let range = rest.range(of: part) else { return false }
                rest = rest[range.upperBound...]
            }
            return true
        }
    }
}

/// The whole `collector.yaml`, structured but with each component's own section
/// left for its factory to read.
public final class CollectorConfig: @unchecked Sendable {
    // @unchecked: built on one task, read-only after `load` returns.
    public let file: String
    public let diagnostics: ConfigDiagnostics
    public private(set) var receivers: [(id: ComponentID, config: ConfigMap)] = []
    public private(set) var processors: [(id: ComponentID, config: ConfigMap)] = []
    public private(set) var exporters: [(id: ComponentID, config: ConfigMap)] = []
    public private(set) var extensions: [(id: ComponentID, config: ConfigMap)] = []
    public private(set) var connectors: [(id: ComponentID, config: ConfigMap)] = []
    public private(set) var pipelines: [PipelineConfig] = []
    public private(set) var serviceExtensions: [ComponentID] = []
    public private(set) var telemetry = TelemetryConfig()
    public private(set) var shutdownTimeout: Duration = .seconds(25)

    /// The section of a component, by kind and id.
    public func section(_ kind: ComponentKind, _ id: ComponentID) -> ConfigMap? {
        let list: [(id: ComponentID, config: ConfigMap)]
        switch kind {
        case .receiver: list = receivers
        case .processor: list = processors
        case .exporter: list = exporters
        case .connector: list = connectors
        case .extension: list = extensions
        }
        return list.first { $0.id == id }?.config
    }

    private init(file: String, diagnostics: ConfigDiagnostics) {
        self.file = file
        self.diagnostics = diagnostics
    }

    /// Reads a configuration file; problems are in `diagnostics`, never thrown.
    public static func load(path: String, overrides: [String] = [], substitution: ConfigSubstitution = ConfigSubstitution()) -> CollectorConfig {
        let name = (path as NSString).lastPathComponent
        guard let data = FileManager.default.contents(atPath: path) else {
            let config = CollectorConfig(file: name, diagnostics: ConfigDiagnostics(file: path))
            config.diagnostics.report(line: nil, path: "", "cannot read the file; check the path given with --config")
            return config
        }
        return load(text: String(decoding: data, as: UTF8.self), file: name, overrides: overrides, substitution: substitution)
    }

    public static func load(text: String, file: String, overrides: [String] = [], substitution: ConfigSubstitution = ConfigSubstitution()) -> CollectorConfig {
        let config = CollectorConfig(file: file, diagnostics: ConfigDiagnostics(file: file))
        config.diagnostics.sourceLines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var root: Node
        do {
            root = try Yams.compose(yaml: text) ?? Node.mapping(Node.Mapping([]))
        } catch YamlError.duplicatedKeysInMapping(let keys, let context) {
            for (line, path, message) in Self.duplicates(keys, firstAt: context.mark, in: text) {
                config.diagnostics.report(line: line, path: path, message)
            }
            return config
        } catch let error as YamlError {
            config.diagnostics.report(line: Self.line(of: error), path: "", "not valid YAML: \(Self.describe(error))")
            return config
        } catch {
            // Never the error's own text: YAML errors carry the whole file, tokens included.
            config.diagnostics.report(line: nil, path: "", "not valid YAML")
            return config
        }
        for override in overrides {
            if let message = Self.apply(override: override, to: &root) {
                config.diagnostics.report(line: nil, path: "--set \(override)", message)
            }
        }
        root = Self.substitute(root, path: "", substitution: substitution, diagnostics: config.diagnostics)
        config.read(ConfigMap(path: "", node: root, diagnostics: config.diagnostics))
        return config
    }

    private func read(_ top: ConfigMap) {
        receivers = components(top, "receivers")
        processors = components(top, "processors")
        exporters = components(top, "exporters")
        extensions = components(top, "extensions")
        connectors = components(top, "connectors")
        guard let service = top.map("service") else {
            diagnostics.report(line: top.line, path: "service", "missing: a configuration needs service.pipelines")
            top.finish()
            return
        }
        readService(service)
        top.finish()
    }

    private func components(_ top: ConfigMap, _ section: String) -> [(id: ComponentID, config: ConfigMap)] {
        guard let map = top.map(section) else { return [] }
        var result: [(id: ComponentID, config: ConfigMap)] = []
        for key in map.keys {
            guard let id = ComponentID(key) else {
                map.report(key, "'\(key)' is not a component id; write type or type/name")
                continue
            }
            let keyLine = map.entries.last { $0.key == key }?.keyLine
            result.append((id, map.map(key) ?? ConfigMap(path: "\(section).\(key)", node: nil, line: keyLine, diagnostics: diagnostics)))
        }
        map.finish()
        return result
    }

    private func readService(_ service: ConfigMap) {
        if let list = service.stringList("extensions") {
            serviceExtensions = list.compactMap { text in
                guard let id = ComponentID(text) else { service.report("extensions", "'\(text)' is not a component id"); return nil }
                if !extensions.contains(where: { $0.id == id }) {
                    service.report("extensions", "\(id) is not defined under extensions")
                }
                return id
            }
        }
        if let timeout = service.duration("shutdown_timeout") { shutdownTimeout = timeout }
        if let telemetry = service.map("telemetry") { readTelemetry(telemetry) }
        guard let pipelinesMap = service.map("pipelines") else {
            diagnostics.report(line: service.line, path: "service.pipelines", "missing: define at least one pipeline (logs, traces or metrics)")
            service.finish()
            return
        }
        for key in pipelinesMap.keys {
            guard let id = ComponentID(key), let signal = OTLPSignal(pipelineType: id.type) else {
                pipelinesMap.report(key, "'\(key)' is not a pipeline id; use logs, traces or metrics, optionally with /name")
                _ = pipelinesMap.map(key)
                continue
            }
            guard let section = pipelinesMap.map(key) else { continue }
            // A connector is listed as an exporter of one pipeline and a receiver of others.
            let connectorIDs = Set(connectors.map(\.id))
            let from = references(section, "receivers", defined: receivers.map(\.id) + connectors.map(\.id), kind: connectors.isEmpty ? "receivers" : "receivers or connectors")
            let to = references(section, "exporters", defined: exporters.map(\.id) + connectors.map(\.id), kind: connectors.isEmpty ? "exporters" : "exporters or connectors")
            var pipeline = PipelineConfig(
                id: id, signal: signal,
                receivers: from.filter { !connectorIDs.contains($0) },
                processors: references(section, "processors", defined: processors.map(\.id), kind: "processors"),
                exporters: to.filter { !connectorIDs.contains($0) },
                line: section.line)
            pipeline.connectorReceivers = from.filter { connectorIDs.contains($0) }
            pipeline.connectorExporters = to.filter { connectorIDs.contains($0) }
            if from.isEmpty, !section.has("receivers") {
                diagnostics.report(line: section.line, path: section.path, "a pipeline needs at least one receiver")
            }
            if to.isEmpty, !section.has("exporters") {
                diagnostics.report(line: section.line, path: section.path, "a pipeline needs at least one exporter")
            }
            section.finish()
            pipelines.append(pipeline)
        }
        pipelinesMap.finish()
        checkConnections()
        service.finish()
    }

    /// The Collector's rules for connectors: each one used is both an exporter of
    /// some pipeline and a receiver of another, and no chain of connectors leads a
    /// pipeline back to itself.
    private func checkConnections() {
        for (id, section) in connectors {
            let exporting = pipelines.filter { $0.connectorExporters.contains(id) }
            let receiving = pipelines.filter { $0.connectorReceivers.contains(id) }
            if !exporting.isEmpty, receiving.isEmpty {
                diagnostics.report(line: section.line, path: "connectors.\(id)",
                                   "used as an exporter in \(exporting.map(\.id.description).joined(separator: ", ")) but no pipeline lists it among its receivers")
            }
            if !receiving.isEmpty, exporting.isEmpty {
                diagnostics.report(line: section.line, path: "connectors.\(id)",
                                   "used as a receiver in \(receiving.map(\.id.description).joined(separator: ", ")) but no pipeline lists it among its exporters")
            }
        }
        // Depth-first over pipeline → connector → pipeline.
        var state: [ComponentID: Bool] = [:]  // false: on the current path; true: done
        func visit(_ pipeline: PipelineConfig, _ path: [ComponentID]) {
            if state[pipeline.id] == true { return }
            if state[pipeline.id] == false {
                let cycle = (path.drop { $0 != pipeline.id } + [pipeline.id]).map(\.description).joined(separator: " → ")
                diagnostics.report(line: pipeline.line, path: "service.pipelines.\(pipeline.id)", "connectors lead this pipeline back to itself (\(cycle)); remove one of the connections")
                return
            }
            state[pipeline.id] = false
            for connector in pipeline.connectorExporters {
                for next in pipelines where next.connectorReceivers.contains(connector) { visit(next, path + [pipeline.id]) }
            }
            state[pipeline.id] = true
        }
        for pipeline in pipelines { visit(pipeline, []) }
    }

    private func references(_ section: ConfigMap, _ key: String, defined: [ComponentID], kind: String) -> [ComponentID] {
        guard let list = section.stringList(key) else { return [] }
        var result: [ComponentID] = []
        for text in list {
            guard let id = ComponentID(text) else {
                section.report(key, "'\(text)' is not a component id")
                continue
            }
            guard defined.contains(id) else {
                let hint = closestMatch(to: text, in: defined.map(\.description)).map { " (did you mean \($0)?)" } ?? ""
                section.report(key, "\(id) is not defined under \(kind)\(hint)")
                continue
            }
            result.append(id)
        }
        return result
    }

    /// `service.telemetry`. What Sluice does with it: Prometheus metrics and /status
    /// on `metrics.address` (or a `readers[].pull` Prometheus reader), `logs.level`
    /// and `logs.encoding` to stderr. Every other key the Collector defines is named
    /// in a warning with why it changes nothing.
    private func readTelemetry(_ telemetry: ConfigMap) {
        if let metrics = telemetry.map("metrics") {
            if let level = metrics.enumeration("level", ["none", "basic", "normal", "detailed"]) {
                if level == "none" { self.telemetry.metricsAddress = nil }
                if level == "basic" || level == "detailed" {
                    metrics.warn("level", "\(level) has no effect in Sluice: its metrics are the same at every level (none turns them off)")
                }
            }
            if let address = metrics.string("address") { self.telemetry.metricsAddress = address }
            // The Collector's newer form: readers[].pull.exporter.prometheus.{host,port}.
            if let readers = metrics.sections("readers") {
                for reader in readers {
                    if let periodic = reader.map("periodic") {
                        readPeriodicReader(periodic)
                        periodic.finish()
                    }
                    if let pull = reader.map("pull"), let exporter = pull.map("exporter") {
                        if let prometheus = exporter.map("prometheus") {
                            let host = prometheus.string("host") ?? "localhost"
                            let port = prometheus.int("port", min: 0, max: 65535) ?? 8888
                            prometheus.keysWithoutEffect([
                                ("without_scope_info", "Sluice's metrics carry no scope labels"),
                                ("without_type_suffix", "Sluice's metric names are fixed (docs/operations.md lists them)"),
                                ("without_units", "Sluice's metric names are fixed (docs/operations.md lists them)"),
                                ("with_resource_constant_labels", "Sluice adds no resource labels"),
                            ])
                            self.telemetry.metricsAddress = "\(host):\(port)"
                            prometheus.finish()
                        }
                        exporter.finish()
                        pull.finish()
                    }
                    reader.finish()
                }
            }
            if let views = metrics.sections("views") {
                for view in views {
                    var name: String?
                    if let selector = view.map("selector") {
                        name = selector.string("instrument_name")
                        selector.keysWithoutEffect([("instrument_type", "views select by instrument_name"), ("unit", "views select by instrument_name"),
                                                    ("meter_name", "views select by instrument_name"), ("meter_version", "views select by instrument_name"),
                                                    ("meter_schema_url", "views select by instrument_name")])
                        selector.finish()
                    }
                    var drop = false
                    if let stream = view.map("stream") {
                        if let aggregation = stream.map("aggregation") {
                            drop = aggregation.has("drop")
                            aggregation.accept("drop")
                            if !drop {
                                aggregation.keysWithoutEffect([("default", "Sluice's metrics keep their own form"), ("sum", "Sluice's metrics keep their own form"),
                                                               ("last_value", "Sluice's metrics keep their own form"),
                                                               ("explicit_bucket_histogram", "Sluice's metrics keep their own form"),
                                                               ("base2_exponential_bucket_histogram", "Sluice's metrics keep their own form")])
                            }
                            aggregation.finish()
                        }
                        stream.keysWithoutEffect([("name", "Sluice's metric names are fixed"), ("description", "Sluice's metric names are fixed"),
                                                  ("attribute_keys", "Sluice's metrics keep their labels"),
                                                  ("aggregation_cardinality_limit", "Sluice's metrics have bounded labels")])
                        stream.finish()
                    }
                    if drop {
                        if let name, !name.isEmpty { self.telemetry.droppedMetrics.append(name) } else {
                            view.report("selector", "a drop view needs selector.instrument_name (a metric name, * for a wildcard)")
                        }
                    }
                    view.finish()
                }
            }
            metrics.keysWithoutEffect([("cardinality_limits", "Sluice's metrics have bounded labels")])
            metrics.finish()
        }
        if let logs = telemetry.map("logs") {
            if let level = logs.enumeration("level", ["debug", "info", "warn", "error", "DEBUG", "INFO", "WARN", "ERROR"]) {
                self.telemetry.logLevel = level.lowercased()
            }
            if let encoding = logs.enumeration("encoding", ["json", "console"]) { self.telemetry.logEncoding = encoding }
            if let paths = logs.stringList("output_paths"), paths != ["stderr"] {
                logs.warn("output_paths", "Sluice logs to stderr only (collected by the container runtime); \(paths.joined(separator: ", ")) has no effect")
            }
            if let paths = logs.stringList("error_output_paths"), paths != ["stderr"] {
                logs.warn("error_output_paths", "Sluice logs to stderr only (collected by the container runtime); \(paths.joined(separator: ", ")) has no effect")
            }
            logs.keysWithoutEffect([
                ("development", "there is no development mode"),
                ("disable_caller", "log lines carry no caller"),
                ("disable_stacktrace", "log lines carry no stack traces"),
                ("sampling", "every log line is written; Sluice logs state changes, not per-request lines"),
                ("initial_fields", "log lines carry their component's own fields"),
                ("processors", "log lines are written to stderr only"),
            ])
            logs.finish()
        }
        if let resource = telemetry.map("resource") {
            for key in resource.keys {
                // A null value removes an attribute in the Collector; there are no defaults here to remove.
                if let value = resource.string(key) { self.telemetry.resource.append((key, value)) } else { resource.accept(key) }
            }
            resource.finish()
        }
        telemetry.keysWithoutEffect([("traces", "Sluice emits no traces of its own")])
        telemetry.finish()
    }

    /// `readers[].periodic`: `interval` and `timeout` in milliseconds (OpenTelemetry's
    /// declarative configuration), `exporter.otlp` with `protocol: http/protobuf`
    /// (or the `otlp_http` spelling), `endpoint`, `headers` as a list of
    /// `{name, value}` or a map.
    private func readPeriodicReader(_ periodic: ConfigMap) {
        var push = TelemetryConfig.MetricsPush(endpoint: "")
        if let ms = periodic.int("interval", min: 1) { push.interval = .milliseconds(ms) }
        if let ms = periodic.int("timeout", min: 1) { push.timeout = .milliseconds(ms) }
        guard let exporter = periodic.map("exporter") else {
            periodic.report("exporter", "missing: name the exporter, like exporter: {otlp: {protocol: http/protobuf, endpoint: https://gateway:4318/v1/metrics}}")
            return
        }
        defer { exporter.finish() }
        if exporter.has("console") {
            exporter.keysWithoutEffect([("console", "Sluice's metrics are on /metrics; nothing is printed")])
        }
        guard let otlp = exporter.map("otlp") ?? exporter.map("otlp_http") else { return }
        defer { otlp.finish() }
        if let proto = otlp.enumeration("protocol", ["http/protobuf", "grpc", "grpc/protobuf", "http/json"]) {
            if proto == "http/json" { otlp.report("protocol", "Sluice pushes its metrics as protobuf; use http/protobuf or grpc") }
            push.grpc = proto.hasPrefix("grpc")
        }
        guard let endpoint = otlp.string("endpoint"), endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else {
            otlp.report("endpoint", "missing or not an http(s) URL: set the OTLP metrics URL, like https://gateway:4318/v1/metrics (or https://gateway:4317 with protocol: grpc)")
            return
        }
        push.endpoint = endpoint
        if case .sequence? = otlp.node("headers"), let list = otlp.sections("headers") {
            for entry in list {
                if let name = entry.string("name"), let value = entry.string("value") { push.headers.append((name, value)) }
                entry.finish()
            }
        } else if let map = otlp.stringMap("headers") {
            push.headers = map.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        }
        if let ms = otlp.int("timeout", min: 1) { push.timeout = .milliseconds(ms) }
        otlp.keysWithoutEffect([("compression", "the push is small and sent uncompressed"),
                                ("temporality_preference", "Sluice's counters are cumulative"),
                                ("default_histogram_aggregation", "Sluice has no histograms"),
                                ("insecure", "the endpoint's scheme decides (http:// or https://)"),
                                ("certificate", "the system's CA certificates are used"),
                                ("client_key", "client certificates are not sent"),
                                ("client_certificate", "client certificates are not sent")])
        self.telemetry.push = push
    }

    // MARK: Substitution and overrides

    private static func substitute(_ node: Node, path: String, substitution: ConfigSubstitution, diagnostics: ConfigDiagnostics) -> Node {
        switch node {
        case .scalar(var scalar):
            guard scalar.string.contains("$") else { return node }
            do {
                var unset: [String] = []
                scalar.string = try substitution.expand(scalar.string, unset: &unset)
                for name in unset {
                    diagnostics.warn(line: scalar.mark?.line, path: path, "${\(name)} is not set in the environment and becomes empty; set it, or give a default with ${env:\(name):-value}")
                }
            } catch {
                diagnostics.report(line: scalar.mark?.line, path: path, error.description)
            }
            return .scalar(scalar)
        case .mapping(var mapping):
            var pairs: [(Node, Node)] = []
            for (key, value) in mapping {
                let child = path.isEmpty ? (key.string ?? "") : "\(path).\(key.string ?? "")"
                pairs.append((key, substitute(value, path: child, substitution: substitution, diagnostics: diagnostics)))
            }
            let style = mapping.style, tag = mapping.tag, mark = mapping.mark
            mapping = Node.Mapping(pairs, tag, style, mark)
            return .mapping(mapping)
        case .sequence(let sequence):
            let items = sequence.enumerated().map { substitute($0.element, path: "\(path)[\($0.offset)]", substitution: substitution, diagnostics: diagnostics) }
            return .sequence(Node.Sequence(items, sequence.tag, sequence.style, sequence.mark))
        case .alias:
            return node
        }
    }

    /// `--set exporters.file.path=/tmp/x` (or the Collector's `::` separator, which
    /// allows dots inside keys). Returns a message when the override is malformed.
    static func apply(override: String, to root: inout Node) -> String? {
        guard let equals = override.firstIndex(of: "=") else { return "expected key.path=value" }
        let keyPath = String(override[..<equals])
        let valueText = String(override[override.index(after: equals)...])
        let keys = keyPath.contains("::") ? keyPath.components(separatedBy: "::") : keyPath.components(separatedBy: ".")
        guard !keys.contains(where: \.isEmpty) else { return "empty key in '\(keyPath)'" }
        let value: Node
        if valueText.hasPrefix("[") || valueText.hasPrefix("{"), let parsed = try? Yams.compose(yaml: valueText) {
            value = parsed
        } else {
            value = Node(valueText)
        }
        root = set(value, at: keys[...], in: root)
        return nil
    }

    private static func set(_ value: Node, at keys: ArraySlice<String>, in node: Node) -> Node {
        guard let key = keys.first else { return value }
        var pairs: [(Node, Node)] = []
        var found = false
        if case .mapping(let mapping) = node {
            for (k, v) in mapping {
                if k.string == key {
                    pairs.append((k, set(value, at: keys.dropFirst(), in: v)))
                    found = true
                } else {
                    pairs.append((k, v))
                }
            }
        }
        if !found { pairs.append((Node(key), set(value, at: keys.dropFirst(), in: Node.mapping(Node.Mapping([]))))) }
        let mark = node.mark
        return .mapping(Node.Mapping(pairs, .implicit, .any, mark))
    }

    private static func line(of error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
            return mark.line
        default:
            return nil
        }
    }

    /// What a YAML error says, without the copy of the file Yams puts in its
    /// description (a token in the file would reach the terminal, the log and /status).
    private static func describe(_ error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _):
            return problem
        case .reader(let problem, let offset, _, _):
            return offset.map { "\(problem) at byte offset \($0)" } ?? problem
        case .duplicatedKeysInMapping(let keys, _):
            return "duplicated keys \(keys.joined(separator: ", "))"
        case .no, .memory, .writer, .emitter, .representer, .dataCouldNotBeDecoded:
            return "\(error)"
        @unknown default:
            return "the YAML parser refused the file"
        }
    }

    /// `file:line path.key: duplicated (first at line N)` for each key Yams found
    /// twice in one mapping. Yams names the keys and where the first of them
    /// stands; the second is the next line at the same indentation with that key,
    /// before the mapping ends, and the path is read from the lines above.
    static func duplicates(_ keys: [String], firstAt mark: Mark, in text: String) -> [(line: Int?, path: String, message: String)] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let first = mark.line - 1
        guard first >= 0, first < lines.count else {
            return [(nil, "", "duplicated key\(keys.count > 1 ? "s" : "") \(keys.joined(separator: ", ")) in one mapping; keep one of each")]
        }
        let indent = mark.column - 1
        func indentation(_ line: String) -> Int { line.prefix { $0 == " " }.count }
        func key(of line: String) -> String? {
            let body = line.dropFirst(indentation(line))
            guard !body.hasPrefix("#"), !body.hasPrefix("- "), let colon = body.firstIndex(of: ":") else { return nil }
            var key = body[..<colon].trimmingCharacters(in: .whitespaces)
            if key.count >= 2, let q = key.first, q == "\"" || q == "'", key.last == q { key = String(key.dropFirst().dropLast()) }
            return key
        }
        func meaningful(_ line: String) -> Bool {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            return !trimmed.isEmpty && !trimmed.hasPrefix("#")
        }
        // The path to the mapping: the keys of the nearest lines above with less indentation.
        var parents: [String] = []
        var level = indent
        var i = first - 1
        while i >= 0, level > 0 {
            if meaningful(lines[i]), indentation(lines[i]) < level, let parent = key(of: lines[i]) {
                parents.insert(parent, at: 0)
                level = indentation(lines[i])
            }
            i -= 1
        }
        var out: [(line: Int?, path: String, message: String)] = []
        for name in keys {
            // Where this key first stands in the mapping, then where it stands again.
            var firstLine: Int?
            var secondLine: Int?
            var j = first
            while j >= 0, j > first - 10_000 {
                if meaningful(lines[j]), indentation(lines[j]) < indent { break }
                j -= 1
            }
            var k = j + 1
            while k < lines.count {
                let line = lines[k]
                if meaningful(line) {
                    if indentation(line) < indent, k > first { break }
                    if indentation(line) == indent, key(of: line) == name {
                        if firstLine == nil { firstLine = k + 1 } else { secondLine = k + 1; break }
                    }
                }
                k += 1
            }
            let path = (parents + [name]).joined(separator: ".")
            if let firstLine, let secondLine {
                out.append((secondLine, path, "duplicated (first at line \(firstLine)); keep one"))
            } else {
                out.append((mark.line, path, "duplicated in this mapping; keep one"))
            }
        }
        return out
    }
}

extension OTLPSignal {
    /// The signal of a pipeline type (`logs`, `traces`, `metrics`).
    public init?(pipelineType: String) {
        switch pipelineType {
        case "logs": self = .logs
        case "traces": self = .traces
        case "metrics": self = .metrics
        default: return nil
        }
    }
}
