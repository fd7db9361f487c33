import SluiceCore
import SluiceOTLP

/// `resource`: runs the Collector's attribute actions (`attributes:`, the same
/// actions as the `attributes` processor's) on each resource of a batch, any signal.
///
/// https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/processor/resourceprocessor
public struct ResourceProcessorFactory: ProcessorFactory {
    public let type = "resource"
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Processor)? {
        let before = config.diagnostics.all.count
        let actions = AttributeActions.read(config, key: "attributes")
        config.finish()
        guard config.diagnostics.all.count == before, let actions else { return nil }
        return ResourceProcessor(id: id, actions: actions)
    }
}

struct ResourceProcessor: Processor {
    let id: ComponentID
    let actions: AttributeActions

    func process(_ batch: OTLPBatch) -> ProcessOutcome {
        do {
            try batch.edit { editor in try editor.forEachResource { try actions.apply(to: $0) } }
        } catch {
            return .refuse(.memoryLimit, retryAfter: .seconds(1))
        }
        return .pass(dropped: 0)
    }
}
