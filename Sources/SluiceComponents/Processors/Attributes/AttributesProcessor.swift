import Logging
import SluiceCore
import SluiceOTLP

/// `attributes`: runs the Collector's attribute actions on the attributes of each
/// log record, span and metric data point that `include` / `exclude` select.
///
/// https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/processor/attributesprocessor
public struct AttributesProcessorFactory: ProcessorFactory {
    public let type = "attributes"
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Processor)? {
        let before = config.diagnostics.all.count
        let actions = AttributeActions.read(config, key: "actions")
        let selection = ItemSelection.read(config)
        config.finish()
        guard config.diagnostics.all.count == before, let actions, let selection else { return nil }
        return AttributesProcessor(id: id, actions: actions, selection: selection)
    }
}

struct AttributesProcessor: Processor {
    let id: ComponentID
    let actions: AttributeActions
    let selection: ItemSelection

    func process(_ batch: OTLPBatch) -> ProcessOutcome {
        do {
            try batch.edit { editor in
                try editor.forEachLogRecord { record in
                    if !selection.selectsAll {
                        let view = record.view
                        let item = MatchProperties.Item(resource: record.resource, scope: record.scope, attributes: view.attributes,
                                                        logBody: .some(view.body), severityText: view.severityText)
                        guard selection.selects(item) else { return }
                    }
                    try actions.apply(to: record.attributes)
                }
                try editor.forEachSpan { span in
                    if !selection.selectsAll {
                        let view = span.view
                        let item = MatchProperties.Item(resource: span.resource, scope: span.scope, attributes: view.attributes, spanName: view.name)
                        guard selection.selects(item) else { return }
                    }
                    try actions.apply(to: span.attributes)
                }
                try editor.forEachDataPoint { point in
                    if !selection.selectsAll {
                        let item = MatchProperties.Item(resource: point.resource, attributes: point.attributes.view, metricName: point.metricName)
                        guard selection.selects(item) else { return }
                    }
                    try actions.apply(to: point.attributes)
                }
            }
        } catch {
            // Out of memory in the batch's arena: the client retries later.
            return .refuse(.memoryLimit, retryAfter: .seconds(1))
        }
        return .pass(dropped: 0)
    }
}
