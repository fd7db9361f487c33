import Logging
import SluiceCore

/// `resourcedetection`, with the Collector's keys (processor/resourcedetectionprocessor):
/// `detectors` run once when the processor is built, in the order listed (the
/// first to find an attribute wins, as in the Collector), and every batch's
/// resources get the result — inserted, or replacing what a client sent when
/// `override` is true (the Collector's default). Per batch that is only the
/// inserts: the values are ready-made.
///
/// Detectors: `env`, `system` and Sluice's `k8s_downward` (a sidecar's
/// k8sattributes without API-server access). The Collector's cloud and platform
/// detectors need metadata services Sluice does not query: named, they are warned
/// about as having no effect; an unknown name is an error.
public struct ResourceDetectionProcessorFactory: ProcessorFactory {
    public let type = "resourcedetection"
    let source: @Sendable () -> DetectionSource

    public init() { self.init(source: { DetectionSource.process() }) }

    init(source: @escaping @Sendable () -> DetectionSource) { self.source = source }

    static let detectors = ["env", "system", "k8s_downward"]

    /// The Collector's other detectors, and what each would need.
    static let detectorsWithoutEffect: [String: String] = [
        "docker": "the Docker daemon's API", "ec2": "the EC2 instance metadata service", "ecs": "the ECS task metadata endpoint",
        "eks": "the EKS and EC2 metadata services", "elastic_beanstalk": "the Elastic Beanstalk environment file", "lambda": "the AWS Lambda runtime",
        "azure": "the Azure instance metadata service", "aks": "the Azure instance metadata service", "gcp": "the GCP metadata server",
        "consul": "a Consul agent", "heroku": "Heroku's dyno metadata", "openshift": "the OpenShift API", "k8snode": "the Kubernetes API server",
        "kubeadm": "the Kubernetes API server", "dynatrace": "a Dynatrace OneAgent", "akamai": "Akamai's metadata service",
        "scaleway": "Scaleway's metadata service", "hetzner": "Hetzner's metadata service", "upcloud": "UpCloud's metadata service",
        "vultr": "Vultr's metadata service", "oraclecloud": "Oracle Cloud's metadata service", "digitalocean": "DigitalOcean's metadata service",
        "openstack_nova": "the OpenStack metadata service", "alibaba_ecs": "Alibaba Cloud's metadata service",
    ]

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Processor)? {
        let before = config.diagnostics.all.count
        let names = config.stringList("detectors") ?? []
        let override = config.bool("override") ?? true
        if config.duration("timeout") != nil {
            config.warn("timeout", "has no effect in Sluice: its detectors read the environment and the host name, which cannot stall; remove it to silence this warning")
        }
        let kept = config.stringList("attributes").map(Set.init)
        let source = source()
        var detected: [DetectedAttribute] = []
        for name in names {
            switch name {
            case "env":
                let (attributes, problem) = EnvDetector.detect(source)
                if let problem { config.warn("detectors", problem) }
                detected += attributes
            case "system":
                detected += SystemDetector.detect(source, enabled: Self.systemAttributes(config))
            case "k8s_downward":
                detected += KubernetesDownwardDetector.detect(source)
            default:
                if let needs = Self.detectorsWithoutEffect[name] {
                    config.warn("detectors", "'\(name)' has no effect in Sluice: it needs \(needs), which Sluice does not query; use env, system or k8s_downward, or remove it")
                    // Its own section (ec2: {tags: …}) goes with it.
                    config.accept(name)
                } else {
                    let hint = closestMatch(to: name, in: Self.detectors).map { " (did you mean \($0)?)" } ?? ""
                    config.report("detectors", "unknown detector '\(name)'\(hint); Sluice detects with \(Self.detectors.joined(separator: ", "))")
                }
            }
        }
        if names.isEmpty {
            config.warn("detectors", "no detectors are listed, so the processor changes nothing; list env, system or k8s_downward")
        }
        if config.has("system"), !names.contains("system") { _ = Self.systemAttributes(config) }
        config.finish()
        guard config.diagnostics.all.count == before else { return nil }
        // The first detector to find a key wins.
        var seen = Set<String>()
        let attributes = detected.filter { seen.insert($0.key).inserted && (kept?.contains($0.key) ?? true) }
            .map { DetectedAttribute(key: $0.key, value: $0.value, mayOverride: $0.mayOverride && override) }
        return ResourceDetectionProcessor(id: id, attributes: attributes, logger: context.logger)
    }

    /// The `system` section: `hostname_sources` (only `os` is consulted) and
    /// `resource_attributes.<name>.enabled` for the attributes it detects.
    private static func systemAttributes(_ config: ConfigMap) -> Set<String> {
        var enabled = Set(SystemDetector.attributes)
        guard let section = config.map("system") else { return enabled }
        if let sources = section.stringList("hostname_sources") {
            let others = sources.filter { $0 != "os" }
            if !others.isEmpty {
                section.warn("hostname_sources", "\(others.joined(separator: ", ")) \(others.count == 1 ? "is" : "are") not consulted by Sluice, which takes host.name from the operating system (os); in a pod that is the pod's name")
            }
        }
        if let attributes = section.map("resource_attributes") {
            for name in attributes.keys {
                guard let entry = attributes.map(name) else { continue }
                let on = entry.bool("enabled")
                entry.finish()
                if SystemDetector.attributes.contains(name) {
                    if on == false { enabled.remove(name) }
                } else if on == true {
                    attributes.warn(name, "has no effect in Sluice: the system detector finds host.name and os.type only")
                }
            }
            attributes.finish()
        }
        section.finish()
        return enabled
    }
}

struct ResourceDetectionProcessor: Processor {
    let id: ComponentID
    let attributes: [DetectedAttribute]
    let logger: Logger

    func start() async throws {
        let keys = attributes.map(\.key).joined(separator: ", ")
        logger.info("resource attributes detected", metadata: ["processor": "\(id)", "attributes": "\(keys.isEmpty ? "none" : keys)"])
    }

    func process(_ batch: OTLPBatch) -> ProcessOutcome {
        guard !attributes.isEmpty else { return .pass(dropped: 0) }
        do {
            try batch.edit { editor in
                try editor.forEachResource { resource in
                    for attribute in attributes {
                        if attribute.mayOverride {
                            try resource.upsert(attribute.key, attribute.value)
                        } else {
                            try resource.insert(attribute.key, attribute.value)
                        }
                    }
                }
            }
        } catch {
            // The batch's arena is at its cap: the client sends the request again later.
            return .refuse(.memoryLimit, retryAfter: .seconds(1))
        }
        return .pass(dropped: 0)
    }
}
