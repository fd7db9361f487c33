import SluiceOTLP
import Yams

extension ConfigMap {
    /// A value to write into telemetry, typed the way the Collector's YAML reader
    /// types it (`pcommon.Value.FromRaw` over go-yaml): an unquoted `true`/`false` is
    /// a bool, an unquoted whole number an int, an unquoted decimal a double, anything
    /// quoted or else a string; lists become arrays and mappings maps.
    public func value(_ key: String) -> OTLPValue? {
        guard let node = node(key) else { return nil }
        return Self.otlpValue(node)
    }

    static func otlpValue(_ node: Node) -> OTLPValue {
        switch node {
        case .scalar(let scalar):
            let text = scalar.string
            guard scalar.style == .plain else { return .text(text) }
            switch text {
            case "true", "True", "TRUE": return .bool(true)
            case "false", "False", "FALSE": return .bool(false)
            case "", "~", "null", "Null", "NULL": return .empty
            default: break
            }
            if let int = Int64(text) { return .int(int) }
            if text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }), let double = Double(text), double.isFinite { return .double(double) }
            return .text(text)
        case .sequence(let sequence):
            return .array(sequence.map(otlpValue))
        case .mapping(let mapping):
            return .map(mapping.map { OTLPKeyValue($0.key.string ?? "", otlpValue($0.value)) })
        case .alias:
            return .empty
        }
    }
}
