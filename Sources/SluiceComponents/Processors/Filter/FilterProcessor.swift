import Logging
import SluiceCore
import SluiceOTTL

/// `filter`: drops the log records and spans that match any of its OTTL
/// conditions, as the Collector's filter processor does
/// (https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/processor/filterprocessor).
/// Dropped records are counted (`sluice_processor_filter_logs_filtered_total`,
/// `…_spans_filtered_total`, after the Collector's `processor_filter_logs.filtered`)
/// and reported to the client as a partial success. The conditions are parsed
/// when the configuration is read; a bad one is an error at its line and column.
public struct FilterProcessorFactory: ProcessorFactory {
    public let type = "filter"
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Processor)? {
        let before = config.diagnostics.all.count
        let mode = config.ottlErrorMode()
        var logConditions: [OTTLCondition] = []
        var spanConditions: [OTTLCondition] = []
        func parse(_ values: [ConfigString]?, _ context: OTTLContext) -> [OTTLCondition] {
            (values ?? []).compactMap { $0.ottlCondition(context) }
        }
        let legacy = "the filter processor's include/exclude (match_type) settings are not supported by Sluice; write OTTL conditions instead (a record matching any of them is dropped)"
        if let logs = config.map("logs") {
            logConditions += parse(logs.positionedStringList("log_record"), .log)
            for key in ["include", "exclude"] where logs.has(key) {
                logs.accept(key)
                logs.report(key, "\(legacy), like log_record: ['attributes[\"action\"] == \"allow\"']")
            }
            logs.finish()
        }
        if let traces = config.map("traces") {
            spanConditions += parse(traces.positionedStringList("span"), .span)
            if traces.has("spanevent") {
                traces.accept("spanevent")
                traces.report("spanevent", "span events cannot be filtered by Sluice (spans are kept or dropped whole); remove spanevent, or write the condition on the span under traces.span")
            }
            traces.finish()
        }
        // The Collector's context-inferred form (v0.146): paths may start with
        // log., span., resource. or scope.; the list's own context is the default.
        logConditions += parse(config.positionedStringList("log_conditions"), .log)
        spanConditions += parse(config.positionedStringList("trace_conditions"), .span)
        if config.has("spans") {
            config.accept("spans")
            config.report("spans", "\(legacy), under traces.span")
        }
        for key in ["metrics", "metric_conditions"] where config.has(key) {
            config.accept(key)
            config.report(key, "Sluice's filter processor does not filter metrics; remove \(key) (metrics pass through a filter unchanged)")
        }
        if config.has("profile_conditions") {
            config.accept("profile_conditions")
            config.report("profile_conditions", "Sluice does not take profiles; remove profile_conditions")
        }
        config.finish()
        guard config.diagnostics.all.count == before else { return nil }
        if logConditions.isEmpty, spanConditions.isEmpty {
            config.diagnostics.warn(line: config.line, path: config.path,
                                    "no conditions: every record passes; add logs.log_record or traces.span conditions")
        }
        context.logger.info("filter drops the records that match any of its conditions", metadata: [
            "processor": "\(id)", "log_conditions": "\(logConditions.count)", "span_conditions": "\(spanConditions.count)", "error_mode": "\(mode.rawValue)"])
        return FilterProcessor(id: id, logConditions: logConditions, spanConditions: spanConditions,
                               failures: OTTLFailures("processor", id, mode: mode, logger: context.logger, metrics: context.metrics),
                               metrics: context.metrics)
    }
}

struct FilterProcessor: Processor {
    let id: ComponentID
    let logConditions: [OTTLCondition]
    let spanConditions: [OTTLCondition]
    let failures: OTTLFailures
    let filteredLogs: Counter
    let filteredSpans: Counter

    init(id: ComponentID, logConditions: [OTTLCondition], spanConditions: [OTTLCondition], failures: OTTLFailures, metrics: MetricsRegistry) {
        self.id = id
        self.logConditions = logConditions
        self.spanConditions = spanConditions
        self.failures = failures
        filteredLogs = metrics.counter("sluice_processor_filter_logs_filtered_total", "Log records the filter processor dropped.",
                                       labels: [("processor", id.description)])
        filteredSpans = metrics.counter("sluice_processor_filter_spans_filtered_total", "Spans the filter processor dropped.",
                                        labels: [("processor", id.description)])
    }

    func process(_ batch: OTLPBatch) -> ProcessOutcome {
        // With error_mode propagate the first failure refuses the whole request;
        // what was removed before it goes with the batch, which is never appended.
        var refusal: ProcessOutcome?
        switch batch.signal {
        case .logs where !logConditions.isEmpty:
            let removed = batch.edit { editor in
                editor.removeLogRecords { record in
                    let view = record.view, resource = record.resource, scope = record.scope
                    return matchesAny(logConditions, &refusal) { (condition: OTTLCondition) throws(OTTLEvaluationError) in try condition.matches(log: view, resource: resource, scope: scope) }
                }
            }
            guard refusal == nil else { return refusal! }
            filteredLogs.add(removed)
            return .pass(dropped: removed)
        case .traces where !spanConditions.isEmpty:
            let removed = batch.edit { editor in
                editor.removeSpans { span in
                    let view = span.view, resource = span.resource, scope = span.scope
                    return matchesAny(spanConditions, &refusal) { (condition: OTTLCondition) throws(OTTLEvaluationError) in try condition.matches(span: view, resource: resource, scope: scope) }
                }
            }
            guard refusal == nil else { return refusal! }
            filteredSpans.add(removed)
            return .pass(dropped: removed)
        default:
            return .pass(dropped: 0)
        }
    }

    /// Whether any condition matches (Collector semantics: conditions are ORed). A
    /// failing condition counts as not met, unless error_mode propagate makes it
    /// the request's refusal; after that nothing more is evaluated.
    private func matchesAny(_ conditions: [OTTLCondition], _ refusal: inout ProcessOutcome?,
                            _ test: (OTTLCondition) throws(OTTLEvaluationError) -> Bool) -> Bool {
        guard refusal == nil else { return false }
        for condition in conditions {
            do {
                if try test(condition) { return true }
            } catch {
                refusal = failures.record(error, in: condition)
                if refusal != nil { return false }
            }
        }
        return false
    }
}
