import Foundation
import Synchronization

/// Sluice's own metrics, exposed in the Prometheus text format on
/// `service.telemetry.metrics.address` (`/metrics`).
///
/// Counters and gauges are atomics: the hot path (a receiver counting records, an
/// exporter counting sends) pays one atomic add and never takes a lock. Series are
/// created once, when components start, so exposition only walks a fixed list.
/// Format: https://prometheus.io/docs/instrumenting/exposition_formats/
public final class MetricsRegistry: Sendable {
    public static let shared = MetricsRegistry()

    private struct Family: Sendable {
        let name: String
        let help: String
        let type: String
        var series: [(labels: String, pairs: [(String, String)], value: MetricValue)]
    }

    /// One family's values as they are now, for pushing them elsewhere (OTLP).
    public struct FamilySnapshot: Sendable {
        public let name: String
        public let help: String
        /// `counter` or `gauge`.
        public let type: String
        public let series: [(labels: [(String, String)], value: Double)]
    }

    private let families = Mutex<[String: Family]>([:])
    private let order = Mutex<[String]>([])

    public init() {}

    /// A counter for one label set; the same name and labels give the same counter.
    public func counter(_ name: String, _ help: String, labels: [(String, String)] = []) -> Counter {
        series(name, help, "counter", labels) { Counter() }
    }

    public func gauge(_ name: String, _ help: String, labels: [(String, String)] = []) -> Gauge {
        series(name, help, "gauge", labels) { Gauge() }
    }

    /// A gauge whose value is read when metrics are scraped.
    public func gauge(_ name: String, _ help: String, labels: [(String, String)] = [], read: @escaping @Sendable () -> Double) {
        _ = series(name, help, "gauge", labels) { FunctionGauge(read) }
    }

    private func series<T: MetricValue>(_ name: String, _ help: String, _ type: String, _ labels: [(String, String)], make: () -> T) -> T {
        let labelText = labels.isEmpty ? "" : "{" + labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
        return families.withLock { families in
            var family = families[name] ?? Family(name: name, help: help, type: type, series: [])
            if let existing = family.series.first(where: { $0.labels == labelText })?.value as? T { return existing }
            let created = make()
            family.series.append((labelText, labels, created))
            if families[name] == nil { order.withLock { $0.append(name) } }
            families[name] = family
            return created
        }
    }

    /// Every family, in creation order, with its current values.
    public func snapshot(dropping: (String) -> Bool = { _ in false }) -> [FamilySnapshot] {
        let names = order.withLock { $0 }
        let families = families.withLock { $0 }
        return names.compactMap { name in
            guard !dropping(name), let family = families[name] else { return nil }
            return FamilySnapshot(name: name, help: family.help, type: family.type, series: family.series.map { ($0.pairs, $0.value.currentValue) })
        }
    }

    /// The text format; families `dropping` says yes to are left out (telemetry `views`).
    public func exposition(dropping: (String) -> Bool = { _ in false }) -> String {
        let names = order.withLock { $0 }
        let snapshot = families.withLock { $0 }
        var out = ""
        for name in names where !dropping(name) {
            guard let family = snapshot[name] else { continue }
            out += "# HELP \(name) \(family.help)\n# TYPE \(name) \(family.type)\n"
            for (labels, _, value) in family.series {
                out += "\(name)\(labels) \(Self.format(value.currentValue))\n"
            }
        }
        return out
    }

    static func format(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    /// `target_info` with the resource's attributes as labels, as the OpenTelemetry →
    /// Prometheus convention writes a resource (https://opentelemetry.io/docs/specs/otel/compatibility/prometheus_and_openmetrics/).
    public static func targetInfo(_ resource: [(String, String)]) -> String {
        guard !resource.isEmpty else { return "" }
        let labels = resource.map { "\(labelName($0.0))=\"\(escape($0.1))\"" }.joined(separator: ",")
        return "# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info{\(labels)} 1\n"
    }

    /// A Prometheus label name: characters outside [a-zA-Z0-9_] become `_` (`service.name` → `service_name`).
    static func labelName(_ key: String) -> String {
        var name = String(key.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") ? $0 : "_" })
        if let first = name.first, first.isNumber { name = "_" + name }
        return name
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}

public protocol MetricValue: AnyObject, Sendable {
    var currentValue: Double { get }
}

public final class Counter: MetricValue {
    private let value = Atomic<Int64>(0)
    public init() {}
    public func add(_ n: Int) { value.add(Int64(n), ordering: .relaxed) }
    public func increment() { add(1) }
    public var count: Int64 { value.load(ordering: .relaxed) }
    public var currentValue: Double { Double(count) }
}

public final class Gauge: MetricValue {
    private let bits = Atomic<UInt64>(0)
    public init() {}
    public func set(_ value: Double) { bits.store(value.bitPattern, ordering: .relaxed) }
    public var value: Double { Double(bitPattern: bits.load(ordering: .relaxed)) }
    public var currentValue: Double { value }
}

final class FunctionGauge: MetricValue {
    let read: @Sendable () -> Double
    init(_ read: @escaping @Sendable () -> Double) { self.read = read }
    var currentValue: Double { read() }
}
