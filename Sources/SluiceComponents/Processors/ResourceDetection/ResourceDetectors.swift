#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import SluiceCore

/// One resource attribute a detector found: written into every batch's resources.
struct DetectedAttribute: Sendable, Equatable {
    let key: String
    let value: OTLPValue
    /// False for a value that only fills a gap (k8s_downward's `service.name`),
    /// whatever `override` says.
    var mayOverride = true
}

/// What the detectors read: the process environment and the host name, injected so
/// tests need neither a pod nor a particular machine.
struct DetectionSource: Sendable {
    var environment: [String: String]
    var hostname: String?

    static func process() -> DetectionSource {
        var buffer = [UInt8](repeating: 0, count: 256)
        let name = buffer.withUnsafeMutableBufferPointer { raw in
            raw.withMemoryRebound(to: CChar.self) { gethostname($0.baseAddress!, $0.count - 1) }
        } == 0 ? String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self) : nil
        return DetectionSource(environment: ProcessInfo.processInfo.environment, hostname: name)
    }

    /// The first of `names` set to a non-empty value.
    func variable(_ names: [String]) -> String? {
        names.lazy.compactMap { self.environment[$0] }.first { !$0.isEmpty }
    }
}

/// `env`: `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`, as the SDK
/// specification defines them (https://opentelemetry.io/docs/specs/otel/resource/sdk/#specifying-resource-information-via-an-environment-variable
/// and .../configuration/sdk-environment-variables/#general-sdk-configuration):
/// `key=value` pairs separated by commas, keys and values percent-encoded as W3C
/// Baggage encodes them; a value that does not decode discards the whole variable
/// (and is reported). `OTEL_SERVICE_NAME` wins over a `service.name` in the list.
enum EnvDetector {
    static func detect(_ source: DetectionSource) -> (attributes: [DetectedAttribute], problem: String?) {
        var found: [DetectedAttribute] = []
        var problem: String?
        if let list = source.environment["OTEL_RESOURCE_ATTRIBUTES"], !list.trimmingCharacters(in: .whitespaces).isEmpty {
            switch parse(list) {
            case .success(let pairs): found = pairs.map { DetectedAttribute(key: $0.key, value: .text($0.value)) }
            case .failure(let error): problem = error.message
            }
        }
        if let service = source.environment["OTEL_SERVICE_NAME"], !service.isEmpty {
            found.removeAll { $0.key == "service.name" }
            found.insert(DetectedAttribute(key: "service.name", value: .text(service)), at: 0)
        }
        return (found, problem)
    }

    struct ParseError: Error { let message: String }

    /// The pairs of `OTEL_RESOURCE_ATTRIBUTES`, in order; a later repeat of a key
    /// replaces the earlier value where it stood.
    static func parse(_ text: String) -> Result<[(key: String, value: String)], ParseError> {
        var pairs: [(key: String, value: String)] = []
        for (n, item) in text.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
            let entry = item.trimmingCharacters(in: .whitespaces)
            if entry.isEmpty { continue }
            guard let equals = entry.firstIndex(of: "=") else {
                return .failure(ParseError(message: "OTEL_RESOURCE_ATTRIBUTES entry \(n + 1) has no '='; write key=value pairs separated by commas (the whole variable is ignored)"))
            }
            guard let key = percentDecoded(entry[..<equals].trimmingCharacters(in: .whitespaces)), !key.isEmpty,
                  let value = percentDecoded(entry[entry.index(after: equals)...].trimmingCharacters(in: .whitespaces)) else {
                return .failure(ParseError(message: "OTEL_RESOURCE_ATTRIBUTES entry \(n + 1) has an empty key or a bad %-escape; percent-encode ',', '=', '%' and non-ASCII as UTF-8 bytes (the whole variable is ignored)"))
            }
            if let k = pairs.firstIndex(where: { $0.key == key }) { pairs[k].value = value } else { pairs.append((key, value)) }
        }
        return .success(pairs)
    }

    /// `%XX` escapes decoded; nil for a broken escape or bytes that are not UTF-8.
    static func percentDecoded(_ text: String) -> String? {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let c = utf8.popFirst() {
            guard c == UInt8(ascii: "%") else { bytes.append(c); continue }
            guard utf8.count >= 2, let pair = JSONValueReader.hexBytes(Array(utf8.prefix(2))) else { return nil }
            bytes.append(pair[0])
            utf8 = utf8.dropFirst(2)
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

/// `system`: `host.name` from the operating system (`hostname_sources: [os]`) and
/// `os.type` (the semantic conventions' value: `linux`, `darwin`).
enum SystemDetector {
    static let attributes = ["host.name", "os.type"]

    static func detect(_ source: DetectionSource, enabled: Set<String>) -> [DetectedAttribute] {
        var found: [DetectedAttribute] = []
        if enabled.contains("host.name"), let name = source.hostname, !name.isEmpty {
            found.append(DetectedAttribute(key: "host.name", value: .text(name)))
        }
        if enabled.contains("os.type") { found.append(DetectedAttribute(key: "os.type", value: .text(osType))) }
        return found
    }

    static var osType: String {
        #if os(Linux)
        "linux"
        #elseif os(macOS)
        "darwin"
        #else
        "unknown"
        #endif
    }
}

/// `k8s_downward` (Sluice's): the pod's identity from the variables a pod spec sets
/// through the downward API, so a sidecar needs no API-server access. Each
/// attribute takes the first variable of its list that is set and not empty.
enum KubernetesDownwardDetector {
    /// attribute ← variables, in the order they are looked at. The fieldRef each
    /// is set from is in docs/processors.md and deploy/kubernetes/base/deployment.yaml.
    static let variables: [(attribute: String, names: [String])] = [
        ("k8s.pod.name", ["K8S_POD_NAME", "POD_NAME"]),                          // metadata.name
        ("k8s.namespace.name", ["K8S_NAMESPACE_NAME", "POD_NAMESPACE", "K8S_NAMESPACE"]), // metadata.namespace
        ("k8s.node.name", ["K8S_NODE_NAME", "NODE_NAME"]),                       // spec.nodeName
        ("k8s.pod.uid", ["K8S_POD_UID", "POD_UID"]),                             // metadata.uid
        ("k8s.pod.ip", ["K8S_POD_IP", "POD_IP"]),                                // status.podIP
    ]

    /// `service.name` when a batch has none: the pod's `app.kubernetes.io/name`
    /// label (fieldRef metadata.labels['app.kubernetes.io/name']).
    static let serviceNameVariables = ["K8S_APP_NAME"]

    static func detect(_ source: DetectionSource) -> [DetectedAttribute] {
        var found = variables.compactMap { entry in
            source.variable(entry.names).map { DetectedAttribute(key: entry.attribute, value: .text($0)) }
        }
        if let app = source.variable(serviceNameVariables) {
            found.append(DetectedAttribute(key: "service.name", value: .text(app), mayOverride: false))
        }
        return found
    }
}
