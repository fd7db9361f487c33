// resourcedetection with an injected environment and host name: each detector, the
// Collector's order and override rules, its configuration keys, and the batch edit.
import Logging
import Testing
import SluiceCore
@testable import SluiceComponents

@Suite struct ResourceDetectionTests {
    static let pod: [String: String] = [
        "K8S_POD_NAME": "ai-gateway-7d9f-x2k4", "POD_NAMESPACE": "ai", "K8S_NODE_NAME": "node-3",
        "K8S_POD_UID": "5f0c-11ee", "K8S_POD_IP": "10.1.2.3", "K8S_APP_NAME": "ai-gateway",
    ]

    /// The processor `yaml` (under `processors.resourcedetection`) makes with
    /// `environment`, and the configuration's errors and warnings.
    func make(_ yaml: String, environment: [String: String] = pod, hostname: String? = "ai-gateway-7d9f-x2k4")
        -> (ResourceDetectionProcessor?, errors: [String], warnings: [String]) {
        let indented = yaml.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n")
        let config = CollectorConfig.load(text: "processors:\n  resourcedetection:\n\(indented)\n", file: "test.yaml")
        let section = config.processors.first!.config
        let factory = ResourceDetectionProcessorFactory(source: { DetectionSource(environment: environment, hostname: hostname) })
        let made = factory.make(id: ComponentID(type: "resourcedetection"), config: section,
                                context: ComponentContext(logger: Logger(label: "test"), metrics: MetricsRegistry()))
        let errors = config.diagnostics.all.filter { $0.path.hasPrefix("processors.") }.map(\.description)
        return (made as? ResourceDetectionProcessor, errors, config.diagnostics.warnings.map(\.description))
    }

    func detected(_ processor: ResourceDetectionProcessor?) -> [String: String] {
        Dictionary(uniqueKeysWithValues: (processor?.attributes ?? []).map { attribute -> (String, String) in
            guard case .string(let bytes) = attribute.value else { return (attribute.key, "?") }
            return (attribute.key, String(decoding: bytes, as: UTF8.self))
        })
    }

    @Test func k8sDownwardReadsThePodSpecsVariables() {
        let (processor, errors, warnings) = make("detectors: [k8s_downward]")
        #expect(errors.isEmpty && warnings.isEmpty, "\(errors) \(warnings)")
        #expect(detected(processor) == ["k8s.pod.name": "ai-gateway-7d9f-x2k4", "k8s.namespace.name": "ai", "k8s.node.name": "node-3",
                                        "k8s.pod.uid": "5f0c-11ee", "k8s.pod.ip": "10.1.2.3", "service.name": "ai-gateway"])
        // service.name only fills a gap, whatever override says.
        #expect(processor?.attributes.first { $0.key == "service.name" }?.mayOverride == false)
        #expect(processor?.attributes.first { $0.key == "k8s.pod.name" }?.mayOverride == true)
        // Empty variables (a field the kubelet could not fill) count as unset.
        let (partial, _, _) = make("detectors: [k8s_downward]", environment: ["K8S_POD_NAME": "", "POD_NAME": "p", "K8S_NAMESPACE_NAME": "ns"])
        #expect(detected(partial) == ["k8s.pod.name": "p", "k8s.namespace.name": "ns"])
    }

    @Test func envReadsOTELResourceAttributesAndServiceName() {
        let environment = ["OTEL_RESOURCE_ATTRIBUTES": " deployment.environment = prod ,team=s%C3%A9curit%C3%A9,note=a%2Cb%3Dc,service.name=x,team=sec",
                           "OTEL_SERVICE_NAME": "gateway"]
        let (processor, _, warnings) = make("detectors: [env]", environment: environment)
        #expect(warnings.isEmpty, "\(warnings)")
        #expect(processor?.attributes.map(\.key) == ["service.name", "deployment.environment", "team", "note"])
        #expect(detected(processor) == ["service.name": "gateway", "deployment.environment": "prod", "team": "sec", "note": "a,b=c"])
    }

    @Test func aBrokenOTELResourceAttributesIsDiscardedWholeWithAWarning() {
        for broken in ["a=1,b", "a=%zz", "=1", "a=%C3"] {
            let (processor, errors, warnings) = make("detectors: [env]", environment: ["OTEL_RESOURCE_ATTRIBUTES": broken])
            #expect(errors.isEmpty && detected(processor).isEmpty, "\(broken)")
            #expect(warnings.contains { $0.contains("processors.resourcedetection.detectors: OTEL_RESOURCE_ATTRIBUTES entry") }, "\(broken): \(warnings)")
        }
    }

    @Test func systemFindsTheHostNameAndOSType() {
        let (processor, _, _) = make("detectors: [system]")
        #expect(detected(processor) == ["host.name": "ai-gateway-7d9f-x2k4", "os.type": "linux"])
        let (limited, errors, warnings) = make("""
            detectors: [system]
            system:
              hostname_sources: [dns, os]
              resource_attributes:
                os.type: {enabled: false}
                host.arch: {enabled: true}
                host.id: {enabled: false}
            """)
        #expect(errors.isEmpty, "\(errors)")
        #expect(detected(limited) == ["host.name": "ai-gateway-7d9f-x2k4"])
        #expect(warnings.contains { $0.contains("system.hostname_sources: dns is not consulted by Sluice") }, "\(warnings)")
        #expect(warnings.contains { $0.contains("system.resource_attributes.host.arch: has no effect") }, "\(warnings)")
        #expect(!warnings.contains { $0.contains("host.id") })
    }

    @Test func theFirstDetectorToFindAKeyWinsAndOverrideIsTheCollectorsDefault() {
        let environment = Self.pod.merging(["OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=from-env,host.name=env-host"]) { a, _ in a }
        let (processor, _, _) = make("detectors: [env, system, k8s_downward]", environment: environment)
        #expect(detected(processor)["k8s.pod.name"] == "from-env" && detected(processor)["host.name"] == "env-host")
        #expect(processor?.attributes.allSatisfy { $0.mayOverride || $0.key == "service.name" } == true)
        let (inserting, _, _) = make("detectors: [k8s_downward]\noverride: false")
        #expect(inserting?.attributes.allSatisfy { !$0.mayOverride } == true)
        let (kept, _, _) = make("detectors: [k8s_downward]\nattributes: [k8s.pod.name, k8s.namespace.name]")
        #expect(Set(detected(kept).keys) == ["k8s.pod.name", "k8s.namespace.name"])
    }

    @Test func otherDetectorsAreNamedUnknownOnesRefused() {
        let (processor, errors, warnings) = make("detectors: [ec2, k8s_downward]\ntimeout: 2s\nec2:\n  tags: [^team$]")
        #expect(errors.isEmpty && processor != nil, "\(errors)")
        #expect(warnings.contains { $0.contains("detectors: 'ec2' has no effect in Sluice: it needs the EC2 instance metadata service") }, "\(warnings)")
        #expect(warnings.contains { $0.contains("resourcedetection.timeout: has no effect") }, "\(warnings)")
        let (unknown, refused, _) = make("detectors: [k8s_downwrd]")
        #expect(unknown == nil && refused.contains { $0.contains("unknown detector 'k8s_downwrd' (did you mean k8s_downward?)") }, "\(refused)")
        let (_, _, empty) = make("override: false")
        #expect(empty.contains { $0.contains("no detectors are listed") })
        let (_, typo, _) = make("detectors: [env]\noverides: true")
        #expect(typo.contains { $0.contains("overides: unknown key (did you mean override?)") }, "\(typo)")
    }

    @Test func everyResourceGetsTheAttributesInsertedOrReplaced() throws {
        let json = #"{"resourceLogs":[{"resource":{"attributes":[{"key":"k8s.pod.name","value":{"stringValue":"sdk-said"}},{"key":"service.name","value":{"stringValue":"sdk-service"}}]},"scopeLogs":[{"logRecords":[{"body":{"stringValue":"a"}}]}]},{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"b"}}]}]}]}"#
        let (processor, _, _) = make("detectors: [k8s_downward]")
        let batch = try OTLPBatch.decode(json: Array(json.utf8), signal: .logs)
        guard case .pass(0) = try #require(processor).process(batch) else { Issue.record("refused"); return }
        let out = String(decoding: batch.encodeJSON(), as: UTF8.self)
        #expect(batch.isEdited)
        // Overridden where the SDK set it, except service.name, which only fills a gap.
        #expect(out.contains(#"{"key":"k8s.pod.name","value":{"stringValue":"ai-gateway-7d9f-x2k4"}}"#) && !out.contains("sdk-said"))
        #expect(out.contains(#"{"key":"service.name","value":{"stringValue":"sdk-service"}}"#))
        // The second resource had none: it gets all six.
        #expect(out.components(separatedBy: #""key":"k8s.namespace.name","value":{"stringValue":"ai"}"#).count == 3)
        #expect(out.contains(#"{"key":"service.name","value":{"stringValue":"ai-gateway"}}"#))

        let (inserting, _, _) = make("detectors: [k8s_downward]\noverride: false")
        let kept = try OTLPBatch.decode(json: Array(json.utf8), signal: .logs)
        _ = try #require(inserting).process(kept)
        #expect(String(decoding: kept.encodeJSON(), as: UTF8.self).contains("sdk-said"))
    }
}
