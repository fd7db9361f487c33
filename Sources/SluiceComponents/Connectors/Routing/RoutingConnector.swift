import Logging
import SluiceCore
import SluiceOTTL

/// `routing`: sends each record to the pipelines of the first route whose OTTL
/// condition it matches, or to `default_pipelines`, as the Collector's routing
/// connector does since match_once became its only behaviour (v0.118)
/// (https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/connector/routingconnector).
/// Conditions are read in the route's `context`: `resource` (the Collector's
/// default: `attributes` are the resource's), `log` or `span`. Records that match
/// no route when there is no default are dropped, counted in
/// `sluice_connector_routing_unrouted_items_total` and reported to the client as
/// a partial success; validate warns about such a table.
public struct RoutingConnectorFactory: ConnectorFactory {
    public let type = "routing"
    public let signals: Set<OTLPSignal> = [.logs, .traces]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, pipelines: ConnectorPipelines, context: ComponentContext) -> (any Connector)? {
        let before = config.diagnostics.all.count
        let mode = config.ottlErrorMode()
        let signal = pipelines.from.first?.signal ?? pipelines.to.first?.signal
        let receiving = Set(pipelines.to.map(\.id))
        /// Pipeline ids of a list, each checked to be one this connector can send to.
        func targets(_ map: ConfigMap, _ key: String) -> [ComponentID]? {
            guard let list = map.stringList(key) else { return nil }
            var out: [ComponentID] = []
            for text in list {
                guard let pipeline = ComponentID(text), OTLPSignal(pipelineType: pipeline.type) != nil else {
                    map.report(key, "'\(text)' is not a pipeline id; write logs/name or traces/name")
                    continue
                }
                if !receiving.contains(pipeline) {
                    let exists = pipelines.to.contains { $0.id == pipeline } || pipelines.from.contains { $0.id == pipeline }
                    map.report(key, exists || receiving.isEmpty
                        ? "pipeline \(pipeline) does not list \(id) among its receivers; add it there, or route elsewhere"
                        : "pipeline \(pipeline) is not defined in service.pipelines (pipelines receiving from \(id): \(receiving.sorted().map(\.description).joined(separator: ", ")))")
                    continue
                }
                out.append(pipeline)
            }
            return out
        }

        var routes: [RoutingConnector.Route] = []
        if let table = config.sections("table") {
            for entry in table {
                var routeContext = OTTLContext.resource
                if let name = entry.enumeration("context", ["resource", "log", "span", "request", "metric", "datapoint"]) {
                    switch (name, signal) {
                    case ("resource", _): routeContext = .resource
                    case ("log", .logs?), ("log", nil): routeContext = .log
                    case ("span", .traces?), ("span", nil): routeContext = .span
                    case ("request", _):
                        entry.report("context", "the request context (client metadata) is not supported by Sluice; route on the records' attributes with context: log or span")
                    default:
                        entry.report("context", "the \(name) context does not fit \(signal.map { "\($0)" } ?? "these") pipelines; use resource or \(signal == .traces ? "span" : "log")")
                    }
                }
                let statement = entry.positionedString("statement")
                let condition = entry.positionedString("condition")
                var parsed: OTTLCondition?
                switch (statement, condition) {
                case (let s?, nil): parsed = s.ottlCondition(routeContext, statementEditor: "route")
                case (nil, let c?): parsed = c.ottlCondition(routeContext)
                case (.some, .some): entry.report("statement", "set statement or condition, not both")
                case (nil, nil): entry.report("condition", "missing: each route needs a condition (or a statement like route() where …)")
                }
                let routeTargets = targets(entry, "pipelines") ?? []
                if routeTargets.isEmpty, !entry.has("pipelines") { entry.report("pipelines", "missing: name the pipelines this route sends to") }
                entry.finish()
                if let parsed { routes.append(RoutingConnector.Route(condition: parsed, pipelines: routeTargets)) }
            }
        } else {
            config.report("table", "missing: a routing connector needs a table of routes (condition and pipelines)")
        }
        let defaults = targets(config, "default_pipelines") ?? []
        if let matchOnce = config.bool("match_once") {
            config.warn("match_once", matchOnce
                ? "has no effect (the Collector removed it in v0.120): each record goes to the first route it matches; remove it"
                : "false has no effect (the Collector removed it in v0.120): each record goes to the first route it matches, never to several; to send a record to several pipelines, list them in one route")
        }
        config.finish()
        guard config.diagnostics.all.count == before else { return nil }
        if defaults.isEmpty {
            config.diagnostics.warn(line: config.line, path: config.path,
                                    "no default_pipelines: records that match no route are dropped (counted in sluice_connector_routing_unrouted_items_total, reported to clients as rejected); set default_pipelines to keep them")
        }
        return RoutingConnector(id: id, routes: routes, defaults: defaults,
                                failures: OTTLFailures("connector", id, mode: mode, logger: context.logger, metrics: context.metrics),
                                unrouted: context.metrics.counter("sluice_connector_routing_unrouted_items_total",
                                                                  "Records the routing connector dropped: they matched no route and there is no default.",
                                                                  labels: [("connector", id.description)]))
    }
}

struct RoutingConnector: Connector {
    struct Route {
        let condition: OTTLCondition
        let pipelines: [ComponentID]
    }

    let id: ComponentID
    let routes: [Route]
    let defaults: [ComponentID]
    let failures: OTTLFailures
    let unrouted: Counter

    /// The route index a record takes; `routes.count` for the default.
    private func choose(_ refusal: inout ProcessOutcome?, _ test: (OTTLCondition) throws(OTTLEvaluationError) -> Bool) -> Int {
        guard refusal == nil else { return routes.count }
        for (i, route) in routes.enumerated() {
            do {
                if try test(route.condition) { return i }
            } catch {
                // ignore / silent: the record goes to the default pipelines, as in the Collector.
                refusal = failures.record(error, in: route.condition)
                return routes.count
            }
        }
        return routes.count
    }

    func route(_ batch: OTLPBatch) -> ConnectorOutcome {
        var choices: [Int] = []
        choices.reserveCapacity(batch.itemCount)
        var refusal: ProcessOutcome?
        _ = batch.withLogs { request in
            for (resource, scope, record) in request.records {
                let r = resource.resource, s = scope.scope
                choices.append(choose(&refusal) { (condition: OTTLCondition) throws(OTTLEvaluationError) in
                    condition.context == .resource ? try condition.matches(resource: r) : try condition.matches(log: record, resource: r, scope: s)
                })
            }
        }
        _ = batch.withTraces { request in
            for (resource, scope, span) in request.spans {
                let r = resource.resource, s = scope.scope
                choices.append(choose(&refusal) { (condition: OTTLCondition) throws(OTTLEvaluationError) in
                    condition.context == .resource ? try condition.matches(resource: r) : try condition.matches(span: span, resource: r, scope: s)
                })
            }
        }
        if case .refuse(let reason, let after)? = refusal { return .refuse(reason, retryAfter: after) }

        // One piece per route taken, in table order; the last piece is the batch itself.
        var counts = [Int](repeating: 0, count: routes.count + 1)
        for choice in choices { counts[choice] += 1 }
        var dropped = 0
        var taken: [Int] = []
        for (i, count) in counts.enumerated() where count > 0 {
            if (i == routes.count ? defaults : routes[i].pipelines).isEmpty { dropped += count } else { taken.append(i) }
        }
        var pieces: [(pipelines: [ComponentID], batch: OTLPBatch)] = []
        for (n, choice) in taken.enumerated() {
            let piece: OTLPBatch
            if n == taken.count - 1 {
                piece = batch
            } else {
                guard let copy = try? batch.copy() else { return .refuse(.memoryLimit, retryAfter: .seconds(1)) }
                piece = copy
            }
            // Editors visit records in the order the views listed them.
            if counts[choice] != choices.count {
                var index = 0
                piece.edit { editor in
                    let keep: (Int) -> Bool = { choices[$0] == choice }
                    editor.removeLogRecords { _ in defer { index += 1 }; return !keep(index) }
                    editor.removeSpans { _ in defer { index += 1 }; return !keep(index) }
                }
            }
            pieces.append((choice == routes.count ? defaults : routes[choice].pipelines, piece))
        }
        unrouted.add(dropped)
        return .routed(pieces, unrouted: dropped)
    }
}
